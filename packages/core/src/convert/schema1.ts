/**
 * Docker schema 1 images in the copy pipeline and in `inspect`, as containers/image handles them
 * (internal/image/docker_schema1.go, manifest/docker_schema1.go):
 *
 * - kept as schema 1, byte for byte (digest unchanged), when the destination stores schema 1
 *   (`dir:`, `docker://`) and no `--format` is asked;
 * - otherwise converted to Docker v2s2 (`--format v2s2`, or a destination that takes v2s2) or OCI
 *   (`--format oci`, or an OCI layout): the config is built from the `v1Compatibility` history
 *   (ToSchema2Config), throwaway (empty) layers are dropped, the layers are put base first, and
 *   each layer's diffID is computed by decompressing it while it streams to the destination (so
 *   every layer is read, even one the destination already has). A destination that keeps layers
 *   uncompressed (docker-archive, `--dest-decompress`) gets each layer decompressed through a
 *   temporary file, stored under its diffID. The digest changes, which the copy reports.
 *   Recompression (`--dest-compress*`) of a schema 1 image is refused: convert it first.
 *
 * JSON is written as Go's encoding/json writes it (sorted map keys, `<>&` escaped, RFC 3339 times
 * without trailing zeros), so a conversion airlock makes has the digest skopeo's has.
 * @see https://github.com/containers/image/blob/main/internal/image/docker_schema1.go
 */
import { createReadStream, createWriteStream, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline, Readable, Transform, type TransformCallback, Writable } from "node:stream";
import { pipeline as pipelineAsync } from "node:stream/promises";
import { putVerifiedBlob } from "../copy/blob.js";
import { type Digest, Digester, digestOf, VerifyingStream } from "../digest.js";
import { AirlockError } from "../errors.js";
import type { Descriptor, Manifest } from "../manifest.js";
import type { Schema1Manifest } from "../manifest-schema1.js";
import { isSchema1, MediaType } from "../mediatype.js";
import { RegistryError } from "../registry/errors.js";
import { COMPRESSION_MAGIC_SIZE, type DetectedCompression, decompressor, detectCompression, peek } from "./compression.js";
import type { ConverterContext } from "./convert.js";
import { desiredLayerCompression } from "./convert.js";
import { buildImageManifest } from "./manifest.js";
import { configMediaType, imageManifestMediaType, layerMediaType, type ManifestFormat } from "./mediatypes.js";

// ---------------------------------------------------------------------------------------------
// Go's encoding/json, as far as these conversions need it.

/** JSON text with `<`, `>`, `&`, U+2028 and U+2029 escaped, as Go's json.Marshal writes strings. */
export function goEscape(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** `value` serialised as Go's json.Marshal would (objects in the key order given). */
function goJSON(value: unknown): string {
  return goEscape(JSON.stringify(value));
}

/** Compacts raw JSON text (whitespace outside strings removed) and escapes it as Go's json.Compact with HTML escaping. */
function goCompact(raw: string): string {
  let out = "";
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (inString) {
      out += c;
      if (c === "\\") out += raw[++i] ?? "";
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c !== " " && c !== "\t" && c !== "\n" && c !== "\r") {
      out += c;
    }
  }
  return goEscape(out);
}

