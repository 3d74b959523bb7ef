/**
 * An OCI image layout on disk: `oci-layout`, `index.json` and `blobs/<alg>/<hex>`. Many images
 * live in one layout, each an index.json entry named by `org.opencontainers.image.ref.name`.
 * Blobs are written to a temporary file, verified and renamed, so no partial blob is ever visible
 * under its digest; index.json is read, changed and atomically replaced under a file lock, so
 * concurrent writers — in this process or others — lose no entry.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { type Digest, type Expected, digestAlgorithm, digestHex, digestOf, parseDigest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { withFileLock, writeFileAtomic } from "../fsutil.js";
import { type Descriptor, type IndexJSON, MAX_MANIFEST_SIZE, Manifest, REF_NAME_ANNOTATION, validateDescriptor } from "../manifest.js";
import { MediaType } from "../mediatype.js";
import type { BlobReader, GetBlobOptions } from "../transports/types.js";
import { fileSize, ioError, isNotFoundError, openBlobFile, readSmallFile, writeVerifiedFile } from "./files.js";

/** The name of the file that marks a directory as an OCI image layout. */
export const OCI_LAYOUT_FILE = "oci-layout";
/** The name of the layout's top-level index. */
export const INDEX_FILE = "index.json";
/** The lock file that serialises index.json updates (ignored by other tools). */
export const INDEX_LOCK_FILE = "index.json.lock";
/** The layout version airlock writes into `oci-layout`. */
export const OCI_LAYOUT_VERSION = "1.0.0";

/** Options of {@link OciLayout.open}. */
export interface OpenLayoutOptions {
  /**
   * Open for writing: the directory may be missing or empty, and is created (with `oci-layout`) by
   * the first write. A non-empty directory that is not an OCI layout is refused.
   */
  create?: boolean;
}

/** How an image is chosen from index.json: by name, by position, or as the only entry. */
export interface IndexSelector {
  /** The `org.opencontainers.image.ref.name` to look for. */
  name?: string | undefined;
  /** A 0-based position in `manifests[]` (skopeo's `oci:PATH:@N`). */
  position?: number | undefined;
}

/** An index.json entry chosen by {@link selectIndexEntry}, with its position. */
export interface SelectedEntry {
  descriptor: Descriptor;
  position: number;
}

/**
 * An OCI image layout directory. Open one with {@link OciLayout.open}; every digest is validated
 * (parseDigest) before it is turned into a path, so a crafted index.json or manifest cannot make
 * airlock read or write outside `blobs/`.
 */
export class OciLayout {
  /** The layout's directory, as given. */
  readonly dir: string;
  /** Whether the layout was opened for writing. */
  readonly writable: boolean;
  /** Whether the directory existed when the layout was opened. */
  private readonly existed: boolean;
  /** Whether this object has created or written anything. */
  private touched = false;

  private constructor(dir: string, writable: boolean, existed: boolean) {
    this.dir = dir;
    this.writable = writable;
    this.existed = existed;
  }

