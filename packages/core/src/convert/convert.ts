/**
 * Manifest and layer conversion during a copy (containers/image's copy/manifest.go and
 * copy/compression.go): an image changes only when the user asks for it (`--format`,
 * `--dest-compress-format`, `--dest-compress`, `--dest-decompress`) or the destination requires it
 * (a manifest type it does not accept; docker-archive's uncompressed layers; gzip data where a
 * layer's media type says gzip but an {@link UncompressedLayerSource} such as containers-storage
 * gives an uncompressed tar, for every destination but those that keep layers as given, like
 * dir:). Every change gives
 * the image a new digest, which the copy reports in a `warning` event; `--preserve-digests` turns
 * any needed change into an error.
 *
 * A layer whose representation changes is read from the source, verified against its digest,
 * (de)compressed, and spooled to a temporary file while its new digest is computed (the destination
 * contract needs the digest before the bytes); the file is then stored and removed. Configs never
 * change: only the media type in their descriptor does.
 */
import { createReadStream, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Readable, pipeline, Transform, type TransformCallback } from "node:stream";
import { pipeline as pipelineAsync } from "node:stream/promises";
import { type Digest, Digester, isDigest, VerifyingStream } from "../digest.js";
import { AirlockError } from "../errors.js";
import type { Descriptor, Manifest } from "../manifest.js";
import type { ProgressListener } from "../progress.js";
import type { ImageDestination, ImageSource } from "../transports/types.js";
import { type CompressionAlgorithm, type Compression, compressor, decompressor, detectCompression, peek, zstdSupport } from "./compression.js";
import { buildImageManifest, buildIndex } from "./manifest.js";
import { configMediaType, formatOf, imageManifestMediaType, indexMediaType, isImageConfig, layerKind, layerMediaType, type ManifestFormat } from "./mediatypes.js";
import type { Throttle } from "../throttle.js";

/** What the user asked to change, as skopeo copy's flags. */
export interface ConversionOptions {
  /** `--format oci|v2s2`: the manifest format to write. */
  format?: ManifestFormat | undefined;
  /** `--dest-compress-format gzip|zstd`: every layer ends in this compression (uncompressed ones are compressed, others recompressed). */
  compressFormat?: CompressionAlgorithm | undefined;
  /** `--dest-compress`: compress uncompressed layers (with `compressFormat`, default gzip). */
  compress?: boolean | undefined;
  /** `--dest-decompress`: store every layer uncompressed. */
  decompress?: boolean | undefined;
  /** `--dest-compress-level`: gzip 1–9, zstd 1–19. */
  compressLevel?: number | undefined;
}

/**
 * What a destination wants layers to be (containers/image's DesiredLayerCompression):
 * - `preserve`: each layer is stored exactly as given, whatever its media type says (dir:,
 *   containers-storage, docker-daemon; containers/image's PreserveOriginal);
 * - `decompress`: layers are stored uncompressed (docker-archive);
 * - `compress` (a destination that states nothing): layers are stored as given, and their media
 *   types must say what they are — so an uncompressed layer that a
 *   {@link UncompressedLayerSource} labels compressed is compressed with gzip on the way
 *   (containers/image's Compress, which airlock applies to those layers only).
 */
export type LayerCompressionPreference = "preserve" | "decompress" | "compress";

/**
 * The optional destination feature that states a layer compression preference. A destination that
 * has it (docker-archive: `decompress`; dir: `preserve`) gets its layers that way from the copy
 * pipeline; one without it is treated as `compress`.
 */
export interface LayerCompressionRequirement {
  readonly desiredLayerCompression: LayerCompressionPreference;
}

/** The layer compression `dst` wants: its {@link LayerCompressionRequirement}, else `compress`. */
export function desiredLayerCompression(dst: ImageDestination): LayerCompressionPreference {
  const v = (dst as Partial<LayerCompressionRequirement>).desiredLayerCompression;
  return v === "decompress" || v === "preserve" ? v : "compress";
}