/** The raw text of each member of a JSON object's text, by key (the last of duplicate keys wins, as in Go). */
function rawMembers(text: string, what: string): Map<string, string> {
  const members = new Map<string, string>();
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i] as string)) i++;
  };
  const bad = (): never => {
    throw new AirlockError("ERR_MANIFEST_INVALID", `${what} is not a JSON object`);
  };
  const stringEnd = (from: number): number => {
    let j = from + 1;
    while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
    if (j >= text.length) bad();
    return j + 1;
  };
  const valueEnd = (from: number): number => {
    const c = text[from];
    if (c === '"') return stringEnd(from);
    if (c === "{" || c === "[") {
      let depth = 0;
      let j = from;
      while (j < text.length) {
        const d = text[j];
        if (d === '"') {
          j = stringEnd(j);
          continue;
        }
        if (d === "{" || d === "[") depth++;
        else if (d === "}" || d === "]") {
          depth--;
          if (depth === 0) return j + 1;
        }
        j++;
      }
      return bad();
    }
    let j = from;
    while (j < text.length && !",}] \t\n\r".includes(text[j] as string)) j++;
    return j;
  };
  ws();
  if (text[i] !== "{") bad();
  i++;
  ws();
  if (text[i] === "}") return members;
  for (;;) {
    ws();
    if (text[i] !== '"') bad();
    const keyEnd = stringEnd(i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = keyEnd;
    ws();
    if (text[i] !== ":") bad();
    i++;
    ws();
    const end = valueEnd(i);
    members.set(key, text.slice(i, end));
    i = end;
    ws();
    if (text[i] === ",") {
      i++;
      continue;
    }
    if (text[i] === "}") return members;
    bad();
  }
}

/** Go's zero time.Time as JSON. */
const GO_ZERO_TIME = "0001-01-01T00:00:00Z";

/**
 * An RFC 3339 time as Go's time.Time marshals it after parsing it (RFC3339Nano: the fraction
 * without trailing zeros, `Z` for a zero offset). Throws ERR_MANIFEST_INVALID when Go could not parse it.
 */
