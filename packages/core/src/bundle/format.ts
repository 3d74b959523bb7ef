/**
 * The bundle format: file names, airlock's metadata documents and how volume files are named.
 * FORMAT.md in this folder is the prose description; this file is its single source in code.
 */
import { basename } from "node:path";
import type { Digest } from "../digest.js";
import type { Platform } from "../platform.js";

/** The version of the bundle format written by this code (`formatVersion` in bundle.json). */
export const BUNDLE_FORMAT_VERSION = 1;

/** Media type of `airlock/bundle.json`. */
export const BUNDLE_MEDIA_TYPE = "application/vnd.airlock.bundle.v1+json";

/** Media type of `airlock/volume-NNN.json`. */
export const VOLUME_MEDIA_TYPE = "application/vnd.airlock.bundle.volume.v1+json";

/** Path of airlock's metadata inside the archive; written last, in the last volume. */
export const BUNDLE_METADATA_PATH = "airlock/bundle.json";

/** Path of the OCI layout marker file. */
export const OCI_LAYOUT_PATH = "oci-layout";

/** Path of the OCI layout's index. */
export const INDEX_PATH = "index.json";

/** Contents of the `oci-layout` file. */
export const OCI_LAYOUT_CONTENT = '{"imageLayoutVersion":"1.0.0"}';

/** The smallest split size accepted (smaller volumes would hold little more than their own description). */
export const MIN_SPLIT_SIZE = 64 * 1024;

/** Path of the description at the start of volume `n`, e.g. `airlock/volume-003.json`. */
export function volumeDescriptionPath(n: number): string {
  return `airlock/volume-${String(n).padStart(3, "0")}.json`;
}

const VOLUME_DESCRIPTION_RE = /^airlock\/volume-(\d{3,})\.json$/;

/** The volume number named by a volume description path, or undefined if `path` is not one. */
export function parseVolumeDescriptionPath(path: string): number | undefined {
  const m = VOLUME_DESCRIPTION_RE.exec(path);
  return m ? Number.parseInt(m[1] as string, 10) : undefined;
}

/** Path of a blob (or manifest) inside the layout: `blobs/<algorithm>/<hex>`. */
export function blobPath(digest: Digest): string {
  const i = digest.indexOf(":");
  return `blobs/${digest.slice(0, i)}/${digest.slice(i + 1)}`;
}

const BLOB_PATH_RE = /^(?:\.\/)?blobs\/([a-z0-9]+)\/([a-f0-9]+)$/;

/** The digest a layout path names (`blobs/sha256/<hex>` → `sha256:<hex>`), or undefined. */
export function digestFromBlobPath(path: string): string | undefined {
  const m = BLOB_PATH_RE.exec(path);
  return m ? `${m[1]}:${m[2]}` : undefined;
}

/**
 * Path of an image signature inside the archive: `airlock/signatures/<alg>/<hex>/signature-N`
 * (N from 1), the signature N of the manifest `digest`, as the oci: transport keeps them.
 */
export function signaturePath(digest: Digest, n: number): string {
  const i = digest.indexOf(":");
  return `airlock/signatures/${digest.slice(0, i)}/${digest.slice(i + 1)}/signature-${n}`;
}

/** Folder of the archive that holds executables carried beside the layout (`export --include-tool`). */
export const TOOL_DIR = "airlock/tool";

/** Path of a carried executable inside the archive, e.g. `airlock/tool/airlock-linux-x64`. */
export function toolPath(name: string): string {
  return `${TOOL_DIR}/${name}`;
}

/** The file name of volume `n` of the bundle `out`: `out.000`, `out.001`, … */
export function volumeFileName(out: string, n: number): string {
  return `${out}.${String(n).padStart(3, "0")}`;
}

/** The sidecar checksum file of the bundle `out`: `out.sha256` (sha256sum format). */
export function checksumFileName(out: string): string {
  return `${out}.sha256`;
}

/** The export journal of the bundle `out`: `out.journal.json`. */
export function journalFileName(out: string): string {
  return `${out}.journal.json`;
}

/** The name a file has while it is written: `NAME.partial`. */
export function partialFileName(path: string): string {
  return `${path}.partial`;
}

/** One line of a sha256sum file: `<hex>  <basename>`. */
export function checksumLine(sha256hex: string, path: string): string {
  return `${sha256hex}  ${basename(path)}\n`;
}

/** One entry listed by a volume description. */
export interface VolumeEntry {
  /** Path inside the archive. */
  path: string;
  /** Digest of the entry's data (absent for `airlock/bundle.json`, which is written last). */
  digest?: Digest;
  /** Size of the entry's data. */
  size: number;
}

/**
 * `airlock/volume-NNN.json`: the first entry of every volume that starts at an entry boundary.
 * It lets a volume be checked alone: it names the bundle, the volume's number and the count, and
 * every entry that starts in the volume with its digest and size.
 */