/**
 * The optional source feature of a source whose layer blobs are uncompressed tars whatever the
 * media types of their descriptors say: containers-storage keeps no compressed layers and, as
 * containers/image does, presents each under its diff ID and uncompressed size but its ORIGINAL
 * media type (often `…tar+gzip`). The copy pipeline then compresses those layers for a destination
 * that trusts media types (`compress`, see {@link LayerCompressionPreference}), relabels them when
 * layers are to be uncompressed, and leaves them as they are for a `preserve` destination.
 */
export interface UncompressedLayerSource {
  /** True: every layer blob the source returns is an uncompressed tar. */
  readonly layersUncompressed: true;
}

/** Reports whether `src` is an {@link UncompressedLayerSource}. */
export function hasUncompressedLayers(src: ImageSource): boolean {
  return (src as Partial<UncompressedLayerSource>).layersUncompressed === true;
}

/** Checks a {@link ConversionOptions} for contradictions (ERR_INVALID_ARGUMENT). */
export function validateConversionOptions(o: ConversionOptions): void {
  if (o.decompress && (o.compress || o.compressFormat)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", "--dest-decompress cannot be combined with --dest-compress or --dest-compress-format: choose whether layers are compressed");
  }
  if (o.format !== undefined && o.format !== "oci" && o.format !== "v2s2") {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `unknown manifest format ${JSON.stringify(o.format)}: use oci or v2s2`);
  }
  if (o.compressFormat !== undefined && o.compressFormat !== "gzip" && o.compressFormat !== "zstd") {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `unknown compression ${JSON.stringify(o.compressFormat)}: use gzip or zstd`);
  }
  if (o.format === "v2s2" && o.compressFormat === "zstd") {
    throw new AirlockError("ERR_INVALID_ARGUMENT", "--format v2s2 and --dest-compress-format zstd cannot be used together: Docker v2s2 manifests cannot describe zstd layers; use --format oci");
  }
}

/** How one layer is copied: unchanged, or from one compression to another. */
export interface LayerStep {
  layer: Descriptor;
  from: Compression;
  to: Compression;
  /** The layer's media type in the new manifest. */
  mediaType: string;
}

/** What converting an image manifest means: its new format and what happens to each layer. */
export interface ImagePlan {
  format: ManifestFormat;
  layers: LayerStep[];
  /** A sentence for the warning event: what changes and why. */
  reason: string;
}

/** What {@link ImageConverter} needs from the copy pipeline. */
export interface ConverterContext {
  src: ImageSource;
  dst: ImageDestination;
  options: ConversionOptions;
  /**
   * Why no digest may change, when one may not — skopeo's words: `"Instructed to preserve digests"`
   * (--preserve-digests) or `"Would invalidate signatures"` — else undefined.
   */
  keepDigests?: string | undefined;
  /** The source image's name, for messages. */
  image: string;
  /** Directory for the spooled (de)compressed layers (default os.tmpdir()). */
  tmpDir?: string | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ProgressListener | undefined;
  /** The pipeline's copy of an unchanged blob (verified, scheduled, deduplicated). */
  copyBlob(desc: Descriptor): Promise<void>;
  /** The pipeline's concurrency limit (and the run's per-registry cap, for a layer read from a registry). */
  schedule<T>(fn: () => Promise<T>): Promise<T>;
  /** The run's limits (`--rate-limit` applies to the layers read here). */
  throttle?: Throttle | undefined;
  /** Records a blob written (for the copy's result). */
  copied(size: number): void;
  /** Records a blob the destination already had. */
  skipped(desc: Descriptor, reason: string): void;
}

function counting(d: Digester, onEnd?: () => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      d.update(chunk);
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      onEnd?.();
      cb();
    },
  });
}

/** Converts images as they are copied; one per copy (it remembers layers it already converted). */
export class ImageConverter {
  private readonly ctx: ConverterContext;
  private readonly transformed = new Map<string, Promise<Descriptor>>();

  constructor(ctx: ConverterContext) {
    validateConversionOptions(ctx.options);
    this.ctx = ctx;
  }

  /** Whether the destination takes manifests of `mediaType` as they are. */
  accepts(mediaType: string): boolean {
    return (this.ctx.dst.capabilities.manifestMediaTypes as readonly string[]).includes(mediaType);
  }

