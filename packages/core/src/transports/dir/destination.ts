/**
 * Writes an image into skopeo's `dir:` layout. Unlike skopeo, which wipes an existing image
 * directory first, airlock updates it in place: blobs already there with the right content are
 * reused, new files are written to temporary names, verified and renamed, `manifest.json` is
 * written atomically LAST (at commit), and only then are the files the new image does not
 * reference removed. At every moment the directory holds a complete image — the old one until
 * commit, the new one after — and re-running a copy is incremental.
 * @see https://github.com/containers/image/blob/main/directory/directory_dest.go
 */
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { type Digest, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { writeFileAtomic } from "../../fsutil.js";
import { fileMatches, InflightWrites, ioError, readSmallFile, writeVerifiedFile } from "../../layout/files.js";
import { type Descriptor, MAX_MANIFEST_SIZE, Manifest } from "../../manifest.js";
import { MANIFEST_MEDIA_TYPES } from "../../mediatype.js";
import { writeSignatureFiles } from "../signatures.js";
import type { DestinationCapabilities, ImageDestination, PutManifestOptions, SignatureDestination, SignatureOptions } from "../types.js";
import {
  DIR_MANIFEST_FILE,
  DIR_VERSION_1_1,
  DIR_VERSION_1_2,
  DIR_VERSION_FILE,
  dirBlobName,
  dirManifestName,
  dirSignatureName,
  isDirContentFile,
  needsVersion1_2,
  parseDirVersion,
} from "./format.js";
import type { DirReference } from "./reference.js";

/** What a `dir:` destination stores: every supported manifest type, indexes, signatures, concurrent blob writes. */
export const DIR_DESTINATION_CAPABILITIES: DestinationCapabilities = {
  manifestMediaTypes: MANIFEST_MEDIA_TYPES,
  concurrentWrites: true,
  indexes: true,
  signatures: true,
};

/** An {@link ImageDestination} that writes (or updates in place) one image in a `dir:` directory, with its `signature-N` files. */
export class DirImageDestination implements ImageDestination, SignatureDestination {
  readonly reference: DirReference;
  readonly capabilities = DIR_DESTINATION_CAPABILITIES;
  /** Layers are stored as given, whatever their media types say (containers/image's dir: PreserveOriginal; convert/convert.ts). */
  readonly desiredLayerCompression = "preserve" as const;
  private readonly dir: string;
  /** Whether the directory existed when the destination was opened. */
  private readonly existed: boolean;
  private top: Manifest | undefined;
  private created: Promise<void> | undefined;
  /** Whether this destination wrote the version file (the directory had none). */
  private wroteVersion = false;
  /** File names this destination wrote (blobs, child manifests). */
  private readonly written = new Set<string>();
  private readonly inflight = new InflightWrites();
  /** Signatures to write at commit: by instance digest, "" for the top-level manifest. */
  private readonly signatures = new Map<string, readonly Uint8Array[]>();
  private committed = false;

  private constructor(reference: DirReference, existed: boolean) {
    this.reference = reference;
    this.dir = reference.path;
    this.existed = existed;
  }

  /**
   * Opens `ref` for writing without changing anything yet. The directory may be missing or empty;
   * a non-empty one must already be a `dir:` image (hold a valid `version` file), otherwise it is
   * refused so that no unrelated data is ever overwritten.
   */
  static async open(ref: DirReference): Promise<DirImageDestination> {
    const dir = ref.path;
    let entries: string[];
    try {
      entries = await fs.readdir(dir);
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return new DirImageDestination(ref, false);
      if (code === "ENOTDIR") {
        throw new AirlockError("ERR_DESTINATION", `cannot write ${ref}: ${dir} is not a directory; choose a new or empty directory`, { cause });
      }
      throw ioError(`cannot open ${dir}`, cause);
    }
    if (entries.length > 0) {
      const versionPath = join(dir, DIR_VERSION_FILE);
      let text: string;
      try {
        text = await fs.readFile(versionPath, "utf8");
      } catch (cause) {
        throw notImageDir(ref, cause);
      }
      try {
        parseDirVersion(text, versionPath);
      } catch (cause) {
        throw notImageDir(ref, cause);
      }
    }
    return new DirImageDestination(ref, true);
  }

  /** Creates the directory and its version file (once). */
  private ensureCreated(): Promise<void> {
    this.created ??= (async () => {
      try {
        await fs.mkdir(this.dir, { recursive: true });
        try {
          await fs.access(join(this.dir, DIR_VERSION_FILE));
        } catch {
          await writeFileAtomic(join(this.dir, DIR_VERSION_FILE), DIR_VERSION_1_1);
          this.wroteVersion = true;
        }
      } catch (cause) {
        this.created = undefined;
        throw ioError(`cannot create ${this.reference}`, cause);
      }
    })();
    return this.created;
  }

  /** True when the blob file is there with exactly the expected content (it is hashed to make sure). */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return fileMatches(join(this.dir, dirBlobName(desc.digest)), { digest: desc.digest, size: desc.size }, signal);
  }

  /** Stores a blob: temporary file, verified against `desc`, renamed; nothing is kept on failure. */
  putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal): Promise<void> {
    return this.inflight.run(async (s) => {
      let path: string;
      try {
        path = join(this.dir, dirBlobName(desc.digest));
        await this.ensureCreated();
      } catch (err) {
        stream.destroy();
        throw err;
      }
      await writeVerifiedFile(path, { digest: desc.digest, size: desc.size }, stream, { signal: s, what: `blob ${desc.digest} for ${this.reference}` });
      this.written.add(dirBlobName(desc.digest));
    }, signal);
  }

  /** True when `<hex>.manifest.json` is there and has exactly this digest. */
  async hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return fileMatches(join(this.dir, dirManifestName(parseDigest(digest))), { digest }, signal);
  }

  /** Writes a child manifest as `<hex>.manifest.json` now; keeps the top-level one for commit. */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    options.signal?.throwIfAborted();
    if (options.topLevel) {
      this.top = manifest;
      return;
    }
    await this.inflight.run(async (s) => {
      await this.ensureCreated();
      const path = join(this.dir, dirManifestName(manifest.digest));
      await writeVerifiedFile(path, { digest: manifest.digest, size: manifest.bytes.length }, Readable.from([Buffer.from(manifest.bytes)]), {
        signal: s,
        what: `manifest ${manifest.digest} for ${this.reference}`,
      });
      this.written.add(dirManifestName(manifest.digest));
    }, options.signal);
  }

  /** Keeps the signatures for commit, which writes them as `signature-N` (`<hex>.signature-N` for an instance). */
  async putSignatures(signatures: readonly Uint8Array[], options: SignatureOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const key = options.instanceDigest === undefined ? "" : parseDigest(options.instanceDigest);
    this.signatures.set(key, [...signatures]);
  }

  /**
   * Writes `version` and then `manifest.json` atomically (the moment the new image becomes the
   * directory's image), then the signatures given to {@link putSignatures}, then removes the
   * blobs, child manifests and signatures the new image does not reference (the directory holds
   * one image, so signatures not given for it are dropped, as skopeo does).
   */
  async commit(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const top = this.top;
    if (!top) throw new AirlockError("ERR_DESTINATION", `nothing to commit to ${this.reference}: no top-level manifest was written`);
    await this.ensureCreated();
    const keep = await this.referencedFiles(top);
    const v1_2 = [...keep.digests].some(needsVersion1_2);
    try {
      await writeFileAtomic(join(this.dir, DIR_VERSION_FILE), v1_2 ? DIR_VERSION_1_2 : DIR_VERSION_1_1);
      await writeFileAtomic(join(this.dir, DIR_MANIFEST_FILE), top.bytes);
    } catch (cause) {
      throw ioError(`cannot write ${join(this.dir, DIR_MANIFEST_FILE)}`, cause);
    }
    for (const [key, signatures] of this.signatures) {
      const instance = key === "" ? undefined : key;
      await writeSignatureFiles((n) => join(this.dir, dirSignatureName(n, instance)), signatures, instance === undefined ? String(this.reference) : `${instance} of ${this.reference}`);
      for (let n = 1; n <= signatures.length; n++) keep.files.add(dirSignatureName(n, instance));
    }
    for (const name of await fs.readdir(this.dir)) {
      if (keep.files.has(name) || !isDirContentFile(name)) continue;
      await fs.rm(join(this.dir, name), { force: true }).catch(() => {});
    }
    this.committed = true;
  }

  /** The files (and digests) the image `top` needs: its blobs, and for an index its child manifests and theirs. */
  private async referencedFiles(top: Manifest): Promise<{ files: Set<string>; digests: Set<Digest> }> {
    const files = new Set<string>([DIR_VERSION_FILE, DIR_MANIFEST_FILE]);
    const digests = new Set<Digest>();
    const visit = async (m: Manifest): Promise<void> => {
      if (!m.isIndex) {
        for (const b of m.blobs()) {
          files.add(dirBlobName(b.digest));
          digests.add(b.digest);
        }
        return;
      }
      for (const child of m.index.manifests) {
        const name = dirManifestName(child.digest);
        if (files.has(name)) continue;
        let bytes: Buffer;
        try {
          bytes = await readSmallFile(join(this.dir, name), MAX_MANIFEST_SIZE, () => new AirlockError("ERR_BLOB_NOT_FOUND", `${name} is missing`));
        } catch (err) {
          if (err instanceof AirlockError && err.code === "ERR_BLOB_NOT_FOUND") continue; // an index stored without its images (--multi-arch index-only)
          throw err;
        }
        let childManifest: Manifest;
        try {
          childManifest = Manifest.parse(bytes, { expected: child.digest, what: `${join(this.dir, name)}` });
        } catch {
          continue; // a damaged file, not this image's manifest: nothing it lists is needed
        }
        files.add(name);
        digests.add(child.digest);
        await visit(childManifest);
      }
    };
    await visit(top);
    return { files, digests };
  }

  /**
   * Without a commit, `manifest.json` (the image) was never touched. Writes still running are
   * stopped (their temporary files removed); the files this destination
   * wrote that the directory's current image does not use are removed again, and — when there is
   * no image — the version file and the directory, if this destination created them. Best effort.
   */
  async close(): Promise<void> {
    if (this.committed) return;
    await this.inflight.abortAll();
    if (this.created === undefined) return;
    try {
      let keep = new Set<string>();
      let hasImage = false;
      try {
        const bytes = await readSmallFile(join(this.dir, DIR_MANIFEST_FILE), MAX_MANIFEST_SIZE, () => new AirlockError("ERR_BLOB_NOT_FOUND", "no manifest.json"));
        hasImage = true;
        keep = (await this.referencedFiles(Manifest.parse(bytes))).files;
      } catch (err) {
        if (hasImage || !(err instanceof AirlockError && err.code === "ERR_BLOB_NOT_FOUND")) return; // an image we cannot read: leave everything
      }
      for (const name of this.written) if (!keep.has(name)) await fs.rm(join(this.dir, name), { force: true });
      if (!hasImage && this.wroteVersion) await fs.rm(join(this.dir, DIR_VERSION_FILE), { force: true });
      if (!hasImage && !this.existed) await fs.rmdir(this.dir).catch(() => {});
    } catch {
      // Best effort: whatever remains is verified content the next copy reuses or removes.
    }
  }
}

function notImageDir(ref: DirReference, cause: unknown): AirlockError {
  return new AirlockError(
    "ERR_DESTINATION",
    `cannot write ${ref}: ${ref.path} is not empty and is not a containers image directory (no valid ${DIR_VERSION_FILE} file); refusing to overwrite its data: choose a new or empty directory`,
    { cause },
  );
}
