/**
 * Where a store's bytes come from: an OCI image layout's index.json and blobs, read from a
 * directory ({@link layoutContent}) or from a bundle archive. The repository logic
 * ({@link RepositoryIndex}) is written once against this small interface.
 */
import { promises as fs } from "node:fs";
import type { Readable } from "node:stream";
import { type Digest, type IndexJSON, INDEX_FILE, isNotFoundError, type OciLayout } from "@airlock/core";
import { join } from "node:path";
import type { ByteRange } from "./types.js";

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
}

/** The content of an OCI layout directory, read through {@link OciLayout}. */
export function layoutContent(layout: OciLayout): LayoutContent {
  const indexPath = join(layout.dir, INDEX_FILE);
  return {
    async indexVersion() {
      try {
        const st = await fs.stat(indexPath, { bigint: true });
        return `${st.ino}:${st.size}:${st.mtimeNs}`;
      } catch (err) {
        if (isNotFoundError(err)) return "none";
        throw err;
      }
    },
    readIndex: () => layout.readIndex(),
    async blobSize(digest) {
      try {
        const st = await fs.stat(layout.blobPath(digest));
        return st.isFile() ? st.size : undefined;
      } catch (err) {
        if (isNotFoundError(err)) return undefined;
        throw err;
      }
    },
    readBlobBytes: (digest, maxSize) => layout.readBlobBytes(digest, maxSize),
    async openBlob(digest, range) {
      const path = layout.blobPath(digest);
      // Open first, so that a missing file fails here rather than in the middle of a response.
      const fh = await fs.open(path, "r");
      return fh.createReadStream({ highWaterMark: 1 << 20, ...(range ? { start: range.start, end: range.end } : {}) });
    },
  };
}