  /** Whether any conversion was asked for or may be needed, i.e. whether planning is worth it. */
  get active(): boolean {
    const o = this.ctx.options;
    const desired = desiredLayerCompression(this.ctx.dst);
    return (
      o.format !== undefined || o.compressFormat !== undefined || o.compress === true || o.decompress === true || desired === "decompress" || (desired === "compress" && hasUncompressedLayers(this.ctx.src))
    );
  }

  private refuse(what: string): never {
    throw new AirlockError("ERR_UNSUPPORTED", `copying ${this.ctx.image} to ${this.ctx.dst.reference} would change it (${what}) and so its digest, which cannot be done: ${this.ctx.keepDigests}`);
  }

  /** Checks that `m` can be written to the destination, as it is or converted (ERR_UNSUPPORTED otherwise). */
  checkWritable(m: Manifest): void {
    if (m.isIndex && !this.ctx.dst.capabilities.indexes) {
      throw new AirlockError("ERR_UNSUPPORTED", `${this.ctx.dst.reference} cannot store a multi-arch index; copy one platform (drop --all / --multi-arch) or choose another destination`);
    }
    if (this.accepts(m.mediaType)) return;
    const format = this.targetFormat(m);
    if (this.ctx.keepDigests) this.refuse(`its ${m.mediaType} manifest converted to ${(m.isIndex ? indexMediaType : imageManifestMediaType)(format)}`);
  }

  /** The format an image or index is written in: `--format`, else its own when accepted, else one the destination accepts. */
  private targetFormat(m: Manifest): ManifestFormat {
    const own = formatOf(m.mediaType);
    const typeOf = m.isIndex ? indexMediaType : imageManifestMediaType;
    if (this.ctx.options.format) {
      const f = this.ctx.options.format;
      if (!this.accepts(typeOf(f))) {
        throw new AirlockError("ERR_UNSUPPORTED", `--format ${f}: ${this.ctx.dst.reference} does not accept ${typeOf(f)} manifests (it takes ${this.ctx.dst.capabilities.manifestMediaTypes.join(", ")})`);
      }
      return f;
    }
    if (this.accepts(m.mediaType)) return own;
    const other: ManifestFormat = own === "oci" ? "v2s2" : "oci";
    if (this.accepts(typeOf(other))) return other;
    throw new AirlockError("ERR_UNSUPPORTED", `${this.ctx.dst.reference} does not accept ${m.mediaType} manifests (image ${this.ctx.image}) nor any format airlock can convert it to`);
  }