  /**
   * Opens the layout at `dir`. For reading, `dir` must exist and hold `index.json`
   * (ERR_INVALID_LAYOUT otherwise). With `create`, a missing or empty directory is accepted and
   * created by the first write. An `oci-layout` file, when present, must declare a 1.x layout.
   */
  static async open(dir: string, options: OpenLayoutOptions = {}): Promise<OciLayout> {
    const create = options.create ?? false;
    let st: Awaited<ReturnType<typeof fs.stat>>;
    try {
      st = await fs.stat(dir);
    } catch (cause) {
      if (!isNotFoundError(cause)) throw ioError(`cannot open OCI layout ${dir}`, cause);
      if (create) return new OciLayout(dir, true, false);
      throw new AirlockError("ERR_INVALID_LAYOUT", `no OCI image layout at ${dir}: the directory does not exist; check the path`, { cause });
    }
    if (!st.isDirectory()) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${dir} is not a directory, so it cannot be an OCI image layout; give the layout's directory`);
    }
    const layout = new OciLayout(dir, create, true);
    // One snapshot of the directory: another writer creating the layout writes oci-layout before
    // index.json, so a snapshot that shows index.json shows oci-layout too.
    let entries: string[];
    try {
      entries = await fs.readdir(dir);
    } catch (cause) {
      throw ioError(`cannot list ${dir}`, cause);
    }
    if (entries.includes(OCI_LAYOUT_FILE)) {
      await layout.checkMarker();
    } else if (create) {
      // A layout being created by another writer, or left by a write that never committed,
      // holds only blobs/ (and maybe the lock) until its first commit writes oci-layout.
      if (entries.some((e) => e !== INDEX_LOCK_FILE && e !== "blobs")) {
        throw new AirlockError("ERR_INVALID_LAYOUT", `${dir} exists and is not an OCI image layout (it has no ${OCI_LAYOUT_FILE} file); refusing to write into it: choose a new or empty directory`);
      }
    }
    if (!create && (await fileSize(join(dir, INDEX_FILE))) === undefined) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${dir} is not an OCI image layout: it has no ${INDEX_FILE}; check the path`);
    }
    return layout;
  }

  /** Reads `oci-layout` and checks its version; returns false if it is missing. */
  private async checkMarker(): Promise<boolean> {
    const path = join(this.dir, OCI_LAYOUT_FILE);
    let bytes: Buffer;
    try {
      bytes = await readSmallFile(path, 64 * 1024, () => new AirlockError("ERR_INVALID_LAYOUT", `${path} is missing`));
    } catch (err) {
      if (err instanceof AirlockError && err.code === "ERR_INVALID_LAYOUT") return false;
      throw err;
    }
    let version: unknown;
    try {
      version = (JSON.parse(bytes.toString("utf8")) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch (cause) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${path} is not valid JSON; the OCI layout at ${this.dir} is damaged`, { cause });
    }
    if (typeof version !== "string" || !/^1\.\d+\.\d+$/.test(version)) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${path} declares image layout version ${JSON.stringify(version)}; airlock reads layout version 1.x`);
    }
    return true;
  }

  /** Creates the directory and `blobs/` if missing. `oci-layout` is written with the first index.json. */
  private async ensureCreated(): Promise<void> {
    if (!this.writable) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `the OCI layout ${this.dir} was opened for reading; open it with { create: true } to write`);
    }
    this.touched = true;
    try {
      await fs.mkdir(join(this.dir, "blobs"), { recursive: true });
    } catch (cause) {
      throw ioError(`cannot create the OCI layout ${this.dir}`, cause);
    }
  }

  /** The path of the blob with `digest`: `blobs/<alg>/<hex>`. Throws ERR_INVALID_DIGEST for a malformed digest. */
  blobPath(digest: string): string {
    const d = parseDigest(digest);
    return join(this.dir, "blobs", digestAlgorithm(d), digestHex(d));
  }

  /** Reports whether the blob is stored (with the expected size, when `size` is given and non-negative). */
  async hasBlob(desc: { digest: string; size?: number | undefined }): Promise<boolean> {
    const size = await fileSize(this.blobPath(desc.digest));
    if (size === undefined) return false;
    return desc.size === undefined || desc.size < 0 || size === desc.size;
  }

  /**
   * Stores a blob from `stream`: hashed while written to a temporary file in `blobs/<alg>/`,
   * checked against `desc` (digest, and size when non-negative), fsynced, then renamed. If the
   * stream errors or the content does not match, nothing is kept under the digest's name.
   */
  async writeBlob(desc: Expected, stream: Readable, signal?: AbortSignal): Promise<void> {
    let path: string;
    try {
      path = this.blobPath(desc.digest);
      await this.ensureCreated();
      await fs.mkdir(join(this.dir, "blobs", digestAlgorithm(desc.digest)), { recursive: true });
    } catch (err) {
      stream.destroy();
      if (err instanceof AirlockError) throw err;
      throw ioError(`cannot create ${join(this.dir, "blobs")}`, err);
    }
    await writeVerifiedFile(path, desc, stream, { signal, what: `blob ${desc.digest} for OCI layout ${this.dir}` });
  }

  /** Stores `bytes` as a blob (a manifest, a config) and returns its descriptor fields. */
  async writeBlobBytes(bytes: Uint8Array, digest?: Digest): Promise<{ digest: Digest; size: number }> {
    const d = digest ?? digestOf(bytes);
    await this.writeBlob({ digest: d, size: bytes.length }, Readable.from([Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]));
    return { digest: d, size: bytes.length };
  }

  /** Opens a blob for reading (from `options.offset`). Throws ERR_BLOB_NOT_FOUND naming the digest and the path. */
  async readBlob(digest: string, options: GetBlobOptions = {}): Promise<BlobReader> {
    const path = this.blobPath(digest);
    return openBlobFile(path, options, () => this.blobNotFound(digest, path));
  }

  /** Reads a small blob (a manifest) whole; refuses one larger than `maxSize` (default 4 MiB). */
  async readBlobBytes(digest: string, maxSize = MAX_MANIFEST_SIZE): Promise<Buffer> {
    const path = this.blobPath(digest);
    return readSmallFile(path, maxSize, () => this.blobNotFound(digest, path));
  }

  private blobNotFound(digest: string, path: string): AirlockError {
    return new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${digest} is missing from the OCI layout ${this.dir} (no file ${path}); the layout is incomplete: copy the image into it again`);
  }

  /**
   * Undoes an abandoned write (a destination closed without commit): under the index lock, removes
   * the blobs in `written` that no image named in index.json refers to, then — when the layout has
   * no index.json — the directories this layout created if they are empty. So a failed copy leaves
   * the layout as it was. Race-free with other writers: commits happen under the same lock, a blob
   * a committed image uses is kept, and a writer that reused a removed blob finds it missing when
   * it commits ({@link assertComplete}) and fails instead of naming an incomplete image. When some
   * image in index.json cannot be read, nothing is removed. Best effort: never throws.
   */
  async abandon(written: Iterable<string>): Promise<void> {
    if (!this.writable || !this.touched) return;
    try {
      let empty = false;
      await withFileLock(join(this.dir, INDEX_LOCK_FILE), async () => {
        const index = await this.readIndexIfPresent();
        const used = index ? await this.referencedDigests(index) : new Set<string>();
        for (const d of written) if (!used.has(d)) await fs.rm(this.blobPath(d), { force: true });
        if (index) return;
        const blobs = join(this.dir, "blobs");
        for (const alg of await fs.readdir(blobs).catch(() => [] as string[])) await fs.rmdir(join(blobs, alg)).catch(() => {});
        await fs.rmdir(blobs).catch(() => {});
        empty = true;
      });
      if (empty && !this.existed) await fs.rmdir(this.dir).catch(() => {});
    } catch {
      // Best effort: what remains is content-addressed and verified.
    }
  }

  /**
   * Every digest reachable from `index` (index.json by default): the entries, the manifests their
   * indexes list, and the configs and layers of every image manifest. Throws when a manifest
   * cannot be read or parsed, so a caller never takes a blob for unused by mistake.
   */
  async referencedDigests(index?: IndexJSON): Promise<Set<Digest>> {
    const seen = new Set<Digest>();
    const visit = async (d: Descriptor): Promise<void> => {
      if (seen.has(d.digest)) return;
      seen.add(d.digest);
      const m = Manifest.parse(await this.readBlobBytes(d.digest), { mediaType: d.mediaType, expected: d.digest, what: `manifest ${d.digest} in ${this.dir}` });
      if (m.isIndex) {
        for (const child of m.index.manifests) await visit(child);
      } else {
        for (const b of m.blobs()) seen.add(b.digest);
      }
      if (m.json.subject) seen.add(m.json.subject.digest);
    };
    for (const d of (index ?? (await this.readIndex())).manifests) await visit(d);
    return seen;
  }

  /**
   * Checks that everything `manifest` refers to is stored: for an image manifest its config and
   * layers (with their sizes), for an index each listed manifest (which must hash to its digest)
   * and, recursively, what it refers to. Throws ERR_DESTINATION naming the first missing blob, so
   * that a name is never given to an image the layout does not fully hold.
   */
  async assertComplete(manifest: Manifest, what = `image ${manifest.digest}`): Promise<void> {
    const missing = (d: Descriptor, kind: string) =>
      new AirlockError("ERR_DESTINATION", `cannot name ${what} in ${this.dir}: its ${kind} ${d.digest} is not in the layout (removed by another process?); run the copy again`);
    if (!manifest.isIndex) {
      for (const b of manifest.blobs()) if (!(await this.hasBlob(b))) throw missing(b, "blob");
      return;
    }
    for (const child of manifest.index.manifests) {
      if (!(await this.hasBlob(child))) throw missing(child, "manifest");
      const bytes = await this.readBlobBytes(child.digest);
      await this.assertComplete(Manifest.parse(bytes, { expected: child.digest, what: `manifest ${child.digest} in ${this.dir}` }), what);
    }
  }

  /** Reads and validates index.json. Throws ERR_INVALID_LAYOUT when it is missing or malformed. */
  async readIndex(): Promise<IndexJSON> {
    const index = await this.readIndexIfPresent();
    if (!index) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.dir} is not an OCI image layout: it has no ${INDEX_FILE}; check the path`);
    return index;
  }

  private async readIndexIfPresent(): Promise<IndexJSON | undefined> {
    const path = join(this.dir, INDEX_FILE);
    let bytes: Buffer;
    try {
      bytes = await readSmallFile(path, MAX_MANIFEST_SIZE, () => new AirlockError("ERR_INVALID_LAYOUT", `${path} is missing`));
    } catch (err) {
      if (err instanceof AirlockError && err.code === "ERR_INVALID_LAYOUT") return undefined;
      throw err;
    }
    return parseLayoutIndex(bytes, path);
  }

  /**
   * Changes index.json: under an exclusive lock (`index.json.lock`, shared with other airlock
   * processes), reads the current index (an empty one if there is none), applies `fn`, and
   * atomically replaces the file with the result — so concurrent updates are serialised and none
   * is lost. `fn` returns the new index, or undefined to leave the file unchanged. Returns the
   * index as it is after the update.
   */
  async updateIndex(fn: (index: IndexJSON) => IndexJSON | undefined | Promise<IndexJSON | undefined>): Promise<IndexJSON> {
    await this.ensureCreated();
    return withFileLock(join(this.dir, INDEX_LOCK_FILE), async () => {
      if ((await fileSize(join(this.dir, OCI_LAYOUT_FILE))) === undefined) {
        try {
          await writeFileAtomic(join(this.dir, OCI_LAYOUT_FILE), JSON.stringify({ imageLayoutVersion: OCI_LAYOUT_VERSION }));
        } catch (cause) {
          throw ioError(`cannot write ${join(this.dir, OCI_LAYOUT_FILE)}`, cause);
        }
      }
      const current = (await this.readIndexIfPresent()) ?? emptyIndex();
      const next = await fn(structuredClone(current));
      if (next === undefined) return current;
      for (const [i, d] of next.manifests.entries()) validateDescriptor(d, `new ${INDEX_FILE} of ${this.dir}: manifests[${i}]`);
      try {
        await writeFileAtomic(join(this.dir, INDEX_FILE), JSON.stringify(next));
      } catch (cause) {
        throw ioError(`cannot write ${join(this.dir, INDEX_FILE)}`, cause);
      }
      return next;
    });
  }
}

/** A new, empty OCI image index as airlock writes it into a layout. */
export function emptyIndex(): IndexJSON {
  return { schemaVersion: 2, mediaType: MediaType.OCIIndex, manifests: [] };
}

/**
 * Parses and validates a layout's index.json: schemaVersion 2, a `manifests` array of well-formed
 * descriptors (valid digests, sizes, string annotations). `where` names the file in errors.
 */
export function parseLayoutIndex(bytes: Uint8Array, where: string): IndexJSON {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_LAYOUT", `${where} is not valid JSON; the layout is damaged`, { cause });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AirlockError("ERR_INVALID_LAYOUT", `${where} is not a JSON object; the layout is damaged`);
  }
  const o = json as Record<string, unknown>;
  if (o.schemaVersion !== 2) throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: schemaVersion must be 2`);
  if (!Array.isArray(o.manifests)) throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: manifests must be an array`);
  for (const [i, d] of o.manifests.entries()) {
    try {
      validateDescriptor(d, `${where}: manifests[${i}]`);
    } catch (cause) {
      throw new AirlockError("ERR_INVALID_LAYOUT", (cause as Error).message, { cause });
    }
    const ann = (d as Descriptor).annotations;
    if (ann !== undefined && (typeof ann !== "object" || ann === null || Object.values(ann).some((v) => typeof v !== "string"))) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: manifests[${i}]: annotations must map strings to strings`);
    }
  }
  return o as unknown as IndexJSON;
}

