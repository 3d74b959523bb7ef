/**
 * Reads an image from skopeo's `dir:` layout: `manifest.json` (its media type taken from its
 * `mediaType` field, or guessed from its shape), child manifests `<hex>.manifest.json`, and blobs.
 */
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { type Digest, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { ioError, isNotFoundError, openBlobFile, readSmallFile } from "../../layout/files.js";
import { type Descriptor, MAX_MANIFEST_SIZE, Manifest } from "../../manifest.js";
import { readSignatureFiles } from "../signatures.js";
import type { BlobReader, GetBlobOptions, ImageSource, SignatureOptions, SignatureSource } from "../types.js";
import { DIR_MANIFEST_FILE, DIR_VERSION_FILE, dirBlobPath, dirManifestName, dirSignatureName, parseDirVersion } from "./format.js";
import type { DirReference } from "./reference.js";

/** An {@link ImageSource} over a `dir:` image directory; its signatures are the `signature-N` files. */
export class DirImageSource implements ImageSource, SignatureSource {
  readonly reference: DirReference;
  private top: Manifest | undefined;

  private constructor(reference: DirReference) {
    this.reference = reference;
  }

  /** Opens `ref` for reading: the directory must exist and hold `manifest.json`; a `version` file, if any, must be 1.x. */
  static async open(ref: DirReference): Promise<DirImageSource> {
    const dir = ref.path;
    let st: Awaited<ReturnType<typeof fs.stat>>;
    try {
      st = await fs.stat(dir);
    } catch (cause) {
      if (isNotFoundError(cause)) throw new AirlockError("ERR_INVALID_LAYOUT", `no image at ${ref}: the directory ${dir} does not exist; check the path`, { cause });
      throw ioError(`cannot open ${dir}`, cause);
    }
    if (!st.isDirectory()) throw new AirlockError("ERR_INVALID_LAYOUT", `${ref}: ${dir} is not a directory`);
    const versionPath = join(dir, DIR_VERSION_FILE);
    try {
      parseDirVersion(await fs.readFile(versionPath, "utf8"), versionPath);
    } catch (err) {
      if (!isNotFoundError(err)) throw err instanceof AirlockError ? err : ioError(`cannot read ${versionPath}`, err);
    }
    try {
      await fs.access(join(dir, DIR_MANIFEST_FILE));
    } catch (cause) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${ref}: ${dir} has no ${DIR_MANIFEST_FILE}, so it holds no dir: image (or a copy into it did not finish); check the path`, { cause });
    }
    return new DirImageSource(ref);
  }

  /**
   * The top-level manifest (`manifest.json`) when `digest` is undefined, else the manifest
   * `<hex>.manifest.json` (or `manifest.json` itself if that is the one with this digest).
   */
  async getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    if (digest === undefined) return this.topLevel();
    const d = parseDigest(digest);
    const path = join(this.reference.path, dirManifestName(d));
    let bytes: Buffer;
    try {
      bytes = await readSmallFile(path, MAX_MANIFEST_SIZE, () => new AirlockError("ERR_BLOB_NOT_FOUND", `manifest ${d} is missing from ${this.reference} (no file ${path})`));
    } catch (err) {
      if (err instanceof AirlockError && err.code === "ERR_BLOB_NOT_FOUND") {
        const top = await this.topLevel();
        if (top.digest === d) return top;
      }
      throw err;
    }
    return Manifest.parse(bytes, { expected: d, what: `manifest ${d} of ${this.reference}` });
  }

  private async topLevel(): Promise<Manifest> {
    if (!this.top) {
      const path = join(this.reference.path, DIR_MANIFEST_FILE);
      const bytes = await readSmallFile(path, MAX_MANIFEST_SIZE, () => new AirlockError("ERR_INVALID_LAYOUT", `${this.reference} has no ${DIR_MANIFEST_FILE}`));
      this.top = Manifest.parse(bytes, { what: `${path}` });
    }
    return this.top;
  }

  /** Opens the blob file `<hex>` (from `options.offset`). ERR_BLOB_NOT_FOUND names the digest and the path. */
  async getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    const path = dirBlobPath(this.reference.path, desc.digest);
    return openBlobFile(path, options, () => new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${desc.digest} is missing from ${this.reference} (no file ${path}); the directory is incomplete: copy the image into it again`));
  }

  /** Reads `signature-1…` (or `<hex>.signature-1…` for an instance) until one is missing. */
  getSignatures(options: SignatureOptions = {}): Promise<Uint8Array[]> {
    const instance = options.instanceDigest === undefined ? undefined : parseDigest(options.instanceDigest);
    const what = instance === undefined ? String(this.reference) : `${instance} of ${this.reference}`;
    return readSignatureFiles((n) => join(this.reference.path, dirSignatureName(n, instance)), what, options.signal);
  }

  /** Nothing to release. */
  async close(): Promise<void> {}
}
