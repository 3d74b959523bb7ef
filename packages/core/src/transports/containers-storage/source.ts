/**
 * Reads an image from a containers/storage store (podman, buildah, CRI-O), as containers/image's
 * storage source does: the manifest and config come from the image's big-data files, and each
 * layer's uncompressed tar is generated again from its tar-split record and the files of the
 * layer (vfs `dir/<id>`, overlay `<id>/diff`).
 *
 * The store keeps layers uncompressed only, so when the stored manifest names compressed blobs
 * (an image pulled from a registry), the image is presented — like containers/image's
 * LayerInfosForCopy and the copy that follows it — with a manifest whose layers are the
 * uncompressed tars: each layer descriptor gets the layer's diff digest and size, keeps its media
 * type (containers/image keeps the original one when a layer is copied as it is read), and loses
 * its annotations and URLs; JSON is written as Go writes it. So `airlock copy` gives the manifest
 * digest `skopeo copy containers-storage:… dir:…` gives. `getManifest()` returns that manifest;
 * the stored one (what `skopeo inspect` shows) is `storedManifest`.
 * @see https://github.com/containers/image/blob/main/storage/storage_src.go
 */
import { createReadStream, promises as fs } from "node:fs";
import type { Readable } from "node:stream";
import { formatDescriptor } from "../../convert/manifest.js";
import { formatOf } from "../../convert/mediatypes.js";
import type { Digest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { type Descriptor, MAX_MANIFEST_SIZE, Manifest } from "../../manifest.js";
import type { BlobReader, GetBlobOptions, ImageSource, SignatureOptions, SignatureSource, SystemContext } from "../types.js";
import type { StorageReference } from "./reference.js";
import { findImage, type ImageRecord, type LayerRecord, manifestKey, Store } from "./store.js";
import { assembleLayer } from "./tarsplit.js";

/** The parts of images.json `metadata` that hold signature sizes (containers/image's storageImageMetadata). */
interface ImageMetadata {
  "signature-sizes"?: number[];
  "signatures-sizes"?: Record<string, number[]>;
}

/** Go's json.Marshal escapes these in strings; JSON.stringify does not. */
export function goJSON(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function sortedMap(m: Record<string, string> | undefined): Record<string, string> | undefined {
  if (m === undefined || Object.keys(m).length === 0) return undefined;
  return Object.fromEntries(Object.keys(m).sort().map((k) => [k, m[k] as string]));
}

/**
 * The manifest containers/image copies for a stored image manifest whose layers are now the
 * uncompressed `layers` (bottom first): undefined when nothing changes.
 */
export function uncompressedLayerManifest(stored: Manifest, layers: readonly { digest: Digest; size: number }[], what: string): Manifest | undefined {
  const m = stored.image;
  if (m.layers.length !== layers.length) {
    throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: its manifest lists ${m.layers.length} layers but the store holds ${layers.length} for it; the store is inconsistent`);
  }
  const same = m.layers.every((l, i) => l.digest === layers[i]?.digest && l.size === layers[i]?.size && !l.annotations && !l.urls);
  if (same) return undefined;
  const format = formatOf(stored.mediaType);
  const json: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(stored.json as unknown as Record<string, unknown>)) {
    if (k === "config") json.config = formatDescriptor({ ...m.config, annotations: sortedMap(m.config.annotations) } as Descriptor, format);
    else if (k === "layers") {
      json.layers = m.layers.map((l, i) => {
        const d: Descriptor = { mediaType: l.mediaType, digest: (layers[i] as { digest: Digest }).digest, size: (layers[i] as { size: number }).size };
        return formatDescriptor(d, format);
      });
    } else if (k === "annotations") json.annotations = sortedMap(v as Record<string, string>);
    else json[k] = v;
  }
  return Manifest.parse(Buffer.from(goJSON(json)), { mediaType: stored.mediaType, what });
}

/** An {@link ImageSource} over one image of a containers/storage store. */
export class StorageImageSource implements ImageSource, SignatureSource {
  readonly reference: StorageReference;
  /** The store the image is in. */
  readonly store: Store;
  /** The image's images.json record. */
  readonly image: ImageRecord;
  /** The image's layers, bottom first. */
  readonly layers: readonly LayerRecord[];
  /** The manifest as stored (what `skopeo inspect` reports). */
  readonly storedManifest: Manifest;
  /** The manifest copies use: the stored one, or its uncompressed-layer form. */
  private readonly top: Manifest;
  private readonly metadata: ImageMetadata;

  private constructor(reference: StorageReference, store: Store, image: ImageRecord, layers: LayerRecord[], stored: Manifest, top: Manifest, metadata: ImageMetadata) {
    this.reference = reference;
    this.store = store;
    this.image = image;
    this.layers = layers;
    this.storedManifest = stored;
    this.top = top;
    this.metadata = metadata;
  }

  /** Finds the store and the image (ERR_IMAGE_NOT_FOUND when either is missing) and reads its manifest. */
  static async open(ref: StorageReference, _ctx?: SystemContext): Promise<StorageImageSource> {
    const what = String(ref);
    const store = await Store.open(ref.store, what, false);
    const locks = await store.lockForReading(`the store ${store}`);
    let images: ImageRecord[];
    let allLayers: LayerRecord[];
    try {
      images = await store.readImages();
      allLayers = await store.readLayers();
    } finally {
      await locks.release();
    }
    const image = findImage(images, ref);
    if (!image) {
      throw new AirlockError("ERR_IMAGE_NOT_FOUND", `${what}: no such image in the store ${store}${ref.named ? ` (no image is named ${ref.named})` : ""}; list the store's images with podman images`);
    }
    const byID = new Map(allLayers.map((l) => [l.id, l]));
    const layers: LayerRecord[] = [];
    for (let id = image.layer; id; ) {
      const l = byID.get(id);
      if (!l) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: layer ${id} of image ${image.id} is missing from ${store.layersDir}/layers.json; the store is damaged`);
      if (layers.includes(l)) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: the layers of image ${image.id} form a loop at ${id}; the store is damaged`);
      layers.unshift(l);
      id = l.parent ?? "";
    }
    const readManifest = async (key: string): Promise<Buffer | undefined> => readBigData(store, image, key, what);
    let bytes: Buffer | undefined;
    const digest = ref.named?.digest;
    if (digest !== undefined) bytes = await readManifest(manifestKey(digest));
    bytes ??= await readManifest("manifest");
    if (bytes === undefined) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: image ${image.id} has no stored manifest; the store is damaged`);
    const stored = Manifest.parse(bytes, { what: `manifest of ${what}` });
    let top = stored;
    if (!stored.isIndex) {
      const physical = layers.map((l, i) => {
        const d = l["diff-digest"];
        const size = l["diff-size"];
        if (!d || typeof size !== "number" || size < 0) {
          throw new AirlockError("ERR_UNSUPPORTED", `${what}: layer ${i} (${l.id}) has no recorded uncompressed digest and size (a partial pull?), so it cannot be read`);
        }
        return { digest: d as Digest, size };
      });
      top = uncompressedLayerManifest(stored, physical, `manifest of ${what}`) ?? stored;
    }
    let metadata: ImageMetadata = {};
    if (image.metadata) {
      try {
        metadata = JSON.parse(image.metadata) as ImageMetadata;
      } catch {
        metadata = {};
      }
    }
    return new StorageImageSource(ref, store, image, layers, stored, top, metadata);
  }

  /** The top-level manifest (see the file comment), or a stored manifest by digest. */
  async getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    if (digest === undefined || digest === this.top.digest || digest === this.storedManifest.digest) return this.top;
    const bytes = await readBigData(this.store, this.image, manifestKey(digest), String(this.reference));
    if (bytes === undefined) throw new AirlockError("ERR_BLOB_NOT_FOUND", `${this.reference}: manifest ${digest} is not stored with image ${this.image.id}`);
    return Manifest.parse(bytes, { expected: digest, what: `manifest ${digest} of ${this.reference}` });
  }

  /** A layer's uncompressed tar (generated from tar-split and the layer's files), or a big-data item (the config). */
  async getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    options.signal?.throwIfAborted();
    const what = `blob ${desc.digest} of ${this.reference}`;
    const layer = this.layers.find((l) => l["diff-digest"] === desc.digest);
    if (layer) {
      if (options.offset) throw new AirlockError("ERR_UNSUPPORTED", `${what}: a layer generated from the store cannot be read from an offset`);
      const locks = await this.store.lockForReading(`the layers of ${this.store}`, options.signal, true);
      const tarSplit = this.store.tarSplitPath(layer.id);
      try {
        await fs.access(tarSplit);
      } catch (cause) {
        await locks.release();
        throw new AirlockError("ERR_UNSUPPORTED", `${what}: layer ${layer.id} has no tar-split record (${tarSplit}), so its original tar cannot be produced again`, { cause });
      }
      const stream = assembleLayer(tarSplit, this.store.diffDir(layer.id), `layer ${layer.id} of ${this.reference}`);
      stream.once("close", () => void locks.release());
      const out: BlobReader = { stream };
      if (typeof layer["diff-size"] === "number") out.size = layer["diff-size"];
      return out;
    }
    const path = this.store.bigDataPath(this.image.id, desc.digest);
    let size: number;
    try {
      size = (await fs.stat(path)).size;
    } catch (cause) {
      throw new AirlockError("ERR_BLOB_NOT_FOUND", `${what}: neither a layer of image ${this.image.id} nor one of its stored items`, { cause });
    }
    const start = options.offset ?? 0;
    const stream = createReadStream(path, { start }) as Readable;
    return { stream, size: size - start };
  }

  /**
   * The signatures stored with the image (containers/image keeps them as big data). When the
   * manifest had to change (compressed layers), the stored signatures do not sign the manifest
   * that is copied, and, as skopeo, the copy is refused unless signatures are removed.
   */
  async getSignatures(options: SignatureOptions = {}): Promise<Uint8Array[]> {
    options.signal?.throwIfAborted();
    const instance = options.instanceDigest;
    const sizes = instance === undefined ? (this.metadata["signature-sizes"] ?? []) : (this.metadata["signatures-sizes"]?.[instance] ?? []);
    if (sizes.length === 0) return [];
    if (instance === undefined && this.top !== this.storedManifest) {
      throw new AirlockError(
        "ERR_UNSUPPORTED",
        `${this.reference}: copying this image would require changing layer representation (the store holds its layers uncompressed), which would invalidate its signatures; copy it with --remove-signatures`,
      );
    }
    const key = instance === undefined ? "signatures" : `signature-${instance.slice(instance.indexOf(":") + 1)}`;
    const data = await readBigData(this.store, this.image, key, String(this.reference), 64 * 1024 * 1024);
    if (data === undefined) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.reference}: the signatures of image ${this.image.id} are missing from the store`);
    const out: Uint8Array[] = [];
    let offset = 0;
    for (const n of sizes) {
      if (offset + n > data.length) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.reference}: the stored signatures are shorter than their recorded sizes`);
      out.push(data.subarray(offset, offset + n));
      offset += n;
    }
    return out;
  }

  /** Nothing is held between calls. */
  async close(): Promise<void> {}
}

async function readBigData(store: Store, image: ImageRecord, key: string, what: string, max = MAX_MANIFEST_SIZE): Promise<Buffer | undefined> {
  const path = store.bigDataPath(image.id, key);
  try {
    const st = await fs.stat(path);
    if (st.size > max) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: ${path} is ${st.size} bytes, more than the ${max} expected`);
    return await fs.readFile(path);
  } catch (err) {
    if (err instanceof AirlockError) throw err;
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new AirlockError("ERR_IO", `${what}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}