  /**
   * Plans the conversion of image manifest `m`; undefined when it is copied unchanged. Throws
   * ERR_UNSUPPORTED when a needed change cannot be made (an artifact, zstd in Docker v2s2) or
   * `--preserve-digests` forbids it.
   */
  planImage(m: Manifest): ImagePlan | undefined {
    if (!this.active && this.accepts(m.mediaType)) return undefined;
    const o = this.ctx.options;
    const own = formatOf(m.mediaType);
    let format = this.targetFormat(m);
    const desired = desiredLayerCompression(this.ctx.dst);
    const decompress = o.decompress === true || desired === "decompress";
    const uncompressedSource = hasUncompressedLayers(this.ctx.src);
    // `from` is what a layer is, `labelled` what its media type says (they differ only for an UncompressedLayerSource).
    const wanted = (from: Compression, labelled: Compression): Compression => {
      if (decompress) return "none";
      if (o.compressFormat) return o.compressFormat;
      if (o.compress && from === "none") return "gzip";
      // containers/image compresses what the destination gets uncompressed (its default algorithm: gzip).
      if (from !== labelled && desired === "compress") return "gzip";
      return from;
    };
    const layers = m.image.layers.map((l) => {
      const kind = layerKind(l.mediaType);
      if (!kind) return undefined;
      const from: Compression = uncompressedSource ? "none" : kind.compression;
      const to = wanted(from, kind.compression);
      // A layer kept as it is keeps the media type it had (containers/image's PreserveOriginal), unless layers are to be uncompressed.
      const label: Compression = from === to && !decompress ? kind.compression : to;
      return { kind, from, to, label };
    });
    // zstd can only be described by an OCI manifest: a zstd result moves an unforced format to OCI.
    if (format === "v2s2" && !o.format && layers.some((x) => x?.label === "zstd") && this.accepts(imageManifestMediaType("oci"))) format = "oci";
    if (format !== own && !isImageConfig(m.image.config.mediaType)) {
      throw new AirlockError("ERR_UNSUPPORTED", `${this.ctx.image} is not a container image (its config is ${m.image.config.mediaType}), so it cannot be converted to ${imageManifestMediaType(format)} for ${this.ctx.dst.reference}`);
    }
    const steps: LayerStep[] = [];
    let relabelled = 0;
    let mislabelled = 0;
    for (const [i, layer] of m.image.layers.entries()) {
      const x = layers[i];
      if (!x) {
        if (format !== own || decompress) {
          throw new AirlockError("ERR_UNSUPPORTED", `${this.ctx.image}: layer ${i} has media type ${layer.mediaType}, which airlock cannot convert (${format !== own ? `to ${imageManifestMediaType(format)}` : "to an uncompressed layer"}) for ${this.ctx.dst.reference}`);
        }
        steps.push({ layer, from: "none", to: "none", mediaType: layer.mediaType });
        continue;
      }
      const mediaType = layerMediaType(format, x.label, x.kind.nondistributable);
      if (!mediaType) {
        throw new AirlockError(
          "ERR_UNSUPPORTED",
          `${this.ctx.image}: layer ${i} would be ${x.label}-compressed, which a Docker v2s2 manifest cannot describe; use --format oci, or --dest-compress-format gzip, or --dest-decompress`,
        );
      }
      // An UncompressedLayerSource's layer compressed (its media type said it was).
      if (x.from !== x.kind.compression && x.to !== x.from) mislabelled++;
      if (x.from === x.to && x.label !== x.kind.compression) relabelled++;
      steps.push({ layer, from: x.from, to: x.to, mediaType });
    }
    const changed = steps.filter((s) => s.from !== s.to);
    if (format === own && changed.length === 0 && relabelled === 0) return undefined;
    if (changed.some((s) => s.to === "zstd") && !zstdSupport().compress) compressor("zstd"); // throws, saying which runtime has zstd, before any blob moves
    const parts: string[] = [];
    if (format !== own) parts.push(`converted from ${m.mediaType} to ${imageManifestMediaType(format)}`);
    const count = (to: Compression) => changed.filter((s) => s.to === to).length;
    if (count("none")) parts.push(`${count("none")} layer(s) decompressed`);
    if (count("gzip")) parts.push(`${count("gzip")} layer(s) compressed with gzip`);
    if (count("zstd")) parts.push(`${count("zstd")} layer(s) compressed with zstd`);
    if (relabelled) parts.push(`${relabelled} uncompressed layer(s) given the uncompressed media type`);
    const why = this.why(m, format, decompress, mislabelled > 0 && desired === "compress");
    const reason = `${parts.join(", ")}${why ? ` (${why})` : ""}`;
    if (this.ctx.keepDigests) this.refuse(`${parts.join(", ")}${why ? `: ${why}` : ""}`);
    return { format, layers: steps, reason };
  }

  /**
   * Why an image changes, when the user did not ask for it: the destination's manifest types or
   * uncompressed layers, or (`compressed`) an {@link UncompressedLayerSource}'s layers compressed to
   * match their media types; "" when there is nothing to add.
   */
  private why(m: Manifest, format: ManifestFormat, decompress: boolean, compressed: boolean): string {
    const o = this.ctx.options;
    const dst = this.ctx.dst.reference.transport.name;
    const notes: string[] = [];
    if (compressed) notes.push(`${this.ctx.src.reference.transport.name}: holds its layers uncompressed, under their original compressed media types; ${dst}: stores layers as their media types say`);
    if (!(o.format || o.compressFormat || o.compress || o.decompress)) {
      if (!this.accepts(m.mediaType)) notes.push(`${dst}: stores ${imageManifestMediaType(format)}${decompress ? " with uncompressed layers" : ""}`);
      else if (decompress) notes.push(`${dst}: stores uncompressed layers`);
    }
    return notes.join("; ");
  }

