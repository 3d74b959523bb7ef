/**
 * The read side of a registry store over any {@link LayoutContent}: repositories, tags,
 * manifests, blobs and referrers as {@link RepositoryIndex} sees them. The layout directory store
 * adds writes to it; the bundle store uses it as it is.
 */
import type { Readable } from "node:stream";
import { type Descriptor, type Digest, isDigest, MAX_MANIFEST_SIZE } from "@airlock/core";
import type { LayoutContent } from "./content.js";
import type { RefNameParser } from "../names.js";
import { type RepositoryRecords, RepositoryIndex } from "./repositories.js";
import type { BlobFiles, ByteRange, FileSpan, RegistryStore, StoredManifest } from "./types.js";

/** Bytes of manifests kept in memory by a store. */
const MANIFEST_CACHE_BYTES = 16 << 20;

/** A read-only registry store over the content of an OCI layout (a directory or an archive). */
export class LayoutContentStore implements RegistryStore, BlobFiles {
  /** Where the bytes come from. */
  protected readonly content: LayoutContent;
  /** The repository view of the content. */
  protected readonly index: RepositoryIndex;

  /** Manifests served lately, by digest (content-addressed: never stale), up to {@link MANIFEST_CACHE_BYTES}. */
  private readonly manifestBytes = new Map<string, Buffer>();
  private manifestCacheSize = 0;

  /** `parseName` reads index.json entry names (default: `REPOSITORY:TAG`, see names.ts). */
  constructor(content: LayoutContent, records?: RepositoryRecords, parseName?: RefNameParser) {
    this.content = content;
    this.index = new RepositoryIndex(content, records, parseName);
  }

  repositories(): Promise<string[]> {
    return this.index.repositories();
  }

  hasRepository(repository: string): Promise<boolean> {
    return this.index.hasRepository(repository);
  }

  tags(repository: string): Promise<string[] | undefined> {
    return this.index.tags(repository);
  }

  async getManifest(repository: string, reference: string): Promise<StoredManifest | undefined> {
    let mediaType: string | undefined;
    let digest: Digest;
    if (isDigest(reference)) {
      digest = reference;
      mediaType = await this.index.manifestMediaType(repository, digest);
    } else {
      const desc = await this.index.resolveTag(repository, reference);
      if (!desc) return undefined;
      digest = desc.digest;
      mediaType = desc.mediaType;
    }
    if (mediaType === undefined) return undefined;
    let bytes = this.manifestBytes.get(digest);
    if (!bytes) {
      try {
        bytes = await this.content.readBlobBytes(digest, MAX_MANIFEST_SIZE);
      } catch {
        return undefined;
      }
      this.remember(digest, bytes);
    }
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes };
  }

  private remember(digest: string, bytes: Buffer): void {
    if (bytes.length > MANIFEST_CACHE_BYTES / 16) return;
    // Oldest first: a Map iterates in insertion order.
    for (const [d, b] of this.manifestBytes) {
      if (this.manifestCacheSize + bytes.length <= MANIFEST_CACHE_BYTES) break;
      this.manifestBytes.delete(d);
      this.manifestCacheSize -= b.length;
    }
    this.manifestBytes.set(digest, bytes);
    this.manifestCacheSize += bytes.length;
  }

  async statBlob(repository: string, digest: Digest): Promise<number | undefined> {
    if (!(await this.index.holdsBlob(repository, digest))) return undefined;
    return this.content.blobSize(digest);
  }

  openBlob(digest: Digest, range?: ByteRange): Promise<Readable> {
    return this.content.openBlob(digest, range);
  }

  blobFiles(digest: Digest, range?: ByteRange): Promise<FileSpan[]> {
    return this.content.blobFiles(digest, range);
  }

  referrers(repository: string, digest: Digest): Promise<Descriptor[]> {
    return this.index.referrers(repository, digest);
  }

  async close(): Promise<void> {}
}
