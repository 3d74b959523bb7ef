/**
 * Where a store's bytes come from: an OCI image layout's index.json and blobs, read from a
 * directory ({@link layoutContent}) or from a bundle archive. The repository logic
 * ({@link RepositoryIndex}) is written once against this small interface.
 */
import { promises as fs, statSync } from "node:fs";
import type { Readable } from "node:stream";
import { type Digest, type IndexJSON, INDEX_FILE, type OciLayout } from "@airlock/core";
import { join } from "node:path";
import type { ByteRange, FileSpan } from "./types.js";

/** Read access to an OCI image layout's content. */
export interface LayoutContent {
  /** A token that changes whenever index.json changes (used to invalidate caches). */
  indexVersion(): Promise<string>;
  /** Reads and validates index.json. */
  readIndex(): Promise<IndexJSON>;
  /** The size of a stored blob, or undefined when there is none. */
  blobSize(digest: Digest): Promise<number | undefined>;
  /** Reads a small blob (a manifest) whole; refuses one larger than `maxSize`. */
  readBlobBytes(digest: Digest, maxSize: number): Promise<Buffer>;
  /** Opens a stored blob for reading, whole or a range of it. */
  openBlob(digest: Digest, range?: ByteRange): Promise<Readable>;
  /** Where a stored blob's bytes (whole or a range) lie in files. */
  blobFiles(digest: Digest, range?: ByteRange): Promise<FileSpan[]>;
}

/** The content of an OCI layout directory, read through {@link OciLayout}. */
export function layoutContent(layout: OciLayout): LayoutContent {
  const indexPath = join(layout.dir, INDEX_FILE);
  return {
    // Metadata is read with synchronous stat(2) calls (a few microseconds on a local disk): an
    // asynchronous one per request costs a thread-pool round trip, more than the call itself.
    async indexVersion() {
      const st = statSync(indexPath, { bigint: true, throwIfNoEntry: false });
      return st ? `${st.ino}:${st.size}:${st.mtimeNs}` : "none";
    },
    readIndex: () => layout.readIndex(),
    async blobSize(digest) {
      const st = statSync(layout.blobPath(digest), { throwIfNoEntry: false });
      return st?.isFile() ? st.size : undefined;
    },
    readBlobBytes: (digest, maxSize) => layout.readBlobBytes(digest, maxSize),
    async openBlob(digest, range) {
      const path = layout.blobPath(digest);
      // Open first, so that a missing file fails here rather than in the middle of a response.
      const fh = await fs.open(path, "r");
      return fh.createReadStream({ highWaterMark: 1 << 20, ...(range ? { start: range.start, end: range.end } : {}) });
    },
    async blobFiles(digest, range) {
      const path = layout.blobPath(digest);
      if (range) return [{ path, start: range.start, length: range.end - range.start + 1 }];
      return [{ path, start: 0, length: statSync(path).size }];
    },
  };
}