  /** Copies the blobs of `m` as `plan` says and returns the converted manifest (not yet stored). */
  async convertImage(m: Manifest, plan: ImagePlan): Promise<Manifest> {
    const { config } = m.image;
    const newConfig: Descriptor = { ...config, mediaType: isImageConfig(config.mediaType) ? configMediaType(plan.format) : config.mediaType };
    // A destination that wants uncompressed layers takes them straight from the decompressor under
    // their diff IDs (no spool file): the config says what each layer decompresses to.
    const direct = desiredLayerCompression(this.ctx.dst) === "decompress" && plan.layers.some((st) => st.to === "none" && st.from !== "none");
    const diffIDs = direct ? await this.diffIDs(config) : undefined;
    const [, ...layers] = await Promise.all([
      this.ctx.copyBlob(config),
      ...plan.layers.map(async (step, i): Promise<Descriptor> => {
        if (step.from === step.to) {
          await this.ctx.copyBlob(step.layer);
          return { ...step.layer, mediaType: step.mediaType };
        }
        const key = `${step.layer.digest} ${step.to}`;
        let p = this.transformed.get(key);
        if (!p) {
          const diffID = diffIDs?.[i];
          p = this.ctx.schedule(() => (diffID && step.to === "none" ? this.decompressInto(step, diffID, i) : this.transformLayer(step)));
          this.transformed.set(key, p);
        }
        return p.then((d) => ({ ...d, mediaType: step.mediaType }));
      }),
    ]);
    return buildImageManifest(plan.format, newConfig, layers as Descriptor[], m);
  }

  /**
   * The index to write for `index` once its images were written as `written` (original digest →
   * manifest written); undefined when it is written unchanged. Throws under `--preserve-digests`
   * when it would change.
   */
  convertIndex(index: Manifest, written: Map<Digest, Manifest>): Manifest | undefined {
    const format = this.targetFormat(index);
    const entries = index.index.manifests;
    const changedChild = entries.some((d) => {
      const w = written.get(d.digest);
      return w !== undefined && w.digest !== d.digest;
    });
    if (format === formatOf(index.mediaType) && !changedChild) return undefined;
    if (this.ctx.keepDigests) this.refuse(format !== formatOf(index.mediaType) ? `its index converted to ${indexMediaType(format)}` : "the images its index lists changed");
    const manifests = entries.map((d) => {
      const w = written.get(d.digest);
      if (!w || w.digest === d.digest) return d;
      const nd: Descriptor = { ...d, mediaType: w.mediaType, digest: w.digest, size: w.bytes.length };
      return nd;
    });
    return buildIndex(format, manifests, index);
  }

