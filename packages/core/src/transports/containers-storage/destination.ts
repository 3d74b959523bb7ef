/**
 * Writes an image into a containers/storage store so that podman, buildah and CRI-O see it, as
 * containers/image's storage destination does: each layer is applied to a new layer directory
 * (vfs: a copy of its parent's file system with the layer applied; overlay: the layer's own files
 * under `<id>/diff`, with `link`, `lower`, `work`, `merged` and `l/<link>`), its tar-split record
 * is written so that the layer's original tar — and so its diff ID — can be produced again, and
 * layers.json and images.json get their entries. Layer IDs are containers/image's: the diff ID's
 * hex for a base layer, else sha256(PARENT-ID "+" DIFF-ID-HEX); the image ID is the config's hex;
 * a layer or image already in the store is reused.
 *
 * Blobs are spooled to a temporary directory as they arrive (`putBlob`); everything happens at
 * `commit`, under containers/storage's exclusive locks (storage.lock, layers.lock, images.lock):
 * new directories and files get temporary names and are renamed into place, and layers.json /
 * images.json are replaced atomically, each write recorded in its lock file. Before `commit` the
 * store is untouched. Writing needs root (files keep the layer's owners); inside
 * `podman unshare` a rootless user is root.
 * @see https://github.com/containers/image/blob/main/storage/storage_dest.go
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline, type Readable, Transform, type TransformCallback } from "node:stream";
import { promisify } from "node:util";
import { type Compression, decompressor, detectCompression, peek } from "../../convert/compression.js";
import { type Digest, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { writeFileAtomic } from "../../fsutil.js";
import { writeVerifiedFile } from "../../layout/files.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import type { DestinationCapabilities, ImageDestination, PutManifestOptions, SignatureDestination, SignatureOptions, SystemContext } from "../types.js";
import { applyLayer, type WhiteoutFormat } from "./extract.js";
import type { StorageReference } from "./reference.js";
import { type ImageRecord, type LayerRecord, manifestKey, Store } from "./store.js";
import { assembleLayer, TarSplitRecorder } from "./tarsplit.js";

const run = promisify(execFile);

/** What a containers-storage destination stores: OCI and Docker image manifests, one image (no index), signatures, blobs written concurrently. */
export const STORAGE_DESTINATION_CAPABILITIES: DestinationCapabilities = {
  manifestMediaTypes: [MediaType.OCIManifest, MediaType.DockerManifest],
  concurrentWrites: true,
  indexes: false,
  signatures: true,
};

/** containers/storage's archive.Compression values, as layers.json records them. */
const COMPRESSION_CODE: Record<Compression, number> = { none: 0, gzip: 2, zstd: 4 };

/** The ID containers/image gives a layer: its diff ID's hex on top of nothing, else sha256(parent "+" hex). */
export function layerID(parent: string | undefined, diffID: Digest): string {
  const hex = diffID.slice(diffID.indexOf(":") + 1);
  return parent === undefined ? hex : createHash("sha256").update(`${parent}+${hex}`).digest("hex");
}

function hashing(h: ReturnType<typeof createHash>, count: { n: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      h.update(chunk);
      count.n += chunk.length;
      cb(null, chunk);
    },
  });
}

/** An {@link ImageDestination} that writes one image into a containers/storage store at commit. */
export class StorageImageDestination implements ImageDestination, SignatureDestination {
  readonly reference: StorageReference;
  readonly capabilities = STORAGE_DESTINATION_CAPABILITIES;
  /** Layers are taken as given (each is decompressed as its data says when applied), as containers/image's storage destination (PreserveOriginal; convert/convert.ts). */
  readonly desiredLayerCompression = "preserve" as const;
  private readonly store: Store;
  private readonly staging: string;
  /** Blobs spooled by putBlob, by digest. */
  private readonly spooled = new Map<string, { path: string; size: number }>();
  /** Blobs tryReuseBlob found as layers of the store, by digest. */
  private readonly reused = new Map<string, LayerRecord>();
  private manifest: Manifest | undefined;
  /** The image's signatures, stored at commit. */
  private signatures: readonly Uint8Array[] | undefined;

  private constructor(reference: StorageReference, store: Store, staging: string) {
    this.reference = reference;
    this.store = store;
    this.staging = staging;
  }

