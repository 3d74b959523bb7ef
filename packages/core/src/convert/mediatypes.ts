/**
 * Layer and config media types of the two image formats, and how they map onto each other: what a
 * layer's media type says about its compression, and the media type the same layer has in the
 * other format or with another compression (containers/image's manifest conversion tables).
 * @see https://github.com/opencontainers/image-spec/blob/main/layer.md
 * @see https://distribution.github.io/distribution/spec/manifest-v2-2/
 */
import { MediaType } from "../mediatype.js";
import type { Compression } from "./compression.js";

/** The two manifest formats: OCI image manifest/index and Docker v2 schema 2 manifest/list (skopeo's `--format oci|v2s2`). */
export type ManifestFormat = "oci" | "v2s2";

/** Layer and config media types beyond the shared constants of `mediatype.ts`. */
export const LayerMediaType = {
  OCILayer: MediaType.OCILayer,
  OCILayerGzip: MediaType.OCILayerGzip,
  OCILayerZstd: MediaType.OCILayerZstd,
  OCINondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  OCINondistributableGzip: MediaType.OCILayerNondistributableGzip,
  OCINondistributableZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  DockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
  DockerLayerGzip: MediaType.DockerLayerGzip,
  DockerForeign: "application/vnd.docker.image.rootfs.foreign.diff.tar",
  DockerForeignGzip: MediaType.DockerForeignLayerGzip,
} as const;

/** What a layer media type says: its format, its compression, and whether it is non-distributable (foreign). */
export interface LayerKind {
  format: ManifestFormat;
  compression: Compression;
  nondistributable: boolean;
}

const KINDS: Record<string, LayerKind> = {
  [LayerMediaType.OCILayer]: { format: "oci", compression: "none", nondistributable: false },
  [LayerMediaType.OCILayerGzip]: { format: "oci", compression: "gzip", nondistributable: false },
  [LayerMediaType.OCILayerZstd]: { format: "oci", compression: "zstd", nondistributable: false },
  [LayerMediaType.OCINondistributable]: { format: "oci", compression: "none", nondistributable: true },
  [LayerMediaType.OCINondistributableGzip]: { format: "oci", compression: "gzip", nondistributable: true },
  [LayerMediaType.OCINondistributableZstd]: { format: "oci", compression: "zstd", nondistributable: true },
  [LayerMediaType.DockerLayer]: { format: "v2s2", compression: "none", nondistributable: false },
  [LayerMediaType.DockerLayerGzip]: { format: "v2s2", compression: "gzip", nondistributable: false },
  [LayerMediaType.DockerForeign]: { format: "v2s2", compression: "none", nondistributable: true },
  [LayerMediaType.DockerForeignGzip]: { format: "v2s2", compression: "gzip", nondistributable: true },
};

/** What `mediaType` says about a layer, or undefined when it is not an image layer type airlock knows (an artifact's blob). */
export function layerKind(mediaType: string): LayerKind | undefined {
  return KINDS[mediaType];
}

/**
 * The media type of a layer in `format` with `compression`; undefined when the format cannot
 * express it (zstd in Docker v2s2).
 */
export function layerMediaType(format: ManifestFormat, compression: Compression, nondistributable = false): string | undefined {
  for (const [mt, k] of Object.entries(KINDS)) {
    if (k.format === format && k.compression === compression && k.nondistributable === nondistributable) return mt;
  }
  return undefined;
}

/** The image config media type of `format`. */
export function configMediaType(format: ManifestFormat): string {
  return format === "oci" ? MediaType.OCIConfig : MediaType.DockerConfig;
}

/** Reports whether `mediaType` is an image config (OCI or Docker), as opposed to an artifact's config. */
export function isImageConfig(mediaType: string): boolean {
  return mediaType === MediaType.OCIConfig || mediaType === MediaType.DockerConfig;
}

/** The image manifest media type of `format`. */
export function imageManifestMediaType(format: ManifestFormat): typeof MediaType.OCIManifest | typeof MediaType.DockerManifest {
  return format === "oci" ? MediaType.OCIManifest : MediaType.DockerManifest;
}

/** The index media type of `format`. */
export function indexMediaType(format: ManifestFormat): typeof MediaType.OCIIndex | typeof MediaType.DockerManifestList {
  return format === "oci" ? MediaType.OCIIndex : MediaType.DockerManifestList;
}

/** The format of a manifest media type. */
export function formatOf(manifestMediaType: string): ManifestFormat {
  return manifestMediaType === MediaType.DockerManifest || manifestMediaType === MediaType.DockerManifestList ? "v2s2" : "oci";
}
