/**
 * Writes an image into a `docker save`-format archive that `docker load` and `podman load` accept:
 * `manifest.json` (one item per image: `Config`, `RepoTags`, `Layers`), each config as
 * `<hex>.json` and each layer as an UNCOMPRESSED tar `<diff-id-hex>.tar` (containers/image's
 * naming; no legacy `<id>/` directories or `repositories` file, which only Docker before 1.10
 * needed). Only Docker v2s2 manifests can be written: the copy pipeline converts an OCI image and
 * decompresses its layers first ({@link DockerArchiveImageDestination.desiredLayerCompression}),
 * and this destination also decompresses a gzip or zstd layer it is given, checking that every
 * layer's uncompressed digest is the config's `rootfs.diff_ids` entry.
 *
 * Atomic and streamed: the archive is written into a temporary file beside PATH as blobs arrive
 * (each staged and verified first, then appended, its staged copy removed at once), and `commit()`
 * adds what the old archive contributes and `manifest.json` last, then renames the file onto PATH;
 * until then nothing at PATH changes. Beyond skopeo (which replaces
 * the archive): when PATH already is a docker archive, its other images are kept — the new image's
 * tags move to it from any image that had them (an image left with no tag by that is dropped), an
 * image with the same config gains the tags — and layers the archive holds are not copied again.
 * Each commit rewrites the whole archive, uncompressed (also when the archive it replaces was
 * gzip-compressed: docker load, podman load and skopeo read either). A PATH that is not a docker
 * archive is replaced.
 * @see https://github.com/moby/moby/blob/master/image/spec/v1.2.md
 */
import { AppendQueue } from "../append-queue.js";
import { promises as fs } from "node:fs";
import { basename, dirname, join } from "node:path";
import { pipeline, Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline as pipelineAsync } from "node:stream/promises";
import { canDecompress, decompressor, detectCompression, peek } from "../../convert/compression.js";
import { isImageConfig } from "../../convert/mediatypes.js";
import { type Digest, Digester, digestHex, digestOf, VerifyingStream } from "../../digest.js";
import { AirlockError, isAirlockError } from "../../errors.js";
import { withFileLock } from "../../fsutil.js";
import { InflightWrites, ioError } from "../../layout/files.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import { DockerReference } from "../../reference/docker.js";
import { archiveLockPath } from "../oci-archive/destination.js";
import type { DestinationCapabilities, ImageDestination, PutManifestOptions, SystemContext } from "../types.js";
import { MAX_CONFIG_SIZE } from "../../inspect.js";
import { type ArchiveImage, DOCKER_ARCHIVE_MANIFEST, DockerArchiveReader, type DockerArchiveItem } from "./reader.js";
import type { DockerArchiveReference } from "./reference.js";
import { TarWriter, type TarFileEntry, normalizeArchivePath } from "./tarfile.js";

/** A SystemContext with the settings only a docker-archive destination reads. */
export interface DockerArchiveContext extends SystemContext {
  /** `--additional-tag`: more `NAME[:TAG]` names for the image written (RepoTags). */
  dockerArchiveAdditionalTags?: string[];
}

/** What a docker-archive destination stores: Docker v2s2 manifests only, no indexes. */
export const DOCKER_ARCHIVE_DESTINATION_CAPABILITIES: DestinationCapabilities = {
  manifestMediaTypes: [MediaType.DockerManifest],
  concurrentWrites: true,
  indexes: false,
};

/** A blob written or found in the existing archive: where its stored bytes are and what they hash to. */
interface StoredBlob {
  /** The digest of the bytes as stored (a layer's diff ID). */
  stored: Digest;
  size: number;
  /** The name it was written under in the new archive. */
  appended?: string;
  /** A config's bytes (kept: putManifest reads them). */
  bytes?: Buffer;
  /** An entry of the archive as it was opened (a reused blob, copied at commit). */
  entry?: TarFileEntry;
}