  /** Resolves the store (refusing drivers airlock cannot write, and non-root users) and makes a staging directory. */
  static async open(ref: StorageReference, ctx?: SystemContext): Promise<StorageImageDestination> {
    const what = String(ref);
    if (ref.named === undefined && ref.id === undefined) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot write ${what}: a destination needs a name (NAME[:TAG]) or a full image ID`);
    }
    if (ref.idPrefix !== undefined && !ref.idOrName) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot write ${what}: a destination's image ID must be complete (64 hex digits)`);
    }
    if (typeof process.getuid === "function" && process.getuid() !== 0) {
      throw new AirlockError(
        "ERR_UNSUPPORTED",
        `cannot write ${what}: writing to containers-storage needs root, because the files of a layer keep their owners; run as root, or as a rootless user inside podman unshare`,
      );
    }
    const store = await Store.open(ref.store, what, true);
    const staging = await fs.mkdtemp(join(ctx?.tmpDir ?? tmpdir(), "airlock-storage-"));
    return new StorageImageDestination(ref, store, staging);
  }

  /** True when the blob is a layer the store already holds (by compressed or uncompressed digest). */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    if (!desc.mediaType.includes("layer") && !desc.mediaType.includes("rootfs")) return false;
    // Read without a lock (layers.json is replaced atomically): commit checks again under the lock.
    const layers = await this.store.readLayers();
    const layer = layers.find((l) => (l["compressed-diff-digest"] === desc.digest || l["diff-digest"] === desc.digest) && l["diff-digest"] && !l.flags?.incomplete);
    if (!layer) return false;
    this.reused.set(desc.digest, layer);
    return true;
  }

  /** Spools a blob (verified against `desc`) to the staging directory. */
  async putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal): Promise<void> {
    const path = join(this.staging, parseDigest(desc.digest).replace(":", "-"));
    await writeVerifiedFile(path, { digest: desc.digest, size: desc.size }, stream, { signal, what: `blob ${desc.digest} for ${this.reference}` });
    this.spooled.set(desc.digest, { path, size: (await fs.stat(path)).size });
  }

  /** Nothing is stored by manifest digest outside an image: always false. */
  async hasManifest(_digest: Digest): Promise<boolean> {
    return false;
  }

  /** Keeps the image manifest for commit. */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    options.signal?.throwIfAborted();
    if (manifest.isIndex || !options.topLevel) {
      throw new AirlockError("ERR_UNSUPPORTED", `${this.reference}: airlock writes one image into containers-storage, not an index; copy one platform`);
    }
    this.manifest = manifest;
  }

  /** Keeps the image's signatures for commit (stored as containers/image does: big data `signatures` and `signature-<hex>`). */
  async putSignatures(signatures: readonly Uint8Array[], options: SignatureOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    if (options.instanceDigest !== undefined) throw new AirlockError("ERR_UNSUPPORTED", `${this.reference}: airlock writes one image into containers-storage, not an index's images`);
    this.signatures = [...signatures];
  }

  /** Creates the layers and the image in the store (see the file comment). */
  async commit(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const manifest = this.manifest;
    const what = String(this.reference);
    if (!manifest) throw new AirlockError("ERR_DESTINATION", `nothing to commit to ${what}: no manifest was written`);
    const configDesc = manifest.image.config;
    const configFile = this.spooled.get(configDesc.digest);
    if (!configFile) throw new AirlockError("ERR_DESTINATION", `${what}: the config ${configDesc.digest} was not written`);
    const configBytes = await fs.readFile(configFile.path);
    let config: { created?: unknown; rootfs?: { diff_ids?: unknown } };
    try {
      config = JSON.parse(configBytes.toString("utf8")) as typeof config;
    } catch (cause) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: the config ${configDesc.digest} is not JSON`, { cause });
    }
    const diffIDs = Array.isArray(config.rootfs?.diff_ids) ? (config.rootfs.diff_ids as string[]).map((d) => parseDigest(String(d))) : undefined;
    const manifestLayers = manifest.image.layers;
    if (!diffIDs || diffIDs.length !== manifestLayers.length) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: the config lists ${diffIDs?.length ?? 0} diff IDs for ${manifestLayers.length} layers; the image is inconsistent`);
    }
    const imageID = this.reference.id ?? configDesc.digest.slice(configDesc.digest.indexOf(":") + 1);
    const locks = await this.store.lockForWriting(`the store ${this.store}`, signal);
    try {
      const layers = await this.store.readLayers();
      let parent: string | undefined;
      for (const [i, desc] of manifestLayers.entries()) {
        signal?.throwIfAborted();
        const diffID = diffIDs[i] as Digest;
        const id = layerID(parent, diffID);
        const existing = layers.find((l) => l.id === id);
        if (existing) {
          if (existing.flags?.incomplete) {
            throw new AirlockError("ERR_DESTINATION", `${what}: layer ${id} in ${this.store} is marked incomplete (an interrupted write); let podman clean it up (e.g. podman images) and retry`);
          }
          if (existing["diff-digest"] !== diffID) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: layer ${id} in the store has diff ID ${existing["diff-digest"]}, not ${diffID}; the store is inconsistent`);
          parent = id;
          continue;
        }
        const record = await this.createLayer(id, parent, desc, diffID, i, layers);
        layers.push(record);
        await this.store.writeLayers(layers);
        parent = id;
      }
      await this.writeImage(imageID, parent, manifest, configDesc.digest, configBytes, typeof config.created === "string" ? config.created : undefined);
    } finally {
      await locks.release();
    }
  }

  /** Applies one layer into a new layer directory and writes its tar-split; returns its layers.json record. */
  private async createLayer(id: string, parent: string | undefined, desc: Descriptor, diffID: Digest, index: number, layers: readonly LayerRecord[]): Promise<LayerRecord> {
    const what = `layer ${index} (${desc.digest}) of ${this.reference}`;
    const spooled = this.spooled.get(desc.digest);
    let input: Readable;
    let compression: Compression = "none";
    if (spooled) {
      // The spooled blob was verified against desc (digest and size) as it was written.
      const { head, stream } = await peek(createReadStream(spooled.path, { highWaterMark: 1024 * 1024 }) as Readable);
      const detected = detectCompression(head);
      if (detected === "bzip2" || detected === "xz") throw new AirlockError("ERR_UNSUPPORTED", `${what} is ${detected}-compressed, which airlock cannot apply`);
      compression = detected;
      input = detected === "none" ? stream : pipeline(stream, decompressor(detected), () => {});
    } else {
      // Found in the store under another parent: its tar is produced again from that layer.
      const hint = this.reused.get(desc.digest);
      const from = layers.find((l) => l.id === hint?.id) ?? layers.find((l) => l["diff-digest"] === diffID && !l.flags?.incomplete);
      if (!from) throw new AirlockError("ERR_DESTINATION", `${what} was neither written nor found in the store`);
      if (from["diff-digest"] !== diffID) {
        throw new AirlockError("ERR_DIGEST_MISMATCH", `${what}: the store's layer with this blob has diff ID ${from["diff-digest"]}, but the config says ${diffID}; the image is inconsistent`);
      }
      input = assembleLayer(this.store.tarSplitPath(from.id), this.store.diffDir(from.id), `layer ${from.id} of ${this.store}`);
    }
    const suffix = `.airlock-${randomBytes(6).toString("hex")}`;
    const finalDir = this.store.driver === "vfs" ? this.store.diffDir(id) : join(this.store.options.graphRoot, "overlay", id);
    const tmpDir = `${finalDir}${suffix}`;
    const tarSplitTmp = `${this.store.tarSplitPath(id)}${suffix}`;
    try {
      const diffRoot = await this.prepareLayerDir(tmpDir, parent);
      const uncompressed = { n: 0 };
      const uncompressedHash = createHash("sha256");
      const recorder = new TarSplitRecorder(createWriteStream(tarSplitTmp, { mode: 0o600 }));
      const format: WhiteoutFormat = this.store.driver === "vfs" ? "apply" : "overlay";
      // pipeline: a failure anywhere (a corrupt gzip stream) ends the extraction with that error.
      let failure: Error | undefined;
      const tar = pipeline(input, hashing(uncompressedHash, uncompressed), recorder, (err) => {
        if (err) failure = err;
      });
      let owners: Awaited<ReturnType<typeof applyLayer>>;
      try {
        owners = await applyLayer(tar, diffRoot, format, what, recorder.xattrs);
      } catch (err) {
        if (failure) throw new AirlockError("ERR_IO", `${what}: cannot read the layer: ${failure.message}`, { cause: failure });
        throw err;
      }
      if (failure) throw new AirlockError("ERR_IO", `${what}: cannot read the layer: ${failure.message}`, { cause: failure });
      await recorder.written();
      const actual = `sha256:${uncompressedHash.digest("hex")}`;
      if (actual !== diffID) throw new AirlockError("ERR_DIGEST_MISMATCH", `${what} decompresses to ${actual}, but the config's rootfs.diff_ids[${index}] is ${diffID}; the image is inconsistent`);
      await fs.rename(tarSplitTmp, this.store.tarSplitPath(id));
      await fs.rename(tmpDir, finalDir);
      if (this.store.driver === "overlay") await this.linkOverlay(id, finalDir);
      const record: LayerRecord = { id };
      if (parent !== undefined) record.parent = parent;
      record.created = new Date().toISOString();
      if (spooled) {
        record["compressed-diff-digest"] = compression === "none" ? diffID : desc.digest;
        record["compressed-size"] = spooled.size;
      }
      record["diff-digest"] = diffID;
      record["diff-size"] = uncompressed.n;
      if (spooled && compression !== "none") record.compression = COMPRESSION_CODE[compression];
      record.uidset = owners.uids;
      record.gidset = owners.gids;
      return record;
    } catch (err) {
      input.destroy();
      await fs.rm(tmpDir, { recursive: true, force: true }).catch(() => {});
      await fs.rm(tarSplitTmp, { force: true }).catch(() => {});
      throw err;
    }
  }

  /** Creates a new layer directory at `dir` and returns where its files go. */
  private async prepareLayerDir(dir: string, parent: string | undefined): Promise<string> {
    if (this.store.driver === "vfs") {
      await fs.mkdir(join(this.store.options.graphRoot, "vfs", "dir"), { recursive: true, mode: 0o700 });
      if (parent === undefined) {
        await fs.mkdir(dir, { mode: 0o555 });
        await fs.chmod(dir, 0o555);
        return dir;
      }
      // vfs: a layer's directory starts as a full copy of its parent's (owners, modes, links, devices kept).
      try {
        await run("cp", ["-a", "--reflink=auto", this.store.diffDir(parent), dir]);
      } catch (cause) {
        throw new AirlockError("ERR_IO", `cannot copy the parent layer ${parent} for ${this.reference}: ${(cause as Error).message.trim()}`, { cause });
      }
      return dir;
    }
    await fs.mkdir(join(this.store.options.graphRoot, "overlay"), { recursive: true, mode: 0o700 });
    await fs.mkdir(join(this.store.options.graphRoot, "overlay", "l"), { recursive: true, mode: 0o755 });
    await fs.mkdir(dir, { mode: 0o700 });
    // As the overlay driver: diff has the parent's diff's mode (0555 for a base layer, which also gets an "empty" lower).
    const parentDir = parent === undefined ? undefined : join(this.store.options.graphRoot, "overlay", parent);
    const diffMode = parentDir === undefined ? 0o555 : (await fs.stat(join(parentDir, "diff"))).mode & 0o7777;
    await fs.mkdir(join(dir, "diff"));
    await fs.chmod(join(dir, "diff"), diffMode);
    await fs.mkdir(join(dir, "work"), { mode: 0o700 });
    await fs.mkdir(join(dir, "merged"), { mode: 0o700 });
    if (parentDir === undefined) await fs.mkdir(join(dir, "empty"), { mode: 0o700 });
    else {
      const parentLink = (await fs.readFile(join(parentDir, "link"), "utf8")).trim();
      let lower = `l/${parentLink}`;
      try {
        lower += `:${(await fs.readFile(join(parentDir, "lower"), "utf8")).trim()}`;
      } catch {
        // the parent is a base layer
      }
      await fs.writeFile(join(dir, "lower"), lower, { mode: 0o644 });
    }
    return join(dir, "diff");
  }

  /** overlay: the short name `l/<link>` → `../<id>/diff` that `lower` files use. */
  private async linkOverlay(id: string, dir: string): Promise<void> {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const link = [...randomBytes(26)].map((b) => alphabet[b % 32]).join("");
    await fs.symlink(`../${id}/diff`, join(this.store.options.graphRoot, "overlay", "l", link));
    await fs.writeFile(join(dir, "link"), link, { mode: 0o644 });
  }

  /** Creates (or updates) the image record and its big-data files, and names it. */
  private async writeImage(imageID: string, top: string | undefined, manifest: Manifest, configDigest: Digest, configBytes: Buffer, created: string | undefined): Promise<void> {
    const what = String(this.reference);
    const images = await this.store.readImages();
    const name = this.reference.named?.toString();
    let image = images.find((i) => i.id === imageID);
    const previousManifest = image?.digest;
    if (image && (image.layer ?? undefined) !== top) {
      throw new AirlockError("ERR_DESTINATION", `${what}: image ${imageID} already exists in ${this.store} with another top layer (${image.layer ?? "none"}, not ${top ?? "none"})`);
    }
    const dir = join(this.store.imagesDir, imageID);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const items: [string, Uint8Array, string][] = [
      [configDigest, configBytes, configDigest],
      [manifestKey(manifest.digest), manifest.bytes, manifest.digest],
      ["manifest", manifest.bytes, manifest.digest],
    ];
    const signatures = this.signatures;
    if (signatures !== undefined) {
      const all = Buffer.concat(signatures.map((b) => Buffer.from(b)));
      const d = `sha256:${createHash("sha256").update(all).digest("hex")}`;
      items.push(["signatures", all, d], [`signature-${manifest.digest.slice(manifest.digest.indexOf(":") + 1)}`, all, d]);
    }
    for (const [key, bytes] of items) await writeFileAtomic(this.store.bigDataPath(imageID, key), bytes, 0o600);
    if (!image) {
      image = { id: imageID };
      images.push(image);
      image.digest = manifest.digest;
      if (name) {
        image.names = [];
        image["names-history"] = [];
      }
      if (top !== undefined) image.layer = top;
    }
    let metadata: { "signature-sizes"?: number[]; "signatures-sizes"?: Record<string, number[]> } = {};
    try {
      metadata = image.metadata ? (JSON.parse(image.metadata) as typeof metadata) : {};
    } catch {
      metadata = {};
    }
    const sizes = (this.signatures ?? []).map((b) => b.length);
    if (this.signatures !== undefined) metadata["signature-sizes"] = sizes;
    else if (previousManifest !== manifest.digest) delete metadata["signature-sizes"]; // they signed the manifest replaced now
    metadata["signatures-sizes"] = { ...(metadata["signatures-sizes"] ?? {}), [manifest.digest]: sizes };
    image.metadata = JSON.stringify({ ...(metadata["signature-sizes"]?.length ? { "signature-sizes": metadata["signature-sizes"] } : {}), "signatures-sizes": metadata["signatures-sizes"] });
    image.digest = manifest.digest;
    const names = new Set(image["big-data-names"] ?? []);
    const dataSizes = { ...(image["big-data-sizes"] ?? {}) };
    const digests = { ...(image["big-data-digests"] ?? {}) };
    for (const [key, bytes, digest] of items) {
      names.add(key);
      dataSizes[key] = bytes.length;
      digests[key] = digest;
    }
    image["big-data-names"] = [...names];
    image["big-data-sizes"] = dataSizes;
    image["big-data-digests"] = digests;
    image.created ??= created ?? new Date().toISOString();
    if (name) {
      // A name belongs to one image: it moves here from any other.
      for (const other of images) if (other !== image && other.names?.includes(name)) other.names = other.names.filter((n) => n !== name);
      if (!image.names?.includes(name)) image.names = [...(image.names ?? []), name];
      image["names-history"] = [name, ...(image["names-history"] ?? []).filter((n) => n !== name)];
    }
    await this.store.writeImages(images.map(orderImage));
  }

  /** Removes the staging directory. Without a commit the store was never touched. */
  async close(): Promise<void> {
    await fs.rm(this.staging, { recursive: true, force: true }).catch(() => {});
  }
}

/** An image record with containers/storage's field order. */
function orderImage(i: ImageRecord): ImageRecord {
  const order = ["id", "digest", "names", "names-history", "layer", "mapped-layers", "metadata", "big-data-names", "big-data-sizes", "big-data-digests", "created", "flags"];
  const out: Record<string, unknown> = {};
  for (const k of order) if (i[k] !== undefined) out[k] = i[k];
  for (const [k, v] of Object.entries(i)) if (!(k in out) && v !== undefined) out[k] = v;
  return out as ImageRecord;
}
