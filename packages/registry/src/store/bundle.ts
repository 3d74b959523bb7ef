/**
 * A read-only registry store straight from a bundle (one tar, or its split volumes): the OCI
 * layout inside the archive is served without extracting it. Blobs are streamed from the volume
 * files with {@link BundleReader}; nothing is copied to disk.
 *
 * Images are served under the names `airlock import --to HOST` would give them (see names.ts):
 * with the bundle's naming (as recorded in its lock, else keep-path),
 * `registry.example.com:5000/team/app:1` is repository `registry.example.com_5000/team/app`, tag
 * `1`, and `docker.io/library/busybox:1.36` stays `docker.io/library/busybox:1.36`. An image named
 * by digest only is pulled by its digest. The server does not re-verify blobs as it serves them —
 * clients verify every digest; `airlock verify` checks a bundle offline.
 */
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { AirlockError, BundleReader, type Digest, refName, type Segment } from "@airlock/core";
import { BUNDLE_NAMINGS, type BundleNaming, bundleRefNameParser, servedBundleName } from "../names.js";
import type { LayoutContent } from "./content.js";
import { LayoutContentStore } from "./read.js";
import type { ByteRange } from "./types.js";

/** Options of {@link openBundleStore}. */
export interface OpenBundleStoreOptions {
  /** Told about each fault the bundle has (a missing volume, a damaged header), and of images not served. */
  warn?: (message: string) => void;
  /** How image names become repository names (default: the naming the bundle's lock records, else keep-path). */
  naming?: BundleNaming;
}

/** One image of a served bundle: its bundle name and where it is served. */
export interface ServedImage {
  /** The image's name in the bundle (`org.opencontainers.image.ref.name`). */
  name: string;
  /** The reference to pull it by, without the registry host: `REPOSITORY:TAG` or `REPOSITORY@DIGEST`. */
  served: string;
}

/** A read-only registry store over an opened bundle. */
export class BundleRegistryStore extends LayoutContentStore {
  /** The bundle being served. */
  readonly reader: BundleReader;
  /** How the bundle's image names became repository names. */
  readonly naming: BundleNaming;
  /** Every image served, in index.json order (images whose names cannot be served are left out). */
  readonly images: readonly ServedImage[];

  constructor(reader: BundleReader, naming: BundleNaming, images: readonly ServedImage[]) {
    super(bundleContent(reader), undefined, bundleRefNameParser(naming));
    this.reader = reader;
    this.naming = naming;
    this.images = images;
  }

  override async close(): Promise<void> {
    await this.reader.close();
  }
}

/**
 * Opens the bundle made of `volumes` (a single tar, or `bundle.tar.000`, `bundle.tar.001`, …; one
 * path of a split bundle finds the others) as a read-only store. Throws ERR_INVALID_LAYOUT when
 * the archive holds no readable index.json.
 */
export async function openBundleStore(volumes: string[], options: OpenBundleStoreOptions = {}): Promise<BundleRegistryStore> {
  const reader = await BundleReader.open(volumes.length === 1 ? volumes[0]! : volumes);
  try {
    for (const p of reader.problems) if (p.severity === "error") options.warn?.(p.message);
    const index = await reader.index();
    const naming = options.naming ?? (await recordedNaming(reader, options.warn)) ?? "keep-path";
    const images: ServedImage[] = [];
    const taken = new Map<string, string>();
    for (const desc of index.manifests) {
      const name = refName(desc);
      if (name === undefined) continue;
      const s = servedBundleName(name, naming);
      if (!s) {
        options.warn?.(`image ${JSON.stringify(name)} of ${reader.path} is not served: its name does not map to a valid repository and tag`);
        continue;
      }
      const served = s.tag !== undefined ? `${s.repository}:${s.tag}` : s.digest !== undefined ? `${s.repository}@${desc.digest}` : `${s.repository}:latest`;
      const first = taken.get(served);
      if (first !== undefined) {
        options.warn?.(`images ${JSON.stringify(first)} and ${JSON.stringify(name)} of ${reader.path} are both served as ${served} (${naming}); only the first is served — serve with keep-path naming to tell them apart`);
        continue;
      }
      taken.set(served, name);
      images.push({ name, served });
    }
    return new BundleRegistryStore(reader, naming, images);
  } catch (err) {
    await reader.close();
    throw err;
  }
}

/** The naming the bundle's lock records (`naming: keep-path | strip-registry`), if any. */
async function recordedNaming(reader: BundleReader, warn: ((message: string) => void) | undefined): Promise<BundleNaming | undefined> {
  try {
    const naming = ((await reader.metadata())?.lock as { naming?: unknown } | undefined)?.naming;
    return BUNDLE_NAMINGS.find((n) => n === naming);
  } catch (err) {
    warn?.(`${(err as Error).message}; serving its images with keep-path naming`);
    return undefined;
  }
}

/** The layout content of a bundle. */
function bundleContent(reader: BundleReader): LayoutContent {
  const entryOf = (digest: Digest) => {
    if (!reader.hasBlob(digest)) return undefined;
    const e = reader.blobEntry(digest);
    return e.complete ? e : undefined;
  };
  return {
    // A bundle never changes while it is served.
    indexVersion: async () => "bundle",
    readIndex: () => reader.index(),
    blobSize: async (digest) => entryOf(digest)?.size,
    async readBlobBytes(digest, maxSize) {
      const e = entryOf(digest);
      if (!e) throw new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${digest} is not in bundle ${reader.path}`);
      return reader.readEntry(e, maxSize);
    },
    async openBlob(digest: Digest, range?: ByteRange) {
      const e = entryOf(digest);
      if (!e) throw new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${digest} is not in bundle ${reader.path}, or lies in a missing or truncated volume`);
      const start = range?.start ?? 0;
      const length = range ? range.end - range.start + 1 : e.size;
      return streamSegments(clip(reader.locateBlob({ digest, size: e.size }, start), length));
    },
    async blobFiles(digest: Digest, range?: ByteRange) {
      const e = entryOf(digest);
      if (!e) throw new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${digest} is not in bundle ${reader.path}, or lies in a missing or truncated volume`);
      const start = range?.start ?? 0;
      const length = range ? range.end - range.start + 1 : e.size;
      return clip(reader.locateBlob({ digest, size: e.size }, start), length).map(({ path, start, length }) => ({ path, start, length }));
    },
  };
}

/** The first `length` bytes of `segments`. */
function clip(segments: Segment[], length: number): Segment[] {
  const out: Segment[] = [];
  let left = length;
  for (const s of segments) {
    if (left <= 0) break;
    const n = Math.min(s.length, left);
    out.push({ ...s, length: n });
    left -= n;
  }
  return out;
}

function streamSegments(segments: Segment[]): Readable {
  const open = (s: Segment) => createReadStream(s.path, { start: s.start, end: s.start + s.length - 1, highWaterMark: 1 << 20 });
  if (segments.length === 0) return Readable.from([]);
  if (segments.length === 1) return open(segments[0]!);
  async function* chain() {
    for (const s of segments) yield* open(s);
  }
  return Readable.from(chain(), { objectMode: false });
}
