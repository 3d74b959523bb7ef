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
 * `getStoredManifest()` (what `skopeo inspect` shows, {@link StoredManifestSource}) the stored one.
 *
 * A manifest list (podman manifest create/add; or the list an image was pulled through, stored as
 * its `manifest-<digest>` big data) is read the same way: each image it lists is looked up by its
 * manifest digest — first in the list image's own big data (as containers/image does), then in
 * every image of the store that has it (`manifest-<digest>` big data, or `digest`/`digests`) — and
 * the list `getManifest()` returns names those images' copied manifests (digest, size and media
 * type updated, serialised as containers/image's UpdateInstances and Serialize write it). An image
 * the list names that the store lacks fails when it is read, naming its digest.
 * @see https://github.com/containers/image/blob/main/storage/storage_src.go
 */
import { createReadStream, promises as fs } from "node:fs";
import type { Readable } from "node:stream";
import type { UncompressedLayerSource } from "../../convert/convert.js";
import { formatDescriptor } from "../../convert/manifest.js";
import { formatPlatform } from "../../platform.js";
import { formatOf } from "../../convert/mediatypes.js";
import type { Digest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { type Descriptor, MAX_MANIFEST_SIZE, Manifest } from "../../manifest.js";
import type { BlobReader, GetBlobOptions, ImageSource, SignatureOptions, SignatureSource, StoredManifestSource, SystemContext } from "../types.js";
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

/**
 * The manifest list containers/image writes for `stored` once the images it lists were copied as
 * `copied` (by stored digest): undefined when none changed, else each changed entry gets the
 * copied manifest's media type, digest and size, and JSON is written as Go writes the list.
 */
export function updatedIndex(stored: Manifest, copied: ReadonlyMap<Digest, Manifest>, what: string): Manifest | undefined {
  const entries = stored.index.manifests;
  const changed = entries.some((d) => {
    const c = copied.get(d.digest);
    return c !== undefined && c.digest !== d.digest;
  });
  if (!changed) return undefined;
  const format = formatOf(stored.mediaType);
  const original = stored.json as unknown as Record<string, unknown>;
  const json: Record<string, unknown> = {};
  // The fields of containers/image's OCI1Index / Schema2List structs, in their order; Go drops any other.
  const fields = format === "oci" ? ["schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations"] : ["schemaVersion", "mediaType", "manifests"];
  for (const k of fields) {
    const v = original[k];
    if (v === undefined) continue;
    if (k === "manifests") {
      json.manifests = entries.map((d) => {
        const c = copied.get(d.digest);
        const nd: Descriptor = c === undefined ? { ...d } : { ...d, mediaType: c.mediaType, digest: c.digest, size: c.bytes.length };
        const annotations = sortedMap(d.annotations);
        if (annotations) nd.annotations = annotations;
        else delete nd.annotations;
        return formatDescriptor(nd, format, true);
      });
    } else if (k === "annotations") json.annotations = sortedMap(v as Record<string, string>);
    else json[k] = v;
  }
  return Manifest.parse(Buffer.from(goJSON(json)), { mediaType: stored.mediaType, what });
}

/** One image of the store as a source reads it: its record, its layers, and a manifest as stored and as copied. */
interface StoredImage {
  image: ImageRecord;
  /** Its layers, bottom first. */
  layers: readonly LayerRecord[];
  /** The manifest as stored. */
  stored: Manifest;
  /** The manifest copies use: `stored`, or its uncompressed-layer form. */
  copied: Manifest;
}

/** An {@link ImageSource} over one image (or one manifest list and the images it lists) of a containers/storage store. */
export class StorageImageSource implements ImageSource, SignatureSource, StoredManifestSource, UncompressedLayerSource {
  readonly reference: StorageReference;
  /**
   * Every layer blob is an uncompressed tar, also under a `…tar+gzip` media type: the copy pipeline
   * compresses such layers for a destination that trusts media types (convert/convert.ts).
   */
  readonly layersUncompressed = true as const;
  /** The store the image is in. */
  readonly store: Store;
  /** The image's images.json record. */
  readonly image: ImageRecord;
  /** The image's layers, bottom first. */
  readonly layers: readonly LayerRecord[];
  /** The manifest as stored (what `skopeo inspect` reports). */
  readonly storedManifest: Manifest;
  /** The manifest copies use: the stored one, or its uncompressed-layer form (an index: naming the copied instances). */
  private readonly top: Manifest;
  private readonly metadata: ImageMetadata;
  /** The images a stored manifest list names that the store holds, by stored and by copied manifest digest. */
  private readonly instances: ReadonlyMap<Digest, StoredImage>;
  /** The entries of a stored manifest list whose images the store lacks, by digest. */
  private readonly missing: ReadonlyMap<Digest, Descriptor>;

  private constructor(
    reference: StorageReference,
    store: Store,
    main: StoredImage,
    top: Manifest,
    instances: ReadonlyMap<Digest, StoredImage>,
    missing: ReadonlyMap<Digest, Descriptor>,
  ) {
    this.reference = reference;
    this.store = store;
    this.image = main.image;
    this.layers = main.layers;
    this.storedManifest = main.stored;
    this.top = top;
    this.metadata = imageMetadata(main.image);
    this.instances = instances;
    this.missing = missing;
  }

  /** Finds the store and the image (ERR_IMAGE_NOT_FOUND when either is missing) and reads its manifest (and a list's images). */
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
    let bytes: Buffer | undefined;
    const digest = ref.named?.digest;
    if (digest !== undefined) bytes = await readBigData(store, image, manifestKey(digest), what);
    bytes ??= await readBigData(store, image, "manifest", what);
    if (bytes === undefined) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: image ${image.id} has no stored manifest; the store is damaged`);
    const stored = Manifest.parse(bytes, { what: `manifest of ${what}` });
    const layers = layerChain(image, byID, store, what);
    const main: StoredImage = { image, layers, stored, copied: stored };
    const instances = new Map<Digest, StoredImage>();
    const missing = new Map<Digest, Descriptor>();
    let top = stored;
    if (!stored.isIndex) {
      main.copied = copiedManifest(stored, layers, `manifest of ${what}`);
      top = main.copied;
    } else {
      const copied = new Map<Digest, Manifest>();
      for (const d of stored.index.manifests) {
        const found = await findInstance(store, images, image, d.digest, what);
        if (!found) {
          missing.set(d.digest, d);
          continue;
        }
        const instanceWhat = `manifest ${d.digest} of ${what}`;
        const inst: StoredImage = { image: found.image, layers: [], stored: found.manifest, copied: found.manifest };
        if (!found.manifest.isIndex && !found.manifest.isSchema1) {
          inst.layers = found.image === image ? layers : layerChain(found.image, byID, store, what);
          inst.copied = copiedManifest(found.manifest, inst.layers, instanceWhat);
        }
        instances.set(d.digest, inst);
        instances.set(inst.copied.digest, inst);
        copied.set(d.digest, inst.copied);
      }
      top = updatedIndex(stored, copied, `manifest list of ${what}`) ?? stored;
    }
    return new StorageImageSource(ref, store, main, top, instances, missing);
  }

  /** The top-level manifest as copied (see the file comment), or a manifest by digest (an image the list names, as copied). */
  async getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    if (digest === undefined || digest === this.top.digest || digest === this.storedManifest.digest) return this.top;
    const inst = this.instances.get(digest);
    if (inst) return inst.copied.digest === digest ? inst.copied : inst.stored;
    return this.readManifest(digest);
  }

  /** The top-level manifest as stored (what `skopeo inspect` reports), or a stored manifest by digest. */
  async getStoredManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    if (digest === undefined || digest === this.storedManifest.digest) return this.storedManifest;
    const inst = this.instances.get(digest);
    if (inst) return inst.stored;
    return this.readManifest(digest);
  }

  /** A manifest stored with the image under `manifest-<digest>`; a listed image the store lacks is named as such. */
  private async readManifest(digest: Digest): Promise<Manifest> {
    const absent = this.missing.get(digest);
    if (absent) {
      const platform = absent.platform ? ` (${formatPlatform(absent.platform)})` : "";
      throw new AirlockError(
        "ERR_IMAGE_NOT_FOUND",
        `${this.reference}: the image ${digest}${platform} that its manifest list names is not in the store ${this.store}; copy one platform that is present (without --all; --override-os/--override-arch/--override-variant choose it), or pull that image into the store first`,
      );
    }
    const bytes = await readBigData(this.store, this.image, manifestKey(digest), String(this.reference));
    if (bytes === undefined) throw new AirlockError("ERR_BLOB_NOT_FOUND", `${this.reference}: manifest ${digest} is not stored with image ${this.image.id}`);
    return Manifest.parse(bytes, { expected: digest, what: `manifest ${digest} of ${this.reference}` });
  }

  /** The images this source reads from: the one named, then those its manifest list names. */
  private *storedImages(): Iterable<{ image: ImageRecord; layers: readonly LayerRecord[] }> {
    yield { image: this.image, layers: this.layers };
    for (const inst of new Set(this.instances.values())) if (inst.image !== this.image) yield inst;
  }

  /** A layer's uncompressed tar (generated from tar-split and the layer's files), or a big-data item (a config). */
  async getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    options.signal?.throwIfAborted();
    const what = `blob ${desc.digest} of ${this.reference}`;
    let layer: LayerRecord | undefined;
    for (const img of this.storedImages()) {
      layer = img.layers.find((l) => l["diff-digest"] === desc.digest);
      if (layer) break;
    }
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
    for (const { image } of this.storedImages()) {
      const path = this.store.bigDataPath(image.id, desc.digest);
      let size: number;
      try {
        size = (await fs.stat(path)).size;
      } catch {
        continue;
      }
      const start = options.offset ?? 0;
      const stream = createReadStream(path, { start }) as Readable;
      return { stream, size: size - start };
    }
    throw new AirlockError("ERR_BLOB_NOT_FOUND", `${what}: neither a layer of image ${this.image.id} nor one of its stored items`);
  }

  /**
   * The signatures stored with the image (containers/image keeps them as big data), or with an
   * image its manifest list names. When the manifest had to change (compressed layers), the stored
   * signatures do not sign the manifest that is copied, and, as skopeo, the copy is refused unless
   * signatures are removed.
   */
  async getSignatures(options: SignatureOptions = {}): Promise<Uint8Array[]> {
    options.signal?.throwIfAborted();
    const refuse = () =>
      new AirlockError(
        "ERR_UNSUPPORTED",
        `${this.reference}: copying this image would require changing layer representation (the store holds its layers uncompressed), which would invalidate its signatures; copy it with --remove-signatures`,
      );
    const requested = options.instanceDigest;
    if (requested === undefined) {
      const sizes = this.metadata["signature-sizes"] ?? [];
      if (sizes.length === 0) return [];
      if (this.top !== this.storedManifest) throw refuse();
      return this.readSignatures(this.image, "signatures", sizes);
    }
    // An image the list names: its signatures are recorded under its stored manifest's digest, in the image that holds it.
    const inst = this.instances.get(requested);
    const image = inst?.image ?? this.image;
    const instance = inst?.stored.digest ?? requested;
    const sizes = imageMetadata(image)["signatures-sizes"]?.[instance] ?? [];
    if (sizes.length === 0) return [];
    if (inst && inst.copied !== inst.stored) throw refuse();
    return this.readSignatures(image, `signature-${instance.slice(instance.indexOf(":") + 1)}`, sizes);
  }

  private async readSignatures(image: ImageRecord, key: string, sizes: readonly number[]): Promise<Uint8Array[]> {
    const data = await readBigData(this.store, image, key, String(this.reference), 64 * 1024 * 1024);
    if (data === undefined) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.reference}: the signatures of image ${image.id} are missing from the store`);
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

/** The parts of an image's `metadata` that record signature sizes ({} when it has none or it is not JSON). */
function imageMetadata(image: ImageRecord): ImageMetadata {
  if (!image.metadata) return {};
  try {
    return JSON.parse(image.metadata) as ImageMetadata;
  } catch {
    return {};
  }
}

/** An image's layers, bottom first, from its top layer down its parents. */
function layerChain(image: ImageRecord, byID: ReadonlyMap<string, LayerRecord>, store: Store, what: string): LayerRecord[] {
  const layers: LayerRecord[] = [];
  for (let id = image.layer; id; ) {
    const l = byID.get(id);
    if (!l) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: layer ${id} of image ${image.id} is missing from ${store.layersDir}/layers.json; the store is damaged`);
    if (layers.includes(l)) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: the layers of image ${image.id} form a loop at ${id}; the store is damaged`);
    layers.unshift(l);
    id = l.parent ?? "";
  }
  return layers;
}

