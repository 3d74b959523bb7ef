/**
 * The storage contract of the registry server. A store holds repositories of manifests, tags and
 * blobs; the server speaks HTTP and checks the protocol, the store only keeps content.
 *
 * Reading is {@link RegistryStore}; writing is the optional {@link WritableRegistryStore},
 * checked at run time with {@link isWritableStore} (an OCI layout directory is writable, a bundle
 * is not). Every digest and name a store receives has been validated by the server; stores still
 * turn digests into paths only through `parseDigest`.
 */
import type { Readable } from "node:stream";
import type { Descriptor, Digest } from "@airlock/core";

/** A manifest as stored: its exact bytes and a descriptor (stored media type, digest, size). */
export interface StoredManifest {
  descriptor: Descriptor;
  bytes: Buffer;
}

/** A byte range of a blob, both ends inclusive (as HTTP's `Range: bytes=START-END`). */
export interface ByteRange {
  start: number;
  end: number;
}

/** `length` bytes of the file `path` from offset `start`: where (part of) a blob's bytes lie. */
export interface FileSpan {
  path: string;
  start: number;
  length: number;
}

/**
 * An optional feature of a store whose blobs lie in files: where a blob's bytes are, so the
 * server reads and sends them itself (with reused buffers) instead of consuming a stream.
 */
export interface BlobFiles {
  /**
   * The file spans holding blob `digest` (held by some repository), whole or `range` of it, in
   * order; their lengths add up to the bytes asked for.
   */
  blobFiles(digest: Digest, range?: ByteRange): Promise<FileSpan[]>;
}

/** Reports whether `store` can say where its blobs lie ({@link BlobFiles}). */
export function hasBlobFiles<T extends object>(store: T): store is T & BlobFiles {
  return typeof (store as Partial<BlobFiles>).blobFiles === "function";
}

/** Reads repositories, tags, manifests and blobs. */
export interface RegistryStore {
  /** Names of every repository, sorted. */
  repositories(): Promise<string[]>;
  /** Reports whether the repository exists (has a tag or any content pushed to it). */
  hasRepository(repository: string): Promise<boolean>;
  /** The repository's tags, sorted; undefined when the repository does not exist. */
  tags(repository: string): Promise<string[] | undefined>;
  /** The manifest a tag or digest names in the repository; undefined when there is none. */
  getManifest(repository: string, reference: string): Promise<StoredManifest | undefined>;
  /** The size of a blob of the repository; undefined when the repository does not hold it. */
  statBlob(repository: string, digest: Digest): Promise<number | undefined>;
  /** Opens a blob (held by some repository) for reading, whole or a range of it. */
  openBlob(digest: Digest, range?: ByteRange): Promise<Readable>;
  /**
   * Descriptors of the manifests of the repository whose `subject` is `digest`, with
   * `artifactType` and annotations as the referrers API lists them.
   */
  referrers(repository: string, digest: Digest): Promise<Descriptor[]>;
  /** Releases what the store holds open. */
  close(): Promise<void>;
}

/** The manifest a client pushed: exact bytes, media type and digest (already validated). */
export interface PushedManifest {
  bytes: Uint8Array;
  mediaType: string;
  digest: Digest;
  /** The manifest's `artifactType`, if any (kept in its index.json descriptor). */
  artifactType?: string | undefined;
}

/** Writes repositories. A write is visible to readers only once it is complete. */
export interface WritableRegistryStore extends RegistryStore {
  /** A directory for upload files, on the same file system as the blobs (so a commit is a rename). */
  readonly uploadDir: string;
  /**
   * Makes the file at `path` — whose content the caller has verified to hash to `digest` — the
   * blob `digest` of `repository`. The file is renamed into place (or removed when the blob is
   * already stored); it never stays at `path`.
   */
  commitBlobFile(repository: string, path: string, digest: Digest): Promise<void>;
  /** Adds the blob to `repository` when `from` holds it (a cross-repository mount); returns whether it did. */
  mountBlob(repository: string, digest: Digest, from: string): Promise<boolean>;
  /** Stores a manifest in `repository` and, when `tag` is given, points the tag at it. */
  putManifest(repository: string, manifest: PushedManifest, tag?: string): Promise<void>;
  /** Removes a manifest and every tag pointing to it from `repository`; returns whether it was there. */
  deleteManifest(repository: string, digest: Digest): Promise<boolean>;
  /** Removes a tag (the manifest stays, by digest); returns whether it was there. */
  deleteTag(repository: string, tag: string): Promise<boolean>;
}

/** Reports whether `store` can be written to. */
export function isWritableStore(store: RegistryStore): store is WritableRegistryStore {
  const s = store as Partial<WritableRegistryStore>;
  return typeof s.commitBlobFile === "function" && typeof s.putManifest === "function";
}