/** A file of the archive being written. */
interface OutFile {
  size: number;
  open: () => Readable | Promise<Readable>;
  what: string;
}

function hashing(d: Digester): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      d.update(chunk);
      cb(null, chunk);
    },
  });
}

/** Opens the docker archive at `path` for merging; undefined when there is none or it is not one (it will be replaced). */
async function openExisting(path: string, ctx: SystemContext): Promise<DockerArchiveReader | undefined> {
  try {
    return await DockerArchiveReader.open(path, { tmpDir: ctx.tmpDir, what: `docker-archive:${path}` });
  } catch (err) {
    if (isAirlockError(err, "ERR_IMAGE_NOT_FOUND") || isAirlockError(err, "ERR_INVALID_LAYOUT") || isAirlockError(err, "ERR_MANIFEST_INVALID")) return undefined;
    throw err;
  }
}

/** Reads every image of an archive without decompressing layers; images that cannot be read are skipped. */
async function readImages(reader: DockerArchiveReader): Promise<(ArchiveImage | undefined)[]> {
  const out: (ArchiveImage | undefined)[] = [];
  for (let i = 0; i < reader.items.length; i++) out.push(await reader.image(i, { sizes: false }).catch(() => undefined));
  return out;
}

/**
 * Refuses a manifest a `docker save`-format tar cannot hold (the docker-archive: and docker-daemon:
 * destinations): an index, or anything but a Docker v2s2 manifest (ERR_UNSUPPORTED).
 */
export function checkDockerSaveManifest(reference: { toString(): string }, manifest: Manifest): void {
  if (manifest.isIndex) {
    throw new AirlockError("ERR_UNSUPPORTED", `${reference} cannot store a multi-arch index (${manifest.mediaType}); copy one platform`);
  }
  if (manifest.mediaType !== MediaType.DockerManifest) {
    throw new AirlockError("ERR_UNSUPPORTED", `${reference} stores Docker v2s2 manifests only, not ${manifest.mediaType}; airlock copy converts the image (its digest changes)`);
  }
}

/** An {@link ImageDestination} that streams one image into a new docker archive, made PATH at commit. */
export class DockerArchiveImageDestination implements ImageDestination {
  readonly reference: DockerArchiveReference;
  readonly capabilities = DOCKER_ARCHIVE_DESTINATION_CAPABILITIES;
  /** docker load needs uncompressed layers: the copy pipeline decompresses them (containers/image's DesiredLayerCompression). */
  readonly desiredLayerCompression = "decompress" as const;
  private readonly ctx: SystemContext;
  private readonly stageDir: string;
  /** The RepoTags of the new image (normalised `NAME:TAG`). */
  private readonly tags: string[];
  private readonly existing: DockerArchiveReader | undefined;
  /** Configs and uncompressed layers of the existing archive, by digest, for reuse. */
  private readonly reusable = new Map<Digest, StoredBlob>();
  private readonly blobs = new Map<Digest, StoredBlob>();
  private readonly inflight = new InflightWrites();
  /** The archive being written, from open on (a temporary file beside PATH until commit). */
  private readonly writer: TarWriter;
  /** Names already written into the new archive. */
  private readonly appendedNames = new Set<string>();
  /** Appends to the tar, run one at a time. */
  private readonly appends = new AppendQueue();
  private image: { config: Buffer; configDigest: Digest; layers: { diffID: Digest; blob: StoredBlob }[] } | undefined;
  private committed = false;
  private closed = false;

  private constructor(reference: DockerArchiveReference, ctx: SystemContext, stageDir: string, tags: string[], existing: DockerArchiveReader | undefined, writer: TarWriter) {
    this.reference = reference;
    this.ctx = ctx;
    this.stageDir = stageDir;
    this.tags = tags;
    this.existing = existing;
    this.writer = writer;
  }

  /** Runs `fn` after every append queued before it (the archive is written sequentially). */
  private append(size: number, fn: () => Promise<void>): Promise<void> {
    return this.appends.run(size, fn);
  }

