/**
 * Media types airlock knows, as a closed set with predicates.
 * @see https://github.com/opencontainers/image-spec/blob/main/media-types.md
 * @see https://distribution.github.io/distribution/spec/manifest-v2-2/
 */

/** OCI and Docker manifest, config and layer media types. */
export const MediaType = {
  OCIManifest: "application/vnd.oci.image.manifest.v1+json",
  OCIIndex: "application/vnd.oci.image.index.v1+json",
  OCIConfig: "application/vnd.oci.image.config.v1+json",
  OCILayer: "application/vnd.oci.image.layer.v1.tar",
  OCILayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  OCILayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  OCILayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  OCIEmpty: "application/vnd.oci.empty.v1+json",
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  DockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  DockerConfig: "application/vnd.docker.container.image.v1+json",
  DockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  DockerForeignLayerGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  DockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  DockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** One of the manifest media types airlock reads and writes (Docker schema 1 included: read, kept or converted). */
export type ManifestMediaType =
  | typeof MediaType.OCIManifest
  | typeof MediaType.OCIIndex
  | typeof MediaType.DockerManifest
  | typeof MediaType.DockerManifestList
  | Schema1MediaType;

/** The four current manifest media types airlock supports, in the order a registry client asks for them (schema 1 is not among them). */
export const MANIFEST_MEDIA_TYPES: readonly ManifestMediaType[] = [
  MediaType.OCIManifest,
  MediaType.OCIIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
];

/** Reports whether `mt` is an index (OCI image index or Docker manifest list). */
export function isIndex(mt: string | undefined): boolean {
  return mt === MediaType.OCIIndex || mt === MediaType.DockerManifestList;
}

/** Reports whether `mt` is a single-image manifest (OCI image manifest or Docker v2 schema 2). */
export function isImageManifest(mt: string | undefined): boolean {
  return mt === MediaType.OCIManifest || mt === MediaType.DockerManifest;
}

/** Reports whether `mt` is a manifest media type airlock reads: the four current ones or Docker schema 1. */
export function isManifestMediaType(mt: string | undefined): mt is ManifestMediaType {
  return isIndex(mt) || isImageManifest(mt) || isSchema1(mt);
}

/** One of the two Docker schema 1 manifest media types (unsigned and JWS-signed), which airlock reads and converts. */
export type Schema1MediaType = typeof MediaType.DockerSchema1 | typeof MediaType.DockerSchema1Signed;

/** The two schema 1 media types: add them to a destination's manifestMediaTypes when it stores schema 1 as it is. */
export const SCHEMA1_MEDIA_TYPES: readonly Schema1MediaType[] = [MediaType.DockerSchema1Signed, MediaType.DockerSchema1];

/** Reports whether `mt` is a Docker schema 1 manifest (deprecated; read, copied as it is, or converted). */
export function isSchema1(mt: string | undefined): mt is Schema1MediaType {
  return mt === MediaType.DockerSchema1 || mt === MediaType.DockerSchema1Signed;
}