export interface VolumeDescription {
  mediaType: typeof VOLUME_MEDIA_TYPE;
  /** The bundle's id (shared by all its volumes). */
  bundle: string;
  /** This volume's number, from 0. */
  volume: number;
  /** How many volumes the bundle has. */
  count: number;
  /** This volume's size in bytes. */
  size: number;
  /** The entries that start in this volume (this description excluded), in archive order. */
  entries: VolumeEntry[];
  /**
   * Continuation volumes: when the last entry is larger than a volume, its data continues in
   * these volumes, which hold nothing else (and so carry no description of their own).
   */
  continuedIn?: number[];
}

/** A platform image of an index, as recorded in bundle.json. */
export interface BundlePlatformImage {
  platform?: Platform;
  digest: Digest;
  mediaType: string;
  size: number;
}

/** One image of a bundle, as recorded in bundle.json. */
export interface BundleImage {
  /** The name under which index.json lists it (`org.opencontainers.image.ref.name`). */
  name: string;
  /** The source reference it was exported from, e.g. `docker://quay.io/org/app:1.0`. */
  source: string;
  /** Digest, media type and size of its top-level manifest (an index or an image manifest). */
  digest: Digest;
  mediaType: string;
  size: number;
  /** When a platform list subset the source's index, or `--format oci` converted its Docker manifests: the source's top-level digest (which differs from `digest`). */
  sourceDigest?: Digest;
  /** For an index: its image manifests, one per platform. */
  platforms?: BundlePlatformImage[];
}

/** A blob or manifest stored in the bundle, as recorded in bundle.json. */
export interface BundleBlob {
  digest: Digest;
  size: number;
  mediaType: string;
  /** The volume its tar header is in. */
  volume: number;
}

/** A volume, as recorded in bundle.json. */
export interface BundleVolume {
  volume: number;
  /** The file name it was written under (a base name). */
  name: string;
  size: number;
  /**
   * sha256 (hex) of the volume file. Null for the volume holding bundle.json and any after it:
   * those checksums cannot be known when bundle.json is written (see the `.sha256` sidecar).
   */
  sha256: string | null;
}

/**
 * What a delta bundle depends on: blobs its images list that it does not carry, because the other
 * side already has them (`export --since`). `verify` expects them absent; `import` checks that the
 * destination has every one before pushing anything.
 */
export interface BundleBase {
  /** Where the base came from, e.g. `receipt receipt.json (registry.local:5000/mirror, …)`. */
  source: string;
  /** How many base blobs the images of this bundle need. */
  count: number;
  /** sha256 over the sorted `blobs`, one per line (see baseSetDigest). */
  digest: Digest;
  /** The base blobs the images of this bundle need, sorted. */
  blobs: Digest[];
}

/**
 * An image signature carried by the bundle (containers-signature(5) bytes, untrusted until a
 * trust policy checks them), as recorded in bundle.json. Its bytes are the archive entry `path`.
 */
export interface BundleSignature {
  /** The manifest it signs (a top-level manifest or an image listed by an index). */
  manifest: Digest;
  /** Its position among that manifest's signatures, from 1 (the N of `signature-N`). */
  index: number;
  /** Path of the entry holding it: `airlock/signatures/<alg>/<hex>/signature-N`. */
  path: string;
  /** sha256 of its bytes. */
  digest: Digest;
  size: number;
}

/**
 * An executable carried beside the layout (`airlock/tool/NAME`, mode 0755), e.g. airlock's own
 * single-file build for the air-gapped side, as recorded in bundle.json.
 */
export interface BundleTool {
  /** Path of its entry: `airlock/tool/NAME`. */
  path: string;
  /** The platform it runs on, `os/arch` (e.g. `linux/amd64`). */
  platform: string;
  /** sha256 of its bytes. */
  digest: Digest;
  size: number;
}

/** `airlock/bundle.json`: airlock's description of the whole bundle, written last. */
export interface BundleMetadata {
  mediaType: typeof BUNDLE_MEDIA_TYPE;
  formatVersion: number;
  /** A random id shared by every volume of the bundle. */
  bundle: string;
  tool: { name: string; version: string };
  /** Creation time, RFC 3339. */
  created: string;
  images: BundleImage[];
  /** Image signatures found at the sources, in archive order; absent when there are none. */
  signatures?: BundleSignature[];
  /** Executables carried beside the layout, in archive order; absent when there are none. */
  tools?: BundleTool[];
  /** Every manifest (image manifests and indexes), each stored as a blob. */
  manifests: BundleBlob[];
  /** Every other blob (configs and layers), each stored once. */
  blobs: BundleBlob[];
  volumes: BundleVolume[];
  /** Only in a delta bundle: the blobs it relies on the destination having. */
  base?: BundleBase;
  /** Anything the caller recorded, e.g. the resolved images.lock. */
  lock?: unknown;
}