  /**
   * Opens `ref` for writing: PATH's directory must exist and PATH must not be a directory; the tags
   * are the reference's and `ctx.dockerArchiveAdditionalTags`. Creates only a staging directory.
   */
  static async open(ref: DockerArchiveReference, ctx: DockerArchiveContext = {}): Promise<DockerArchiveImageDestination> {
    if (ref.position !== undefined) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot write to ${ref}: @N selects an existing image for reading; name the image instead, e.g. docker-archive:${ref.path}:NAME:TAG`);
    }
    const tags: string[] = [];
    const addTag = (r: DockerReference) => {
      const s = `${r.name}:${r.tag}`;
      if (!tags.includes(s)) tags.push(s);
    };
    if (ref.ref) addTag(ref.ref);
    for (const t of ctx.dockerArchiveAdditionalTags ?? []) {
      let r: DockerReference;
      try {
        r = DockerReference.parse(t);
      } catch (cause) {
        throw new AirlockError("ERR_INVALID_REFERENCE", `invalid --additional-tag ${JSON.stringify(t)}: ${(cause as Error).message}`, { cause });
      }
      if (r.digest !== undefined) throw new AirlockError("ERR_INVALID_REFERENCE", `invalid --additional-tag ${JSON.stringify(t)}: a tag is NAME[:TAG], without a digest`);
      addTag(r.withDefaultTag());
    }
    const st = await fs.stat(ref.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw ioError(`cannot write ${ref}`, err);
    });
    if (st?.isDirectory()) throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot write ${ref}: ${ref.path} is a directory; docker-archive: writes a tar file`);
    const dir = dirname(ref.path);
    let stageDir: string;
    try {
      stageDir = await fs.mkdtemp(join(dir, `.${basename(ref.path)}.airlock-`));
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === "ENOENT") {
        throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot write ${ref}: the directory ${dir} does not exist; create it first`, { cause });
      }
      throw ioError(`cannot write ${ref}: cannot create a staging directory in ${dir}`, cause);
    }
    let existing: DockerArchiveReader | undefined;
    try {
      existing = st ? await openExisting(ref.path, ctx) : undefined;
      const dst = new DockerArchiveImageDestination(ref, ctx, stageDir, tags, existing, await TarWriter.create(ref.path));
      if (existing) {
        for (const img of await readImages(existing)) {
          if (!img) continue;
          dst.reusable.set(img.configDigest, { stored: img.configDigest, size: img.config.length, entry: existing.tar.require(img.item.Config) });
          for (const l of img.layers.values()) if (l.compression === "none") dst.reusable.set(l.diffID, { stored: l.diffID, size: l.entry.size, entry: l.entry });
        }
      }
      return dst;
    } catch (err) {
      await existing?.close();
      await fs.rm(stageDir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** True when the blob is staged, or the existing archive holds it (a config, or an uncompressed layer) with the expected size. */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    if (this.blobs.has(desc.digest)) return true;
    const r = this.reusable.get(desc.digest);
    if (!r || (desc.size >= 0 && r.size !== desc.size)) return false;
    this.blobs.set(desc.digest, r);
    return true;
  }

  /**
   * Writes a blob, verified against `desc` while it streams. An uncompressed layer of known size
   * streams straight into the archive when little is queued ahead of it. Otherwise it is staged (a
   * layer that arrives gzip- or zstd-compressed is decompressed as it is written; its diff ID is
   * checked in putManifest), then appended to the archive as `<hex>.json` (a config) or
   * `<diff-id-hex>.tar`, and the staged file removed at once — the extra disk space is that of the
   * blobs in flight.
   */
  putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal): Promise<void> {
    return this.inflight.run(async (s) => {
      const what = `blob ${desc.digest} for ${this.reference}`;
      let input: Readable = pipeline(stream, new VerifyingStream({ digest: desc.digest, size: desc.size }, what), () => {});
      let compression: "none" | "gzip" | "zstd" = "none";
      if (!isImageConfig(desc.mediaType)) {
        const p = await peek(input);
        input = p.stream;
        const c = detectCompression(p.head);
        if (c !== "none" && !canDecompress(c)) {
          input.destroy();
          throw new AirlockError("ERR_UNSUPPORTED", `${what}: the layer is ${c}-compressed, which airlock cannot decompress for docker-archive`);
        }
        compression = c as typeof compression;
        // An uncompressed layer of known size streams straight into the archive when at most
        // 1 MiB is queued ahead of it (verified as it goes: a mismatch fails the archive).
        const name = `${digestHex(desc.digest)}.tar`;
        if (compression === "none" && desc.size >= 0 && this.appends.pendingBytes <= 1024 * 1024 && !this.appendedNames.has(name)) {
          const direct = input;
          const onAbort = () => direct.destroy(new AirlockError("ERR_ABORTED", `writing ${what} was aborted`));
          s.addEventListener("abort", onAbort, { once: true });
          try {
            await this.append(desc.size, async () => {
              if (s.aborted) throw s.reason;
              await this.writer.addFile(name, desc.size, () => direct, what);
              this.appendedNames.add(name);
            });
          } catch (err) {
            direct.destroy();
            throw err;
          } finally {
            s.removeEventListener("abort", onAbort);
          }
          this.blobs.set(desc.digest, { stored: desc.digest, size: desc.size, appended: name });
          return;
        }
      }
      const file = join(this.stageDir, digestHex(desc.digest));
      const tmp = `${file}.tmp`;
      const d = new Digester();
      const stages: NodeJS.ReadWriteStream[] = compression === "none" ? [] : [decompressor(compression)];
      try {
        const out = await fs.open(tmp, "wx");
        await pipelineAsync([input, ...stages, hashing(d), out.createWriteStream({ highWaterMark: 1024 * 1024 })], { signal: s });
        await fs.rename(tmp, file);
      } catch (err) {
        await fs.rm(tmp, { force: true }).catch(() => {});
        if (err instanceof AirlockError) throw err;
        if ((err as Error).name === "AbortError") throw new AirlockError("ERR_ABORTED", `writing ${what} was aborted`, { cause: err });
        throw ioError(`staging ${what} in ${this.stageDir} failed`, err);
      }
      try {
        const stored = d.digest();
        const config = isImageConfig(desc.mediaType);
        const bytes = config && d.size <= MAX_CONFIG_SIZE ? await fs.readFile(file) : undefined;
        const name = config ? `${digestHex(desc.digest)}.json` : `${digestHex(stored)}.tar`;
        await this.append(d.size, async () => {
          if (this.appendedNames.has(name)) return;
          await this.writer.addFile(name, d.size, async () => (await fs.open(file, "r")).createReadStream({ highWaterMark: 1024 * 1024 }), what);
          this.appendedNames.add(name);
        });
        const blob: StoredBlob = { stored, size: d.size, appended: name };
        if (bytes) blob.bytes = bytes;
        this.blobs.set(desc.digest, blob);
      } finally {
        await fs.rm(file, { force: true }).catch(() => {});
      }
    }, signal);
  }

  /** Always false: an archive stores no manifest, so there is nothing to skip. */
  async hasManifest(_digest: Digest, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return false;
  }

  /**
   * Takes the top-level Docker v2s2 manifest: reads its config (staged or in the archive) and checks
   * that each layer, as stored (uncompressed), has the digest of the config's `rootfs.diff_ids`
   * entry, which `docker load` requires. Other manifest types are refused (ERR_UNSUPPORTED).
   */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    options.signal?.throwIfAborted();
    checkDockerSaveManifest(this.reference, manifest);
    if (!options.topLevel) return;
    const { config, layers } = manifest.image;
    const cblob = this.blobs.get(config.digest);
    if (!cblob) throw new AirlockError("ERR_DESTINATION", `${this.reference}: the config ${config.digest} was not written before the manifest`);
    const configBytes = await this.readStored(cblob, MAX_CONFIG_SIZE);
    if (digestOf(configBytes) !== config.digest) throw new AirlockError("ERR_DIGEST_MISMATCH", `${this.reference}: the config ${config.digest} does not hash to its digest`);
    let diffIDs: unknown;
    try {
      diffIDs = (JSON.parse(configBytes.toString("utf8")) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids;
    } catch (cause) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${this.reference}: the config ${config.digest} is not valid JSON`, { cause });
    }
    if (!Array.isArray(diffIDs) || diffIDs.length !== layers.length) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${this.reference}: the config lists ${Array.isArray(diffIDs) ? diffIDs.length : "no"} diff IDs for ${layers.length} layers; docker load would refuse the image`);
    }
    const out: { diffID: Digest; blob: StoredBlob }[] = [];
    for (const [i, l] of layers.entries()) {
      const blob = this.blobs.get(l.digest);
      if (!blob) throw new AirlockError("ERR_DESTINATION", `${this.reference}: layer ${l.digest} was not written before the manifest`);
      if (blob.stored !== diffIDs[i]) {
        throw new AirlockError(
          "ERR_DIGEST_MISMATCH",
          `${this.reference}: layer ${i} (${l.digest}) is ${blob.stored} uncompressed, but the config's rootfs.diff_ids[${i}] is ${String(diffIDs[i])}; the image is inconsistent and docker load would refuse it`,
        );
      }
      out.push({ diffID: blob.stored, blob });
    }
    this.image = { config: configBytes, configDigest: config.digest, layers: out };
  }

  /**
   * Writes the archive: under the archive's lock, re-reads PATH (another writer may have committed
   * since open), merges the new image into its manifest.json, and writes every config and layer
   * (those copied from the old archive verified against their digests while copied), then
   * manifest.json, to a temporary file renamed onto PATH.
   */
  async commit(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const image = this.image;
    if (!image) throw new AirlockError("ERR_DESTINATION", `nothing to commit to ${this.reference}: no manifest was written`);
    await this.appends.drain();
    const path = this.reference.path;
    await withFileLock(archiveLockPath(path), async () => {
      const current = await openExisting(path, this.ctx);
      try {
        const files = new Map<string, OutFile>();
        const items = await this.mergeItems(image, current, files);
        for (const [name, f] of files) {
          signal?.throwIfAborted();
          await this.writer.addFile(name, f.size, f.open, f.what);
        }
        await this.writer.addBytes(DOCKER_ARCHIVE_MANIFEST, Buffer.from(JSON.stringify(items)));
        await this.writer.commit();
      } finally {
        await current?.close();
      }
    });
    this.committed = true;
  }

  /**
   * The manifest.json of the new archive, filling `files` with what it refers to. Old images keep
   * their place; the new image's tags are removed from them (an image left without tags by that is
   * dropped); an old image with the new image's config becomes the new image; otherwise the new
   * image is appended. Configs and uncompressed layers are stored content-addressed
   * (`<hex>.json`, `<hex>.tar`), so one layer is stored once.
   */
  private async mergeItems(image: NonNullable<typeof this.image>, current: DockerArchiveReader | undefined, files: Map<string, OutFile>): Promise<DockerArchiveItem[]> {
    const newTags = new Set(this.tags);
    const normal = (t: string) => {
      try {
        const r = DockerReference.parse(t).withDefaultTag();
        return `${r.name}:${r.tag}`;
      } catch {
        return t;
      }
    };
    const addConfig = (digest: Digest, bytes: Buffer) => {
      const name = `${digestHex(digest)}.json`;
      if (!files.has(name) && !this.appendedNames.has(name)) files.set(name, { size: bytes.length, open: () => Readable.from([bytes]), what: `config ${digest}` });
      return name;
    };
    const addLayer = (diffID: Digest, size: number, open: () => Readable | Promise<Readable>) => {
      const name = `${digestHex(diffID)}.tar`;
      const what = `layer ${diffID} for ${this.reference}`;
      if (!files.has(name) && !this.appendedNames.has(name)) files.set(name, { size, open: async () => pipeline(await open(), new VerifyingStream({ digest: diffID, size }, what), () => {}), what });
      return name;
    };
    const items: DockerArchiveItem[] = [];
    let placed = false;
    const newItem = (extraTags: string[]): DockerArchiveItem => ({
      Config: addConfig(image.configDigest, image.config),
      RepoTags: [...new Set([...extraTags, ...this.tags])],
      Layers: image.layers.map((l) => l.blob.appended ?? addLayer(l.diffID, l.blob.size, () => this.openStored(l.blob))),
    });
    if (current) {
      const images = await readImages(current);
      for (const [i, item] of current.items.entries()) {
        const img = images[i];
        const tags = item.RepoTags ?? [];
        const kept = tags.filter((t) => !newTags.has(normal(t)));
        if (img && img.configDigest === image.configDigest && !placed) {
          items.push(newItem(kept));
          placed = true;
          continue;
        }
        if (tags.length > 0 && kept.length === 0) continue; // replaced: its tags moved to the new image
        if (!img) {
          throw new AirlockError("ERR_INVALID_LAYOUT", `cannot add to ${this.reference}: image @${i} of ${path(current)} cannot be read, so it cannot be kept; remove ${path(current)} or write to another file`);
        }
        const out: DockerArchiveItem = { ...item, Config: addConfig(img.configDigest, img.config), RepoTags: item.RepoTags === null ? null : kept, Layers: [] };
        for (const [j, diffID] of img.diffIDs.entries()) {
          const l = img.layers.get(diffID);
          if (!l) throw new AirlockError("ERR_INVALID_LAYOUT", `${path(current)}: image @${i} lacks layer ${j}`);
          if (l.compression === "none") {
            out.Layers.push(addLayer(diffID, l.entry.size, () => current.tar.open(l.entry)));
          } else {
            // A compressed layer another tool wrote: kept as it is, under its own (non-clashing) name.
            let name = normalizeArchivePath(l.path);
            if (/^[0-9a-f]{64}\.(tar|json)$/.test(name) || name === DOCKER_ARCHIVE_MANIFEST) name = `layers/${name}`;
            if (!files.has(name) && !this.appendedNames.has(name)) files.set(name, { size: l.entry.size, open: () => current.tar.open(l.entry), what: `layer ${l.path} of ${path(current)}` });
            out.Layers.push(name);
          }
        }
        items.push(out);
      }
    }
    if (!placed) items.push(newItem([]));
    return items;
  }

  /** Reads a small stored blob (a config) whole. */
  private async readStored(blob: StoredBlob, max: number): Promise<Buffer> {
    if (blob.size > max) throw new AirlockError("ERR_MANIFEST_INVALID", `${this.reference}: a config of ${blob.size} bytes is more than the ${max} airlock reads`);
    if (blob.bytes) return blob.bytes;
    const chunks: Buffer[] = [];
    for await (const c of await this.openStored(blob)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** Opens a staged file, or an entry of the archive as it was opened. */
  private async openStored(blob: StoredBlob): Promise<Readable> {
    if (blob.entry && this.existing) return this.existing.tar.open(blob.entry);
    throw new AirlockError("ERR_DESTINATION", `${this.reference}: a blob of the image is neither staged nor in the archive`);
  }

  /** Without a commit, PATH was never touched: stops staged writes and removes the staging directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.committed) {
      await this.inflight.abortAll();
      await this.appends.settled();
      await this.writer.abort();
    }
    await this.existing?.close();
    await fs.rm(this.stageDir, { recursive: true, force: true }).catch(() => {});
  }
}

function path(reader: DockerArchiveReader): string {
  return reader.tar.path;
}

