/**
 * Registers every built-in transport. Import this module once (the CLI and tests do) before
 * calling `parseImageName`.
 */
import { bundleTransport } from "../bundle/source.js";
import { containersStorageTransport } from "./containers-storage/transport.js";
import { dirTransport } from "./dir/transport.js";
import { dockerArchiveTransport } from "./docker-archive/transport.js";
import { dockerDaemonTransport } from "./docker-daemon/transport.js";
import { dockerTransport } from "./docker/transport.js";
import { registerTransport } from "./index.js";
import { ociTransport } from "./oci/transport.js";
import { ociArchiveTransport } from "./oci-archive/transport.js";

// Each transport folder exports its Transport object from transport.ts; register it here.
const builtins: Parameters<typeof registerTransport>[0][] = [ociTransport, dirTransport, dockerTransport, ociArchiveTransport, dockerArchiveTransport, dockerDaemonTransport, containersStorageTransport, bundleTransport];

for (const t of builtins) registerTransport(t);