export function goTime(s: string, what: string): string {
  const m = /^(\d{4}-\d\d-\d\d)[T](\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(s);
  if (!m) throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: ${JSON.stringify(s)} is not an RFC 3339 time`);
  const fraction = (m[3] ?? "").slice(0, 9).replace(/0+$/, "");
  const zone = m[4] === "+00:00" || m[4] === "-00:00" ? "Z" : m[4];
  return `${m[1]}T${m[2]}${fraction ? `.${fraction}` : ""}${zone}`;
}

// ---------------------------------------------------------------------------------------------
// Configs built from a schema 1 manifest.

/**
 * The Docker v2s2 config of a schema 1 image, byte for byte as containers/image's
 * Schema1.ToSchema2Config builds it: the newest `v1Compatibility` object without `id`, `parent`,
 * `parent_id`, `layer_id`, `throwaway` and `Size`, plus `history` (from every entry, base first)
 * and `rootfs` with `diffIDs` (one per non-empty layer, base first), keys sorted.
 * (containers/image re-encodes configs of Docker < 1.8.3 first; airlock does not.)
 */
export function schema1ToSchema2Config(s1: Schema1Manifest, diffIDs: readonly string[], what = "schema 1 manifest"): Buffer {
  const raw = rawMembers(s1.history[0] as string, `${what}: history[0].v1Compatibility`);
  for (const k of ["id", "parent", "parent_id", "layer_id", "throwaway", "Size"]) raw.delete(k);
  const history = s1.v1
    .map((c, i) => {
      const h: Record<string, unknown> = { created: c.created === undefined ? GO_ZERO_TIME : goTime(c.created, `${what}: history[${i}].created`) };
      if (c.author) h.author = c.author;
      const by = (c.container_config?.Cmd ?? []).join(" ");
      if (by) h.created_by = by;
      if (c.comment) h.comment = c.comment;
      if (c.throwaway) h.empty_layer = true;
      return h;
    })
    .reverse();
  const members = new Map<string, string>();
  for (const [k, v] of raw) members.set(k, goCompact(v));
  members.set("rootfs", goJSON({ type: "layers", diff_ids: diffIDs }));
  members.set("history", goJSON(history));
  const keys = [...members.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(`{${keys.map((k) => `${goJSON(k)}:${members.get(k)}`).join(",")}}`);
}

/** Looks a key up as Go's json.Unmarshal does: exact match first, then case-insensitively. */
function field(o: Record<string, unknown> | undefined, name: string): unknown {
  if (!o) return undefined;
  if (name in o) return o[name];
  const lower = name.toLowerCase();
  const k = Object.keys(o).find((x) => x.toLowerCase() === lower);
  return k === undefined ? undefined : o[k];
}

const sorted = <T>(m: Record<string, T>): Record<string, T> => Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/**
 * An OCI image config made from a Docker image config as containers/image makes it (the Docker
 * JSON unmarshalled into the OCI `Image` struct and marshalled again): Docker-only fields dropped,
 * Go's field order, empty fields omitted, maps sorted.
 * @see https://github.com/opencontainers/image-spec/blob/main/specs-go/v1/config.go
 */
export function ociConfigFromDocker(docker: Record<string, unknown>, what = "config"): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const str = (o: Record<string, unknown> | undefined, k: string) => {
    const v = field(o, k);
    return typeof v === "string" ? v : "";
  };
  const list = (o: Record<string, unknown> | undefined, k: string) => {
    const v = field(o, k);
    return Array.isArray(v) && v.length > 0 ? v : undefined;
  };
  const set = (o: Record<string, unknown> | undefined, k: string) => {
    const v = field(o, k);
    return v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 ? sorted(v as Record<string, unknown>) : undefined;
  };
  const created = field(docker, "created");
  if (typeof created === "string") out.created = goTime(created, `${what}: created`);
  if (str(docker, "author")) out.author = str(docker, "author");
  out.architecture = str(docker, "architecture");
  if (str(docker, "variant")) out.variant = str(docker, "variant");
  out.os = str(docker, "os");
  if (str(docker, "os.version")) out["os.version"] = str(docker, "os.version");
  if (list(docker, "os.features")) out["os.features"] = list(docker, "os.features");
  const c = field(docker, "config") as Record<string, unknown> | undefined;
  const config: Record<string, unknown> = {};
  if (str(c, "User")) config.User = str(c, "User");
  const ports = set(c, "ExposedPorts");
  if (ports) config.ExposedPorts = Object.fromEntries(Object.keys(ports).map((k) => [k, {}]));
  for (const k of ["Env", "Entrypoint", "Cmd"]) if (list(c, k)) config[k] = list(c, k);
  const volumes = set(c, "Volumes");
  if (volumes) config.Volumes = Object.fromEntries(Object.keys(volumes).map((k) => [k, {}]));
  if (str(c, "WorkingDir")) config.WorkingDir = str(c, "WorkingDir");
  if (set(c, "Labels")) config.Labels = set(c, "Labels");
  if (str(c, "StopSignal")) config.StopSignal = str(c, "StopSignal");
  if (field(c, "ArgsEscaped") === true) config.ArgsEscaped = true;
  out.config = config;
  const rootfs = field(docker, "rootfs") as Record<string, unknown> | undefined;
  out.rootfs = { type: str(rootfs, "type"), diff_ids: field(rootfs, "diff_ids") ?? null };
  const history = field(docker, "history");
  if (Array.isArray(history) && history.length > 0) {
    out.history = history.map((h: Record<string, unknown>, i) => {
      const e: Record<string, unknown> = {};
      const t = field(h, "created");
      if (typeof t === "string") e.created = goTime(t, `${what}: history[${i}].created`);
      for (const k of ["created_by", "author", "comment"]) if (str(h, k)) e[k] = str(h, k);
      if (field(h, "empty_layer") === true) e.empty_layer = true;
      return e;
    });
  }
  return out;
}

/** What `skopeo inspect` shows of a schema 1 image (containers/image's Schema1.Inspect). */
export interface Schema1Inspect {
  /** The tag embedded in the manifest ("" when none). */
  tag: string;
  created: string;
  dockerVersion: string;
  labels: Record<string, string> | null;
  architecture: string;
  variant: string;
  os: string;
  /** Every layer blob, base first, empty layers included. */
  layers: Digest[];
  env: string[] | null;
}

/** Reads what `skopeo inspect` prints from a schema 1 manifest (all of it is in the newest `v1Compatibility`). */
export function inspectSchema1(s1: Schema1Manifest, what: string): Schema1Inspect {
  const c = s1.config();
  const s = (k: string) => {
    const v = field(c, k);
    return typeof v === "string" ? v : "";
  };
  const inner = field(c, "config") as Record<string, unknown> | null | undefined;
  const labels = field(inner ?? undefined, "Labels");
  const env = field(inner ?? undefined, "Env");
  const created = field(c, "created");
  return {
    tag: s1.tag,
    created: typeof created === "string" ? goTime(created, `${what}: created`) : GO_ZERO_TIME,
    dockerVersion: s("docker_version"),
    labels: labels && typeof labels === "object" ? sorted(labels as Record<string, string>) : null,
    architecture: s("architecture"),
    variant: s("variant"),
    os: s("os"),
    layers: s1.layers().map((l) => l.digest),
    env: Array.isArray(env) ? (env as string[]) : null,
  };
}

/** The OCI config `skopeo inspect --config` prints for a schema 1 image (diffIDs unknown: empty strings). */
export function schema1OCIConfig(s1: Schema1Manifest, what: string): Record<string, unknown> {
  const empty = s1.layers().filter((l) => !l.emptyLayer).map(() => "");
  return ociConfigFromDocker(JSON.parse(schema1ToSchema2Config(s1, empty, what).toString("utf8")) as Record<string, unknown>, what);
}

// ---------------------------------------------------------------------------------------------
// Copying.

/**
 * Transports whose destinations store schema 1 manifests as they are, as containers/image's do
 * (their capability lists name only the four current types, which is what they write otherwise).
 */
const SCHEMA1_TRANSPORTS: ReadonlySet<string> = new Set(["dir", "docker"]);

/**
 * A pass-through stream that also decompresses what passes and hashes the result: the layer's
 * diffID, ready when the stream ends. The compression is detected from the first bytes.
 */
class DiffIDTee extends Transform {
  private readonly digester = new Digester();
  private head: Buffer[] = [];
  private headLength = 0;
  private sink: Transform | undefined;
  private sinkEnded: Promise<void> | undefined;
  private readonly what: string;
  /** The compression detected (set once enough bytes passed). */
  compression: DetectedCompression | undefined;
  /** Bytes passed through so far. */
  bytesSeen = 0;

  constructor(what: string) {
    super();
    this.what = what;
  }

  /** The diffID (after the stream ended). */
  get diffID(): Digest {
    return this.digester.digest();
  }

  private start(): Buffer {
    const head = Buffer.concat(this.head);
    this.head = [];
    this.compression = detectCompression(head);
    if (this.compression === "bzip2" || this.compression === "xz") {
      throw new AirlockError("ERR_UNSUPPORTED", `${this.what} is ${this.compression}-compressed, which airlock cannot decompress to compute its diffID`);
    }
    if (this.compression !== "none") {
      const sink = decompressor(this.compression);
      sink.on("data", (c: Buffer) => this.digester.update(c));
      this.sinkEnded = new Promise((resolve, reject) => {
        sink.once("end", resolve);
        sink.once("error", (err) => reject(new AirlockError("ERR_IO", `${this.what}: cannot decompress it (${this.compression}) to compute its diffID: ${err.message}`, { cause: err })));
      });
      this.sinkEnded.catch(() => {});
      this.sink = sink;
    }
    return head;
  }

  private feed(chunk: Buffer, done: (err?: Error | null) => void): void {
    if (!this.sink) {
      this.digester.update(chunk);
      done();
      return;
    }
    this.sink.write(chunk, (err) => done(err));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytesSeen += chunk.length;
    try {
      if (this.compression === undefined) {
        this.head.push(chunk);
        this.headLength += chunk.length;
        if (this.headLength < COMPRESSION_MAGIC_SIZE) {
          cb(null, chunk);
          return;
        }
        this.feed(this.start(), (err) => cb(err ?? null, chunk));
        return;
      }
      this.feed(chunk, (err) => cb(err ?? null, chunk));
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (this.compression === undefined) {
        const head = this.start();
        if (head.length > 0) {
          this.feed(head, () => this.finish(cb));
          return;
        }
      }
      this.finish(cb);
    } catch (err) {
      cb(err as Error);
    }
  }

  private finish(cb: TransformCallback): void {
    if (!this.sink) {
      cb();
      return;
    }
    this.sink.end();
    (this.sinkEnded as Promise<void>).then(
      () => cb(),
      (err: Error) => cb(err),
    );
  }
}

/** One layer copied while its diffID was computed. */
interface ConvertedLayer {
  desc: Descriptor;
  diffID: Digest;
  compression: DetectedCompression;
}

/** Copies schema 1 images: as they are, or converted (see the module comment). One per copy. */
export class Schema1Converter {
  private readonly ctx: ConverterContext;
  private readonly layers = new Map<string, Promise<ConvertedLayer>>();

  constructor(ctx: ConverterContext) {
    this.ctx = ctx;
  }

  /** Whether the destination stores schema 1 manifests as they are. */
  private storesSchema1(): boolean {
    const { dst } = this.ctx;
    return dst.capabilities.manifestMediaTypes.some((t) => isSchema1(t)) || SCHEMA1_TRANSPORTS.has(dst.reference.transport.name);
  }

  private accepts(mediaType: string): boolean {
    return (this.ctx.dst.capabilities.manifestMediaTypes as readonly string[]).includes(mediaType);
  }

  /**
   * The format `m` is written in: undefined to keep it as schema 1, else `--format`, else v2s2 or
   * OCI, whichever the destination takes (OCI first: airlock's OCI layouts also take v2s2, skopeo's
   * do not, and skopeo writes OCI there). Throws
   * ERR_UNSUPPORTED when the image cannot be written, or must change and may not.
   */
  target(m: Manifest): ManifestFormat | undefined {
    const { options, dst, image, keepDigests } = this.ctx;
    let format: ManifestFormat | undefined;
    if (options.format) {
      if (!this.accepts(imageManifestMediaType(options.format))) {
        throw new AirlockError("ERR_UNSUPPORTED", `--format ${options.format}: ${dst.reference} does not accept ${imageManifestMediaType(options.format)} manifests`);
      }
      format = options.format;
    } else if (this.storesSchema1()) {
      format = undefined;
    } else if (this.accepts(MediaType.OCIManifest)) {
      // OCI before v2s2: an OCI layout takes both here, and skopeo writes OCI into it.
      format = "oci";
    } else if (this.accepts(MediaType.DockerManifest)) {
      format = "v2s2";
    } else {
      throw new AirlockError("ERR_UNSUPPORTED", `${dst.reference} accepts neither ${m.mediaType} manifests nor any format airlock can convert ${image} to`);
    }
    if (options.compressFormat !== undefined || options.compress === true) {
      throw new AirlockError(
        "ERR_UNSUPPORTED",
        `${image} has a Docker schema 1 manifest, whose layers airlock does not recompress while copying; copy it to an oci: or dir: image with --format v2s2 (or oci) first, then copy that with --dest-compress-format / --dest-compress`,
      );
    }
    if (this.decompress && format === undefined) {
      throw new AirlockError("ERR_UNSUPPORTED", `--dest-decompress: ${image} has a Docker schema 1 manifest, whose layers airlock decompresses only while converting it; add --format v2s2 or --format oci`);
    }
    if (format !== undefined && keepDigests) {
      throw new AirlockError("ERR_UNSUPPORTED", `copying ${image} to ${dst.reference} would convert its Docker schema 1 manifest to ${imageManifestMediaType(format)} and so change its digest, which cannot be done: ${keepDigests}`);
    }
    return format;
  }

  /**
   * Copies the blobs of schema 1 image `m` and returns the manifest to put: `m` itself, or the
   * converted manifest with a sentence saying what changed and why.
   */
  async copy(m: Manifest): Promise<{ manifest: Manifest; reason?: string }> {
    const format = this.target(m);
    if (format === undefined) {
      await Promise.all(m.blobs().map((b) => this.ctx.copyBlob(b)));
      return { manifest: m };
    }
    const { dst, image, signal, onProgress } = this.ctx;
    const s1 = m.schema1;
    const all = s1.layers();
    const kept = all.filter((l) => !l.emptyLayer);
    const converted = await Promise.all(kept.map((l) => this.layer(l.digest)));
    const v2config = schema1ToSchema2Config(s1, converted.map((l) => l.diffID), `${image}`);
    const configBytes = format === "oci" ? Buffer.from(goJSON(ociConfigFromDocker(JSON.parse(v2config.toString("utf8")) as Record<string, unknown>, `config of ${image}`))) : v2config;
    const config: Descriptor = { mediaType: configMediaType(format), digest: digestOf(configBytes), size: configBytes.length };
    if (await dst.tryReuseBlob(config, signal)) {
      this.ctx.skipped(config, "already exists");
    } else {
      await putVerifiedBlob(dst, config, Readable.from([configBytes]), { what: `config ${config.digest} of ${image} (built from its schema 1 history)`, image, signal, onProgress });
      this.ctx.copied(config.size);
    }
    const layers = converted.map((l, i): Descriptor => {
      const compression = l.compression === "none" || l.compression === "gzip" || l.compression === "zstd" ? l.compression : "gzip";
      const mediaType = layerMediaType(format, compression);
      if (!mediaType) {
        throw new AirlockError("ERR_UNSUPPORTED", `${image}: layer ${i} (${l.desc.digest}) is ${compression}-compressed, which a Docker v2s2 manifest cannot describe; use --format oci`);
      }
      return { ...l.desc, mediaType };
    });
    const manifest = buildImageManifest(format, config, layers);
    const dropped = all.length - kept.length;
    const why = this.ctx.options.format ? "" : ` (${dst.reference.transport.name}: does not store Docker schema 1)`;
    return {
      manifest,
      reason: `converted from ${m.mediaType} to ${manifest.mediaType}: config built from the v1Compatibility history, ${dropped} empty layer(s) dropped, diffIDs computed by decompressing ${kept.length} layer(s)${why}`,
    };
  }

  /**
   * Copies one layer (unless the destination has it) while computing its diffID; a layer the
   * destination has is still read, to compute its diffID.
   */
  private layer(digest: Digest): Promise<ConvertedLayer> {
    let p = this.layers.get(digest);
    if (!p) {
      p = this.ctx.schedule(() => (this.decompress ? this.decompressLayer(digest) : this.copyLayer(digest)));
      this.layers.set(digest, p);
    }
    return p;
  }

  /** Whether layers are stored uncompressed (`--dest-decompress`, or a destination such as docker-archive). */
  private get decompress(): boolean {
    return this.ctx.options.decompress === true || desiredLayerCompression(this.ctx.dst) === "decompress";
  }

  /**
   * Reads one layer, verifies it, decompresses it into a temporary file while hashing it (its
   * diffID, which is then its digest), and stores that file — for destinations that keep layers
   * uncompressed; the destination contract needs the digest before the bytes.
   */
  private async decompressLayer(digest: Digest): Promise<ConvertedLayer> {
    const { src, dst, image, signal, onProgress } = this.ctx;
    signal?.throwIfAborted();
    const what = `layer ${digest} of ${image}`;
    const { stream, size } = await src.getBlob({ mediaType: MediaType.DockerLayerGzip, digest, size: -1 }, { signal });
    onProgress?.({ type: "blob-start", image, digest, size: size ?? -1, mediaType: MediaType.DockerLayerGzip });
    const dir = await fs.mkdtemp(join(this.ctx.tmpDir ?? tmpdir(), "airlock-schema1-"));
    try {
      const file = join(dir, "layer");
      const verified = pipeline(stream, new VerifyingStream({ digest, size: size ?? -1 }, what), () => {});
      const { head, stream: input } = await peek(verified);
      const compression = detectCompression(head);
      if (compression === "bzip2" || compression === "xz") {
        input.destroy();
        throw new AirlockError("ERR_UNSUPPORTED", `${what} is ${compression}-compressed, which airlock cannot decompress`);
      }
      const d = new Digester();
      const hashing = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          d.update(chunk);
          cb(null, chunk);
        },
      });
      try {
        await pipelineAsync([input, ...(compression === "none" ? [] : [decompressor(compression)]), hashing, createWriteStream(file, { flags: "wx" })], signal ? { signal } : {});
      } catch (err) {
        if (err instanceof AirlockError) throw err;
        throw new AirlockError("ERR_IO", `decompressing ${what} failed: ${(err as Error).message}`, { cause: err });
      }
      const desc: Descriptor = { mediaType: MediaType.DockerLayerGzip, digest: d.digest(), size: d.size };
      if (await dst.tryReuseBlob(desc, signal)) {
        this.ctx.skipped(desc, "already exists");
      } else {
        await dst.putBlob(desc, createReadStream(file), signal);
        this.ctx.copied(desc.size);
      }
      onProgress?.({ type: "blob-done", image, digest, size: size ?? -1 });
      return { desc, diffID: desc.digest, compression: "none" };
    } finally {
      await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }

  private async copyLayer(digest: Digest): Promise<ConvertedLayer> {
    const { src, dst, image, signal, onProgress } = this.ctx;
    signal?.throwIfAborted();
    const what = `layer ${digest} of ${image}`;
    const { stream, size } = await src.getBlob({ mediaType: MediaType.DockerLayerGzip, digest, size: -1 }, { signal });
    const desc: Descriptor = { mediaType: MediaType.DockerLayerGzip, digest, size: size ?? -1 };
    const tee = new DiffIDTee(what);
    let bytes = desc.size;
    if (await dst.tryReuseBlob(desc, signal)) {
      const verifier = new VerifyingStream({ digest, size: desc.size }, what);
      try {
        await pipelineAsync([stream, verifier, tee, new Writable({ write: (_c, _e, cb) => cb() })], signal ? { signal } : {});
      } catch (err) {
        if (err instanceof AirlockError) throw err;
        throw new AirlockError("ERR_IO", `reading ${what} to compute its diffID failed: ${(err as Error).message}`, { cause: err });
      }
      bytes = verifier.bytes;
      this.ctx.skipped({ ...desc, size: bytes }, "already exists");
    } else {
      const teed = stream.pipe(tee);
      stream.once("error", (err) => teed.destroy(err));
      await putVerifiedBlob(dst, desc, teed, { what, image, signal, onProgress });
      if (bytes < 0) bytes = tee.bytesSeen;
      this.ctx.copied(bytes);
    }
    return { desc: { ...desc, size: bytes }, diffID: tee.diffID, compression: tee.compression ?? "none" };
  }

  /**
   * The error to report when the destination refused schema 1 manifest `m`: distribution ≥ 2.8
   * refuses schema 1 pushes (with a 500) unless `compatibility.schema1.enabled` is set.
   */
  refused(m: Manifest, err: unknown): unknown {
    if (!(err instanceof RegistryError) || this.ctx.options.format) return err;
    return new AirlockError(
      "ERR_DESTINATION",
      `${this.ctx.dst.reference} refused the Docker schema 1 manifest ${m.digest} of ${this.ctx.image} (${err.message}); registries refuse schema 1 pushes unless configured to take them (distribution ≥ 2.8: compatibility.schema1.enabled): copy it with --format v2s2 or --format oci instead`,
      { cause: err },
    );
  }
}