/** The manifest a copy of an image manifest stored over `layers` uses (see the file comment). */
function copiedManifest(stored: Manifest, layers: readonly LayerRecord[], what: string): Manifest {
  const physical = layers.map((l, i) => {
    const d = l["diff-digest"];
    const size = l["diff-size"];
    if (!d || typeof size !== "number" || size < 0) {
      throw new AirlockError("ERR_UNSUPPORTED", `${what}: layer ${i} (${l.id}) has no recorded uncompressed digest and size (a partial pull?), so it cannot be read`);
    }
    return { digest: d as Digest, size };
  });
  return uncompressedLayerManifest(stored, physical, what) ?? stored;
}

/**
 * Finds the image holding the manifest `digest` that the list stored with `list` names: in `list`'s
 * own big data (containers/image looks only there), else in any image of the store that has it as
 * `manifest-<digest>` big data or as its `digest`/`digests` (then its `manifest`, if that is it).
 */
async function findInstance(store: Store, images: readonly ImageRecord[], list: ImageRecord, digest: Digest, what: string): Promise<{ image: ImageRecord; manifest: Manifest } | undefined> {
  const key = manifestKey(digest);
  const candidates = [list, ...images.filter((i) => i !== list && ((i["big-data-names"] ?? []).includes(key) || i.digest === digest || (i.digests ?? []).includes(digest)))];
  for (const image of candidates) {
    for (const k of [key, "manifest"]) {
      if (k === "manifest" && image === list) continue;
      const bytes = await readBigData(store, image, k, what);
      if (bytes === undefined) continue;
      const manifest = Manifest.parse(bytes, { what: `manifest ${digest} of ${what} (image ${image.id})` });
      if (manifest.digest === digest) return { image, manifest };
    }
  }
  return undefined;
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
