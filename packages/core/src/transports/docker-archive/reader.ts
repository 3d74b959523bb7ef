/**
 * Reading `docker save` archives without extracting them: `manifest.json` (one item per image:
 * `Config`, `RepoTags`, `Layers`), the image configs and the layer tars, as byte ranges of the
 * archive. Any layout the items point at is read — `<hex>.json` + `<hex>.tar` (containers/image,
 * airlock), `<id>/layer.tar` with symlinks for repeated layers (Docker before 25), and
 * `blobs/sha256/<hex>` (Docker 25 and later) — as are compressed layers and compressed archives.
 *
 * An image has no manifest in such an archive: {@link DockerArchiveReader.image} builds the Docker
 * v2s2 manifest containers/image builds (docker/internal/tarfile/src.go), byte for byte — the config
 * as it is stored, and the layers as UNCOMPRESSED tars named by their diff IDs
 * (`application/vnd.docker.image.rootfs.diff.tar`) — so airlock and skopeo see the same digest.
 * @see https://github.com/moby/moby/blob/master/image/spec/v1.2.md
 */
import { pipeline } from "node:stream";
import { type Digest, digestOf, parseDigest } from "../../digest.js";
import { detectCompression, decompressor } from "../../convert/compression.js";
import { LayerMediaType } from "../../convert/mediatypes.js";
import { AirlockError } from "../../errors.js";
import { MAX_CONFIG_SIZE } from "../../inspect.js";
import { type Descriptor, MAX_MANIFEST_SIZE, Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import { DockerReference } from "../../reference/docker.js";
import { type OpenTarOptions, TarFile, type TarFileEntry } from "./tarfile.js";

/** The name of the image list of a `docker save` archive. */
export const DOCKER_ARCHIVE_MANIFEST = "manifest.json";


/** One image of `manifest.json`, as `docker save` writes it. Fields airlock does not use are kept. */
export interface DockerArchiveItem {
  /** The path of the image config in the archive. */
  Config: string;
  /** The image's names, `NAME:TAG`; null or empty for an untagged image. */
  RepoTags: string[] | null;
  /** The paths of the layer tars, base layer first. */
  Layers: string[];
  /** Legacy: the parent image ID. */
  Parent?: string;
  /** Descriptors of foreign layers, by diff ID. */
  LayerSources?: Record<string, Descriptor>;
  [field: string]: unknown;
}

/** A layer of an archived image: where it is and what it holds. */
export interface ArchiveLayer {
  /** Its diff ID: the digest of the uncompressed tar. */
  diffID: Digest;
  /** The path manifest.json gives. */
  path: string;
  /** The regular file it resolves to (links followed). */
  entry: TarFileEntry;
  /** How it is stored: `none` for a plain tar. */
  compression: "none" | "gzip" | "zstd";
  /** Its uncompressed size; -1 when not computed (a compressed layer, with `sizes: false`). */
  size: number;
}

/** An image of an archive, ready to be read as an ImageSource. */
export interface ArchiveImage {
  /** Its position in manifest.json. */
  position: number;
  item: DockerArchiveItem;
  /** The config's exact bytes and digest. */
  config: Buffer;
  configDigest: Digest;
  /** The config's `rootfs.diff_ids`, one per entry of `item.Layers`. */
  diffIDs: Digest[];
  /** The distinct layers, by diff ID. */
  layers: Map<Digest, ArchiveLayer>;
}

/** How {@link DockerArchiveReader.choose} picks an image: by tag, by position, or the only one. */
export interface ImageSelector {
  ref?: DockerReference | undefined;
  position?: number | undefined;
}

/** Reports whether `head` starts a compressed stream airlock can decompress, and which. */
function layerCompression(head: Uint8Array, what: string): "none" | "gzip" | "zstd" {
  const c = detectCompression(head);
  if (c === "bzip2" || c === "xz") throw new AirlockError("ERR_UNSUPPORTED", `${what} is ${c}-compressed, which airlock does not read`);
  return c;
}

/** A `docker save` archive opened for reading. */
export class DockerArchiveReader {
  /** The archive. */
  readonly tar: TarFile;
  /** The images of manifest.json, in order. */
  readonly items: DockerArchiveItem[];

  private constructor(tar: TarFile, items: DockerArchiveItem[]) {
    this.tar = tar;
    this.items = items;
  }

  /** Reads and validates manifest.json of an open archive. Throws ERR_INVALID_LAYOUT when it is missing or malformed. */
  static async read(tar: TarFile): Promise<DockerArchiveReader> {
    const entry = tar.resolve(DOCKER_ARCHIVE_MANIFEST);
    if (!entry) {
      const oci = tar.resolve("index.json") && tar.resolve("oci-layout") ? ` (it is an OCI image layout archive: read it with oci-archive:${tar.path})` : "";
      const legacy = tar.resolve("repositories") ? " (it is a legacy docker save archive from before Docker 1.10, which airlock does not read)" : "";
      throw new AirlockError("ERR_INVALID_LAYOUT", `${tar.what} is not a docker save archive: it has no ${DOCKER_ARCHIVE_MANIFEST}${oci}${legacy}`);
    }
    let json: unknown;
    try {
      json = JSON.parse((await tar.read(entry, MAX_MANIFEST_SIZE)).toString("utf8"));
    } catch (cause) {
      if (cause instanceof AirlockError) throw cause;
      throw new AirlockError("ERR_INVALID_LAYOUT", `${DOCKER_ARCHIVE_MANIFEST} in ${tar.what} is not valid JSON`, { cause });
    }
    if (!Array.isArray(json)) throw new AirlockError("ERR_INVALID_LAYOUT", `${DOCKER_ARCHIVE_MANIFEST} in ${tar.what} is not a JSON array of images`);
    for (const [i, item] of json.entries()) {
      const o = item as Partial<DockerArchiveItem> | null;
      const bad = (why: string) => new AirlockError("ERR_INVALID_LAYOUT", `${DOCKER_ARCHIVE_MANIFEST} in ${tar.what}: image @${i} ${why}`);
      if (typeof o !== "object" || o === null) throw bad("is not an object");
      if (typeof o.Config !== "string" || o.Config === "") throw bad("has no Config path");
      if (!Array.isArray(o.Layers) || o.Layers.some((l) => typeof l !== "string" || l === "")) throw bad("has no valid Layers list");
      if (o.RepoTags !== undefined && o.RepoTags !== null && (!Array.isArray(o.RepoTags) || o.RepoTags.some((t) => typeof t !== "string"))) throw bad("has RepoTags that are not strings");
    }
    return new DockerArchiveReader(tar, json as DockerArchiveItem[]);
  }

  /** Opens the archive at `path` (a compressed one is decompressed to a temporary file first) and reads manifest.json. */
  static async open(path: string, options: OpenTarOptions = {}): Promise<DockerArchiveReader> {
    const tar = await TarFile.open(path, options);
    try {
      return await DockerArchiveReader.read(tar);
    } catch (err) {
      await tar.close();
      throw err;
    }
  }

  /** The RepoTags of image `position`, normalised (`docker.io/library/…`); tags that do not parse are skipped. */
  repoTags(position: number): DockerReference[] {
    const out: DockerReference[] = [];
    for (const t of this.items[position]?.RepoTags ?? []) {
      try {
        out.push(DockerReference.parse(t).withDefaultTag());
      } catch {
        // Not a name airlock can match; it stays in the archive as it is.
      }
    }
    return out;
  }

  /** A one-line description of every image, for error messages: `@0 docker.io/library/a:1, @1 (untagged)`. */
  describe(): string {
    return this.items.map((it, i) => `@${i} ${it.RepoTags && it.RepoTags.length > 0 ? it.RepoTags.join(" ") : "(untagged)"}`).join(", ");
  }

  /**
   * Chooses the image a reference means, as containers/image: the first image with RepoTag `ref`
   * (compared normalised), image `position`, or — with neither — the only image. Throws
   * ERR_IMAGE_NOT_FOUND or ERR_AMBIGUOUS_IMAGE naming the images the archive has.
   */
  choose(selector: ImageSelector, refPrefix = `docker-archive:${this.tar.path}`): number {
    const n = this.items.length;
    if (selector.position !== undefined) {
      if (selector.position >= n) {
        throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image @${selector.position} in ${this.tar.what}: its manifest.json has ${n} image${n === 1 ? "" : "s"}${n ? ` (${this.describe()})` : ""}`);
      }
      return selector.position;
    }
    if (selector.ref) {
      const want = selector.ref.toString();
      for (let i = 0; i < n; i++) {
        for (const t of this.items[i]?.RepoTags ?? []) {
          let parsed: DockerReference;
          try {
            parsed = DockerReference.parse(t);
          } catch (cause) {
            throw new AirlockError("ERR_INVALID_LAYOUT", `${this.tar.what}: image @${i} has an invalid RepoTag ${JSON.stringify(t)}: ${(cause as Error).message}`, { cause });
          }
          if (parsed.toString() === want) return i;
        }
      }
      throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image tagged ${selector.ref.familiarString()} in ${this.tar.what}; it holds: ${this.describe() || "no images"}`);
    }
    if (n === 1) return 0;
    if (n === 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image in ${this.tar.what}: its manifest.json is empty`);
    throw new AirlockError("ERR_AMBIGUOUS_IMAGE", `${this.tar.what} holds ${n} images; choose one with ${refPrefix}:NAME:TAG or ${refPrefix}:@N: ${this.describe()}`);
  }

  /**
   * Reads image `position`: its config (whose `rootfs.diff_ids` must match the layer count) and
   * where each layer is. With `sizes` (default true) the uncompressed size of a compressed layer is
   * measured by decompressing it once, as containers/image does.
   */
  async image(position: number, options: { sizes?: boolean; signal?: AbortSignal | undefined } = {}): Promise<ArchiveImage> {
    const item = this.items[position];
    if (!item) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image @${position} in ${this.tar.what}`);
    const where = `image @${position} of ${this.tar.what}`;
    const configEntry = this.tar.require(item.Config, () => new AirlockError("ERR_INVALID_LAYOUT", `${where}: its config ${item.Config} is not in the archive`));
    const config = await this.tar.read(configEntry, MAX_CONFIG_SIZE);
    let parsed: { rootfs?: { diff_ids?: unknown } };
    try {
      parsed = JSON.parse(config.toString("utf8")) as typeof parsed;
    } catch (cause) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: its config ${item.Config} is not valid JSON`, { cause });
    }
    const ids = parsed?.rootfs?.diff_ids;
    if (!parsed?.rootfs || (ids !== undefined && ids !== null && !Array.isArray(ids))) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: its config ${item.Config} has no rootfs.diff_ids`);
    }
    const diffIDs: Digest[] = [];
    for (const d of (ids ?? []) as unknown[]) {
      try {
        diffIDs.push(parseDigest(String(d)));
      } catch (cause) {
        throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: its config lists an invalid diff ID ${JSON.stringify(d)}`, { cause });
      }
    }
    if (diffIDs.length !== item.Layers.length) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: manifest.json lists ${item.Layers.length} layers, its config ${diffIDs.length} diff IDs`);
    }
    const layers = new Map<Digest, ArchiveLayer>();
    const byPath = new Map<string, Digest>();
    for (const [i, diffID] of diffIDs.entries()) {
      // The same layer may appear twice in one image; docker save then links the copies.
      if (layers.has(diffID)) continue;
      const path = item.Layers[i] as string;
      const other = byPath.get(path);
      if (other !== undefined) throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: layer ${path} is listed for two different diff IDs (${other} and ${diffID})`);
      byPath.set(path, diffID);
      const entry = this.tar.require(path, () => new AirlockError("ERR_INVALID_LAYOUT", `${where}: its layer ${path} is not in the archive`));
      const compression = layerCompression(await this.tar.head(entry, 6), `layer ${path} of ${where}`);
      let size = compression === "none" ? entry.size : -1;
      if (compression !== "none" && options.sizes !== false) {
        size = 0;
        try {
          for await (const chunk of pipeline(this.tar.open(entry, { signal: options.signal }), decompressor(compression), () => {})) size += (chunk as Buffer).length;
        } catch (cause) {
          throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: layer ${path} is ${compression}-compressed and cannot be decompressed: ${(cause as Error).message}`, { cause });
        }
      }
      layers.set(diffID, { diffID, path, entry, compression, size });
    }
    return { position, item, config, configDigest: digestOf(config), diffIDs, layers };
  }

  /** Closes the archive (and removes a decompressed copy of it). */
  close(): Promise<void> {
    return this.tar.close();
  }
}

/**
 * The Docker v2s2 manifest of an archived image, as containers/image generates it: the config,
 * then one uncompressed layer per diff ID, serialised with Go's field order (mediaType, size,
 * digest) so that the digest is the one skopeo reports.
 */
export function archiveImageManifest(image: ArchiveImage): Manifest {
  const layers = image.diffIDs.map((d) => ({ mediaType: LayerMediaType.DockerLayer, size: (image.layers.get(d) as ArchiveLayer).size, digest: d }));
  const json = {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: { mediaType: MediaType.DockerConfig, size: image.config.length, digest: image.configDigest },
    layers,
  };
  return Manifest.parse(Buffer.from(JSON.stringify(json)), { mediaType: MediaType.DockerManifest });
}