/** The `org.opencontainers.image.ref.name` of an index entry, if any. */
export function refName(desc: Descriptor): string | undefined {
  const n = desc.annotations?.[REF_NAME_ANNOTATION];
  return n === undefined || n === "" ? undefined : n;
}

/**
 * Returns a copy of `index` with `desc` added as containers/image's OCI destination does it:
 * when `name` is given, an existing entry with that name loses its name annotation (the name
 * moves to the new entry); an existing entry with the same digest and no name is replaced;
 * otherwise the entry is appended. Without `name`, an unnamed entry with the same digest is
 * replaced, so re-writing the same unnamed image does not add a duplicate.
 */
export function addIndexEntry(index: IndexJSON, desc: Descriptor, name?: string): IndexJSON {
  const entry: Descriptor = { ...desc };
  if (name !== undefined && name !== "") entry.annotations = { ...desc.annotations, [REF_NAME_ANNOTATION]: name };
  const manifests = index.manifests.map((m) => {
    if (name === undefined || name === "" || refName(m) !== name) return m;
    const { [REF_NAME_ANNOTATION]: _, ...rest } = m.annotations ?? {};
    const out: Descriptor = { ...m };
    if (Object.keys(rest).length > 0) out.annotations = rest;
    else delete out.annotations;
    return out;
  });
  const same = manifests.findIndex((m) => m.digest === entry.digest && refName(m) === undefined);
  if (same >= 0) manifests[same] = entry;
  else manifests.push(entry);
  return { ...index, manifests };
}

