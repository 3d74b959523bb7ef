/**
 * The on-disk layout of a containers/storage store as podman 4 writes it, for the `vfs` and
 * `overlay` drivers:
 *
 *   GRAPHROOT/storage.lock
 *   GRAPHROOT/<driver>-layers/layers.json, layers.lock, <layer-id>.tar-split.gz
 *   GRAPHROOT/<driver>-images/images.json, images.lock, <image-id>/<big-data files>
 *   GRAPHROOT/vfs/dir/<layer-id>/          (vfs: the layer's whole file system)
 *   GRAPHROOT/overlay/<layer-id>/diff/     (overlay: the layer's own changes; link, lower, work, merged)
 *
 * An image's "big data" (its manifests, config, signatures) are files named by their key, or
 * `=` + base64(key) when the key has characters other than `[a-z0-9.]`.
 * @see https://github.com/containers/storage/blob/main/layers.go
 * @see https://github.com/containers/storage/blob/main/images.go
 */
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { AirlockError } from "../../errors.js";
import { writeFileAtomic } from "../../fsutil.js";
import { detectDriver, resolveStoreOptions, type StoreOptions } from "./config.js";
import { type HeldLocks, recordWrite, takeLocks } from "./lock.js";
import type { StoreSpecifier } from "./reference.js";

/** A layer as layers.json records it (containers/storage's Layer). Unknown fields are kept. */
export interface LayerRecord {
  id: string;
  names?: string[];
  parent?: string;
  created?: string;
  "compressed-diff-digest"?: string;
  "compressed-size"?: number;
  "diff-digest"?: string;
  "diff-size"?: number;
  compression?: number;
  uidset?: number[];
  gidset?: number[];
  flags?: Record<string, unknown>;
  [key: string]: unknown;
}

/** An image as images.json records it (containers/storage's Image). Unknown fields are kept. */
export interface ImageRecord {
  id: string;
  digest?: string;
  /** The digests of every manifest stored with the image (newer containers/storage; podman 4.3 records `digest` only). */
  digests?: string[];
  names?: string[];
  "names-history"?: string[];
  layer?: string;
  metadata?: string;
  "big-data-names"?: string[];
  "big-data-sizes"?: Record<string, number>;
  "big-data-digests"?: Record<string, string>;
  created?: string;
  [key: string]: unknown;
}

/** The drivers whose layout airlock reads. */
export const READABLE_DRIVERS = ["vfs", "overlay"] as const;
/** The drivers airlock writes. */
export const WRITABLE_DRIVERS = ["vfs", "overlay"] as const;

/** The file name of an image's big-data item `key` (containers/storage's makeBigDataBaseName). */
export function bigDataFileName(key: string): string {
  return /^[a-z0-9.]+$/.test(key) ? key : `=${Buffer.from(key, "utf8").toString("base64")}`;
}

/** The big-data key of a manifest with digest `d` (containers/image's manifestBigDataKey). */
export function manifestKey(d: string): string {
  return `manifest-${d}`;
}

/** One opened store: its resolved paths and driver. No file is read until asked. */
export class Store {
  readonly options: StoreOptions;
  readonly driver: string;

  private constructor(options: StoreOptions, driver: string) {
    this.options = options;
    this.driver = driver;
  }

  /**
   * Resolves a store from the reference's specifier and storage.conf. `forWriting` picks a driver
   * for an empty graph root (the configured one, else vfs) and refuses drivers airlock cannot write.
   */
  static async open(spec: StoreSpecifier | undefined, what: string, forWriting: boolean): Promise<Store> {
    const options = await resolveStoreOptions(spec);
    const driver = options.driver ?? (await detectDriver(options.graphRoot)) ?? (forWriting ? "vfs" : undefined);
    if (driver === undefined) {
      throw new AirlockError("ERR_IMAGE_NOT_FOUND", `${what}: no image store at ${options.graphRoot} (no <driver>-layers/layers.json there)${options.configFile ? ` (storage configuration: ${options.configFile})` : ""}; check the graph root, or name it with containers-storage:[DRIVER@ROOT+RUNROOT]NAME`);
    }
    const supported: readonly string[] = forWriting ? WRITABLE_DRIVERS : READABLE_DRIVERS;
    if (!supported.includes(driver)) {
      throw new AirlockError("ERR_UNSUPPORTED", `${what}: the store at ${options.graphRoot} uses the ${driver} driver; airlock ${forWriting ? "writes" : "reads"} only ${supported.join(" and ")} stores`);
    }
    return new Store(options, driver);
  }

  /** `<graphroot>/<driver>-layers`. */
  get layersDir(): string {
    return join(this.options.graphRoot, `${this.driver}-layers`);
  }

  /** `<graphroot>/<driver>-images`. */
  get imagesDir(): string {
    return join(this.options.graphRoot, `${this.driver}-images`);
  }

  /** The tar-split record of a layer. */
  tarSplitPath(layerID: string): string {
    return join(this.layersDir, `${layerID}.tar-split.gz`);
  }

  /** The directory holding the files of a layer's diff (vfs: the whole file system of the layer). */
  diffDir(layerID: string): string {
    return this.driver === "vfs" ? join(this.options.graphRoot, "vfs", "dir", layerID) : join(this.options.graphRoot, "overlay", layerID, "diff");
  }

  /** The file of an image's big-data item. */
  bigDataPath(imageID: string, key: string): string {
    return join(this.imagesDir, imageID, bigDataFileName(key));
  }