  /** The config's `rootfs.diff_ids` (read from the source and checked against its digest); undefined when it has none. */
  private async diffIDs(config: Descriptor): Promise<(Digest | undefined)[] | undefined> {
    if (!isImageConfig(config.mediaType) || config.size > 4 * 1024 * 1024) return undefined;
    const { stream } = await this.ctx.src.getBlob(config, { signal: this.ctx.signal });
    const chunks: Buffer[] = [];
    for await (const c of pipeline(stream, new VerifyingStream({ digest: config.digest, size: config.size }, `config ${config.digest} of ${this.ctx.image}`), () => {})) chunks.push(c as Buffer);
    try {
      const ids = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids;
      return Array.isArray(ids) ? ids.map((d) => (isDigest(String(d)) ? (String(d) as Digest) : undefined)) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Decompresses a layer straight into the destination under its diff ID, counting its size as it
   * goes: the destination checks the digest (docker-archive does, and requires it to be the diff ID).
   */
  private async decompressInto(step: LayerStep, diffID: Digest, index: number): Promise<Descriptor> {
    const { src, dst, signal, onProgress, image } = this.ctx;
    const desc = step.layer;
    signal?.throwIfAborted();
    onProgress?.({ type: "blob-start", image, digest: desc.digest, size: desc.size, mediaType: desc.mediaType });
    const counter = new Digester();
    let ended = false;
    const { stream } = await src.getBlob(desc, { signal });
    const { input, decompress } = await this.sniffed(this.ctx.throttle?.stream(stream, signal) ?? stream, desc);
    const out = pipeline([input, ...decompress, counting(counter, () => (ended = true))], () => {}) as unknown as Readable;
    const inconsistent = (actual: string) =>
      new AirlockError("ERR_DIGEST_MISMATCH", `layer ${index} (${desc.digest}) of ${image} decompresses to ${actual}, but the config's rootfs.diff_ids[${index}] is ${diffID}; the image is inconsistent`);
    try {
      await dst.putBlob({ mediaType: step.mediaType, digest: diffID, size: -1 }, out, signal);
    } catch (err) {
      out.destroy();
      // The layer arrived whole and verified, so a digest error is the destination's check of the diff ID.
      if (ended && err instanceof AirlockError && err.code === "ERR_DIGEST_MISMATCH") throw inconsistent(counter.digest());
      throw err;
    }
    const actual = counter.digest();
    if (actual !== diffID) throw inconsistent(actual);
    this.ctx.copied(counter.size);
    onProgress?.({ type: "blob-done", image, digest: desc.digest, size: desc.size });
    return { mediaType: step.mediaType, digest: diffID, size: counter.size };
  }

  /**
   * The layer's stream verified against its descriptor, and the decompressor its data needs. The
   * data decides, not the media type: containers/image labels the uncompressed layers it reads
   * from a docker-archive `…tar.gzip` (containers/image#1270), and such an image must convert too.
   */
  private async sniffed(stream: Readable, desc: Descriptor): Promise<{ input: Readable; decompress: Transform[] }> {
    const verified = pipeline(stream, new VerifyingStream({ digest: desc.digest, size: desc.size }, `blob ${desc.digest} of ${this.ctx.image}`), () => {});
    const { head, stream: input } = await peek(verified);
    const actual = detectCompression(head);
    if (actual === "bzip2" || actual === "xz") {
      input.destroy();
      throw new AirlockError("ERR_UNSUPPORTED", `layer ${desc.digest} of ${this.ctx.image} is ${actual}-compressed, which airlock cannot convert`);
    }
    return { input, decompress: actual === "none" ? [] : [decompressor(actual)] };
  }

  /** Reads a layer, verifies it, (de)compresses it into a spool file, and stores the result. */
  private async transformLayer(step: LayerStep): Promise<Descriptor> {
    const { src, dst, signal, onProgress, image } = this.ctx;
    const desc = step.layer;
    signal?.throwIfAborted();
    const compress = step.to === "none" ? undefined : compressor(step.to, this.ctx.options.compressLevel);
    onProgress?.({ type: "blob-start", image, digest: desc.digest, size: desc.size, mediaType: desc.mediaType });
    const dir = await fs.mkdtemp(join(this.ctx.tmpDir ?? tmpdir(), "airlock-convert-"));
    try {
      const file = join(dir, "layer");
      const d = new Digester();
      const { stream } = await src.getBlob(desc, { signal });
      const { input: verified, decompress } = await this.sniffed(this.ctx.throttle?.stream(stream, signal) ?? stream, desc);
      const stages: Transform[] = [...decompress, ...(compress ? [compress] : [])];
      const out = await fs.open(file, "wx");
      try {
        await pipelineAsync([verified, ...stages, counting(d), out.createWriteStream({ highWaterMark: 1024 * 1024 })], signal ? { signal } : {});
      } catch (err) {
        if (err instanceof AirlockError) throw err;
        if ((err as Error).name === "AbortError") throw new AirlockError("ERR_ABORTED", `converting layer ${desc.digest} of ${image} was aborted`, { cause: err });
        throw new AirlockError("ERR_IO", `converting layer ${desc.digest} of ${image} (${step.from} → ${step.to}) failed: ${(err as Error).message}`, { cause: err });
      }
      const result: Descriptor = { mediaType: step.mediaType, digest: d.digest(), size: d.size };
      if (await dst.tryReuseBlob(result, signal)) {
        this.ctx.skipped(result, "already exists");
      } else {
        await dst.putBlob(result, createReadStream(file, { highWaterMark: 1024 * 1024 }) as Readable, signal);
        this.ctx.copied(result.size);
      }
      onProgress?.({ type: "blob-done", image, digest: desc.digest, size: desc.size });
      return result;
    } finally {
      await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }
}