/** The names (`org.opencontainers.image.ref.name`) of the entries of `index`, in order. */
export function indexNames(index: IndexJSON): string[] {
  return index.manifests.map(refName).filter((n): n is string => n !== undefined);
}

/**
 * Chooses the image an `oci:` reference means, as containers/image does: by name (the first entry
 * with that `org.opencontainers.image.ref.name`), by position (`@N`), or — with neither — the only
 * entry. `where` names the layout in errors and `refPrefix` is how a user names it (default
 * `oci:WHERE`). Throws ERR_IMAGE_NOT_FOUND for a missing name or position, ERR_AMBIGUOUS_IMAGE
 * when there is more than one image and no choice.
 */
export function selectIndexEntry(index: IndexJSON, selector: IndexSelector, where: string, refPrefix = `oci:${where}`): SelectedEntry {
  const { manifests } = index;
  if (selector.position !== undefined) {
    const descriptor = manifests[selector.position];
    if (!descriptor) {
      throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image @${selector.position} in ${where}: index.json has ${manifests.length} ${manifests.length === 1 ? "entry" : "entries"} (@0 to @${manifests.length - 1})`);
    }
    return { descriptor, position: selector.position };
  }
  if (selector.name !== undefined && selector.name !== "") {
    const position = manifests.findIndex((m) => refName(m) === selector.name);
    if (position < 0) {
      const names = indexNames(index);
      throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image named ${JSON.stringify(selector.name)} in ${where}; ${names.length ? `names are: ${names.join(", ")}` : "it has no named images"}`);
    }
    return { descriptor: manifests[position]!, position };
  }
  if (manifests.length === 1) return { descriptor: manifests[0]!, position: 0 };
  if (manifests.length === 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image in ${where}: its index.json is empty`);
  const names = indexNames(index);
  const unnamed = manifests.length - names.length;
  throw new AirlockError(
    "ERR_AMBIGUOUS_IMAGE",
    `more than one image in ${where}; choose one with ${refPrefix}:NAME or ${refPrefix}:@N; names are: ${names.length ? names.join(", ") : "(none)"}${unnamed ? ` (and ${unnamed} unnamed, @0 to @${manifests.length - 1})` : ""}`,
  );
}