  /** The lock files in containers/storage's order: storage.lock, layers.lock, images.lock. */
  lockPaths(): { storage: string; layers: string; images: string } {
    return { storage: join(this.options.graphRoot, "storage.lock"), layers: join(this.layersDir, "layers.lock"), images: join(this.imagesDir, "images.lock") };
  }

  /** Takes shared locks on the layer and image stores (when they exist) for reading. */
  async lockForReading(what: string, signal?: AbortSignal, layersOnly = false): Promise<HeldLocks> {
    const p = this.lockPaths();
    const requests = [];
    for (const [dir, path] of [
      [this.layersDir, p.layers],
      ...(layersOnly ? [] : [[this.imagesDir, p.images]]),
    ] as const) {
      try {
        await fs.access(dir);
        requests.push({ path, exclusive: false });
      } catch {
        // no such store part: nothing to lock
      }
    }
    if (requests.length === 0) return { held: false, release: async () => {} };
    return takeLocks(requests, what, signal);
  }

  /** Creates the store's directories and takes the exclusive locks for writing. */
  async lockForWriting(what: string, signal?: AbortSignal): Promise<HeldLocks> {
    const p = this.lockPaths();
    try {
      await fs.mkdir(this.layersDir, { recursive: true, mode: 0o700 });
      await fs.mkdir(this.imagesDir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new AirlockError("ERR_DESTINATION", `${what}: cannot create the store at ${this.options.graphRoot}: ${(cause as Error).message}`, { cause });
    }
    return takeLocks(
      [
        { path: p.storage, exclusive: true },
        { path: p.layers, exclusive: true },
        { path: p.images, exclusive: true },
      ],
      what,
      signal,
    );
  }

  /** Reads layers.json ([] when the store has none). */
  async readLayers(): Promise<LayerRecord[]> {
    return readJSONArray<LayerRecord>(join(this.layersDir, "layers.json"));
  }

  /** Reads images.json ([] when the store has none). */
  async readImages(): Promise<ImageRecord[]> {
    return readJSONArray<ImageRecord>(join(this.imagesDir, "images.json"));
  }

  /** Replaces layers.json atomically and records the write in layers.lock. Call holding the lock. */
  async writeLayers(layers: readonly LayerRecord[]): Promise<void> {
    await writeFileAtomic(join(this.layersDir, "layers.json"), JSON.stringify(layers), 0o600);
    await recordWrite(this.lockPaths().layers);
  }

  /** Replaces images.json atomically and records the write in images.lock. Call holding the lock. */
  async writeImages(images: readonly ImageRecord[]): Promise<void> {
    await writeFileAtomic(join(this.imagesDir, "images.json"), JSON.stringify(images), 0o600);
    await recordWrite(this.lockPaths().images);
  }

  /** `[driver@graphroot+runroot]`, how containers/image names a store. */
  toString(): string {
    return `[${this.driver}@${this.options.graphRoot}+${this.options.runRoot}]`;
  }
}

async function readJSONArray<T>(path: string): Promise<T[]> {
  let text: string;
  try {
    text = await fs.readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    if ((err as NodeJS.ErrnoException).code === "EACCES") {
      throw new AirlockError("ERR_IO", `cannot read ${path}: permission denied; a rootful store needs root, a rootless one its owner (or podman unshare)`, { cause: err });
    }
    throw new AirlockError("ERR_IO", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (text.trim() === "") return [];
  try {
    const v = JSON.parse(text) as unknown;
    if (!Array.isArray(v)) throw new Error("not a JSON array");
    return v as T[];
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_LAYOUT", `${path} is not a valid containers/storage record: ${(cause as Error).message}`, { cause });
  }
}

/** Finds the image a reference names: by ID, by ID prefix, by name, or by a manifest digest of an image of that repository. */
export function findImage(
  images: readonly ImageRecord[],
  ref: { id?: string | undefined; idPrefix?: string | undefined; idOrName?: boolean; named?: { toString(): string; name: string; digest?: string | undefined } | undefined },
): ImageRecord | undefined {
  if (ref.id !== undefined) return matchesName(images.find((i) => i.id === ref.id), ref.named);
  if (ref.idPrefix !== undefined) {
    const byPrefix = images.filter((i) => i.id.startsWith(ref.idPrefix as string));
    if (byPrefix.length === 1) return ref.idOrName ? byPrefix[0] : matchesName(byPrefix[0], ref.named);
    if (byPrefix.length > 1 && ref.named === undefined) {
      throw new AirlockError("ERR_AMBIGUOUS_IMAGE", `image ID prefix ${ref.idPrefix} matches ${byPrefix.length} images; give more of the ID`);
    }
  }
  if (ref.named === undefined) return undefined;
  const name = ref.named.toString();
  const byName = images.find((i) => i.names?.includes(name));
  if (byName) return byName;
  const digest = ref.named.digest;
  if (digest !== undefined) {
    return images.find((i) => (i.digest === digest || (i["big-data-names"] ?? []).includes(manifestKey(digest))) && matchesRepo(i, ref.named!.name));
  }
  return undefined;
}

function matchesName(img: ImageRecord | undefined, named: { name: string } | undefined): ImageRecord | undefined {
  if (img === undefined || named === undefined) return img;
  return matchesRepo(img, named.name) ? img : undefined;
}

function matchesRepo(img: ImageRecord, repo: string): boolean {
  return (img.names ?? []).some((n) => n.startsWith(`${repo}:`) || n.startsWith(`${repo}@`));
}
