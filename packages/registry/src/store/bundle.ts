/**
 * A read-only registry store straight from a bundle (one tar, or its split volumes): the OCI
 * layout inside the archive is served without extracting it. Blobs are streamed from the volume
 * files with {@link BundleReader}; nothing is copied to disk.
 *
 * Images are served by their bundle names: `docker.io/library/busybox:1.36` is repository
 * `docker.io/library/busybox`, tag `1.36` (see names.ts). The server does not re-verify blobs as
 * it serves them — clients verify every digest; `airlock verify` checks a bundle offline.
 */
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { AirlockError, BundleReader, type Digest, type Segment } from "@airlock/core";
import type { LayoutContent } from "./content.js";
import { LayoutContentStore } from "./read.js";
import type { ByteRange } from "./types.js";

/** Options of {@link openBundleStore}. */
export interface OpenBundleStoreOptions {
  /** Told about each fault the bundle has (a missing volume, a damaged header). */
  warn?: (message: string) => void;
}

/** A read-only registry store over an opened bundle. */
export class BundleRegistryStore extends LayoutContentStore {
  /** The bundle being served. */
  readonly reader: BundleReader;

  constructor(reader: BundleReader) {
    super(bundleContent(reader));
    this.reader = reader;
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
    await reader.index();
  } catch (err) {
    await reader.close();
    throw err;
  }
  return new BundleRegistryStore(reader);
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
