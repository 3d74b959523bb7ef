/**
 * @airlock/core — the engine of airlock: references, digests, manifests, transports, the registry
 * client and the copy pipeline. No CLI, YAML or OpenPGP code lives here.
 */
export * from "./errors.js";
export * from "./digest.js";
export * from "./mediatype.js";
export * from "./manifest.js";
export * from "./manifest-schema1.js";
export * from "./platform.js";
export * from "./fsutil.js";
export * from "./transports/types.js";
export * from "./transports/index.js";
// Registers the built-in transports, so that parseImageName knows them.
import "./transports/all.js";
export * from "./progress.js";
export * from "./throttle.js";
export * from "./hash-worker.js";
export * from "./copy/copy.js";
export * from "./inspect.js";
export * from "./reference/bundle-name.js";
export * from "./reference/docker.js";
export * from "./layout/files.js";
export * from "./layout/layout.js";
export * from "./transports/oci/transport.js";
export * from "./transports/oci/reference.js";
export * from "./transports/oci/source.js";
export * from "./transports/oci/destination.js";
export * from "./transports/dir/transport.js";
export * from "./transports/dir/format.js";
export * from "./transports/dir/reference.js";
export * from "./transports/dir/source.js";
export * from "./transports/dir/destination.js";
export * from "./registry/index.js";
export * from "./transports/docker/transport.js";
export * from "./transports/docker/reference.js";
export * from "./transports/docker/source.js";
export * from "./transports/docker/destination.js";
export * from "./transports/docker/operations.js";
export * from "./bundle/index.js";
export * from "./delta/index.js";
export * from "./sync/index.js";
export * from "./convert/compression.js";
export * from "./convert/mediatypes.js";
export * from "./convert/manifest.js";
export * from "./convert/convert.js";
export * from "./transports/docker-archive/tarfile.js";
export * from "./transports/docker-archive/transport.js";
export * from "./transports/docker-archive/reference.js";
export * from "./transports/docker-archive/reader.js";
export * from "./transports/docker-archive/source.js";
export * from "./transports/docker-archive/destination.js";
export * from "./transports/docker-archive/tags.js";
export * from "./transports/docker-daemon/transport.js";
export * from "./transports/docker-daemon/reference.js";
export * from "./transports/oci-archive/transport.js";
export * from "./transports/oci-archive/reference.js";
export * from "./transports/oci-archive/archive.js";
export * from "./transports/oci-archive/source.js";
export * from "./transports/oci-archive/destination.js";
// containers-storage: the reference and transport only; its source and destination load when a store is opened.
export * from "./transports/containers-storage/transport.js";
export * from "./transports/containers-storage/reference.js";
