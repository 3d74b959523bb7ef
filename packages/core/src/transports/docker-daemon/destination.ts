/**
 * Writes an image into a Docker daemon: `POST /images/load?quiet=1` with a `docker save`-format
 * archive streamed as the request body while the blobs arrive, as containers/image's
 * docker/daemon destination does. The archive has the docker-archive destination's shape —
 * `<hex>.json` configs, `<hex>.tar` layers, `manifest.json` with `Config`, `RepoTags`, `Layers` —
 * and keeps the layers as they come (containers/image: "preserve"): `docker load` decompresses a
 * gzip layer itself and checks every layer's uncompressed digest against the config's
 * `rootfs.diff_ids`, so nothing is decompressed or hashed here (the copy pipeline verifies each blob).
 *
 * Streamed, not staged: a blob of known size is written straight into the request body when at
 * most 1 MiB is queued ahead of it; otherwise (a concurrent blob, or one of unknown size) it is
 * staged under the SystemContext's tmpDir, appended when the stream is free, and its staged copy
 * removed at once. There is never a temporary copy of the whole archive.
 *
 * Atomic: `manifest.json` and the end-of-archive marker are written only by `commit()`; a
 * destination closed without a commit breaks the request off, and the daemon, seeing a truncated
 * archive, loads nothing. Commit succeeds when the daemon answers 200 and its JSON message stream
 * holds no `error`/`errorDetail`.
 * @see https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Image/operation/ImageLoad
 */
import { createReadStream, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline as pipelineAsync } from "node:stream/promises";
import type { Dispatcher } from "undici";
import { isImageConfig } from "../../convert/mediatypes.js";
import { type Digest, digestHex } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { InflightWrites, ioError } from "../../layout/files.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import { DockerReference } from "../../reference/docker.js";
import { AppendQueue } from "../append-queue.js";
import { checkDockerSaveManifest, type DockerArchiveContext } from "../docker-archive/destination.js";
import { DOCKER_ARCHIVE_MANIFEST } from "../docker-archive/reader.js";
import type { DestinationCapabilities, ImageDestination, PutManifestOptions } from "../types.js";
import { DaemonClient, readText } from "./client.js";
import type { DockerDaemonReference } from "./reference.js";
import { TarStream } from "./tarstream.js";

/** What a docker-daemon destination stores: Docker v2s2 manifests only, no indexes (what `docker load` takes). */
export const DOCKER_DAEMON_DESTINATION_CAPABILITIES: DestinationCapabilities = {
  manifestMediaTypes: [MediaType.DockerManifest],
  concurrentWrites: true,
  indexes: false,
};

/** Options of {@link DockerDaemonImageDestination.open}. */
export interface DaemonDestinationOptions {
  /** The environment DOCKER_HOST and friends are read from (default process.env). */
  env?: Record<string, string | undefined>;
}

/** How much may be queued ahead of a blob for it to stream straight into the body. */
const DIRECT_QUEUE_LIMIT = 1024 * 1024;

/** The daemon's answer to the load: status and the JSON message stream (kept to 1 MiB). */
interface LoadAnswer {
  status: number;
  text: string;
}

/** An {@link ImageDestination} that streams one image into `docker load`. */
export class DockerDaemonImageDestination implements ImageDestination {
  readonly reference: DockerDaemonReference;
  readonly capabilities = DOCKER_DAEMON_DESTINATION_CAPABILITIES;
  /** `docker load` takes compressed layers: the copy pipeline leaves them as they are (containers/image's daemon destination). */
  readonly desiredLayerCompression = "preserve" as const;
  private readonly client: DaemonClient;
  private readonly stageDir: string;
  /** The RepoTags of the image, `NAME:TAG`. */
  private readonly tags: string[];
  private readonly tar: TarStream;
  private readonly answer: Promise<LoadAnswer>;
  /** Blobs written into the archive, by digest: their entry name. */
  private readonly blobs = new Map<Digest, { name: string; size: number }>();
  /** Entry names claimed by a putBlob (written or being written). */
  private readonly claimed = new Set<string>();
  private readonly inflight = new InflightWrites();
  private readonly appends = new AppendQueue();
  private image: { config: string; layers: string[] } | undefined;
  private bodyEnded = false;
  private committed = false;
  private closed = false;

  private constructor(reference: DockerDaemonReference, client: DaemonClient, stageDir: string, tags: string[], body: PassThrough, request: Promise<Dispatcher.ResponseData>) {
    this.reference = reference;
    this.client = client;
    this.stageDir = stageDir;
    this.tags = tags;
    this.tar = new TarStream(body);
    this.answer = request.then(async (res) => ({ status: res.statusCode, text: await readText(res.body, 1024 * 1024) }));
    // An answer before the whole archive was sent means the daemon gave up: stop writing.
    this.answer.then(
      (a) => {
        if (!this.bodyEnded) this.tar.abort(loadError(this.reference, this.client, a) ?? new AirlockError("ERR_DESTINATION", `${this.reference}: the Docker daemon at ${this.client.endpoint.host} ended the load before the image was sent`));
      },
      (err: unknown) => {
        const e = this.client.connectionError(err);
        this.tar.abort(e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  /**
   * Opens the daemon for loading: the reference must be NAME:TAG (more tags from
   * `ctx.dockerArchiveAdditionalTags`); pings the daemon (so an unreachable one fails before any
   * blob moves) and starts the load request.
   */
  static async open(ref: DockerDaemonReference, ctx: DockerArchiveContext = {}, options: DaemonDestinationOptions = {}): Promise<DockerDaemonImageDestination> {
    if (!ref.ref || ref.ref.tag === undefined) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot write to ${ref}: a docker-daemon destination must be NAME:TAG, e.g. docker-daemon:app:1.0 (an image ID or a digest names an image that already exists)`);
    }
    const tags = [`${ref.ref.name}:${ref.ref.tag}`];
    for (const t of ctx.dockerArchiveAdditionalTags ?? []) {
      let r: DockerReference;
      try {
        r = DockerReference.parse(t);
      } catch (cause) {
        throw new AirlockError("ERR_INVALID_REFERENCE", `invalid --additional-tag ${JSON.stringify(t)}: ${(cause as Error).message}`, { cause });
      }
      if (r.digest !== undefined) throw new AirlockError("ERR_INVALID_REFERENCE", `invalid --additional-tag ${JSON.stringify(t)}: a tag is NAME[:TAG], without a digest`);
      const s = `${r.name}:${r.withDefaultTag().tag}`;
      if (!tags.includes(s)) tags.push(s);
    }
    const client = await DaemonClient.open(ctx, String(ref), options.env);
    let stageDir: string | undefined;
    try {
      const ping = await client.request("GET", "/_ping");
      if (ping.statusCode !== 200) throw await client.responseError(ping, "pinging the daemon", "ERR_DESTINATION");
      await ping.body.dump();
      const base = ctx.tmpDir ?? tmpdir();
      try {
        stageDir = await fs.mkdtemp(join(base, "airlock-daemon-load-"));
      } catch (cause) {
        throw ioError(`cannot write ${ref}: cannot create a staging directory under ${base} (choose another with --tmpdir)`, cause);
      }
      const body = new PassThrough({ highWaterMark: 1024 * 1024 });
      const request = client.request("POST", "/images/load?quiet=1", { body, headers: { "content-type": "application/x-tar" } });
      return new DockerDaemonImageDestination(ref, client, stageDir, tags, body, request);
    } catch (err) {
      await client.close();
      if (stageDir) await fs.rm(stageDir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** Runs `fn` after every append queued before it (the archive is one sequential stream). */
  private append(size: number, fn: () => Promise<void>): Promise<void> {
    return this.appends.run(size, fn);
  }

  /** True when the blob was already written into this load (a layer an image lists twice). */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    const b = this.blobs.get(desc.digest);
    return b !== undefined && (desc.size < 0 || b.size === desc.size);
  }

  /**
   * Writes a blob into the archive: a config as `<hex>.json`, a layer (compressed or not) as
   * `<hex>.tar`. `stream` is the copy pipeline's verifying stream (it fails on a mismatch, which
   * breaks the load off: the archive cannot be committed after a failed append). Streams straight into the request
   * body when its size is known and little is queued; else stages it first (see the module comment).
   */
  putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal): Promise<void> {
    return this.inflight.run(async (s) => {
      const what = `blob ${desc.digest} for ${this.reference}`;
      // The copy pipeline hands over a verifying stream (putVerifiedBlob): it errors on a digest or
      // size mismatch before it ends, so nothing is hashed twice here; the tar entry's size is checked.
      const input = stream;
      const name = `${digestHex(desc.digest)}.${isImageConfig(desc.mediaType) ? "json" : "tar"}`;
      if (this.claimed.has(name)) {
        // The same blob twice at once: the first write stores it.
        input.destroy();
        return;
      }
      this.claimed.add(name);
      try {
        if (desc.size >= 0 && this.appends.pendingBytes <= DIRECT_QUEUE_LIMIT) {
          const onAbort = () => input.destroy(new AirlockError("ERR_ABORTED", `writing ${what} was aborted`));
          s.addEventListener("abort", onAbort, { once: true });
          try {
            await this.append(desc.size, async () => {
              if (s.aborted) throw s.reason;
              await this.tar.addFile(name, desc.size, input, what);
            });
          } finally {
            s.removeEventListener("abort", onAbort);
            input.destroy();
          }
          this.blobs.set(desc.digest, { name, size: desc.size });
          return;
        }
        const file = join(this.stageDir, name);
        try {
          const out = await fs.open(file, "wx");
          await pipelineAsync([input, out.createWriteStream({ highWaterMark: 1024 * 1024 })], { signal: s });
          const size = (await fs.stat(file)).size;
          await this.append(size, () => this.tar.addFile(name, size, createReadStream(file, { highWaterMark: 1024 * 1024 }), what));
          this.blobs.set(desc.digest, { name, size });
        } catch (err) {
          if (err instanceof AirlockError) throw err;
          if ((err as Error).name === "AbortError") throw new AirlockError("ERR_ABORTED", `writing ${what} was aborted`, { cause: err });
          throw ioError(`staging ${what} in ${this.stageDir} failed`, err);
        } finally {
          await fs.rm(file, { force: true }).catch(() => {});
        }
      } catch (err) {
        this.claimed.delete(name);
        throw err;
      }
    }, signal);
  }

  /** Always false: the daemon is given an archive, which holds no manifest. */
  async hasManifest(_digest: Digest, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return false;
  }

  /** Takes the top-level Docker v2s2 manifest: the config and layers manifest.json will list. Other types: ERR_UNSUPPORTED. */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    options.signal?.throwIfAborted();
    checkDockerSaveManifest(this.reference, manifest);
    if (!options.topLevel) return;
    const { config, layers } = manifest.image;
    const entry = (d: Digest, kind: string) => {
      const b = this.blobs.get(d);
      if (!b) throw new AirlockError("ERR_DESTINATION", `${this.reference}: the ${kind} ${d} was not written before the manifest`);
      return b.name;
    };
    this.image = { config: entry(config.digest, "config"), layers: layers.map((l) => entry(l.digest, "layer")) };
  }

  /**
   * Sends manifest.json and the end of the archive, then waits for the daemon's answer: the load
   * succeeded when it is 200 and its message stream reports no error (ERR_DESTINATION otherwise).
   */
  async commit(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const image = this.image;
    if (!image) throw new AirlockError("ERR_DESTINATION", `nothing to commit to ${this.reference}: no manifest was written`);
    await this.appends.drain();
    const item = { Config: image.config, RepoTags: this.tags, Layers: image.layers };
    await this.tar.addBytes(DOCKER_ARCHIVE_MANIFEST, Buffer.from(JSON.stringify([item])));
    this.bodyEnded = true;
    await this.tar.end();
    let answer: LoadAnswer;
    try {
      answer = await this.answer;
    } catch (err) {
      throw this.client.connectionError(err);
    }
    const err = loadError(this.reference, this.client, answer);
    if (err) throw err;
    this.committed = true;
  }

  /** Without a commit, breaks the load off (the daemon loads nothing); closes the connection and removes staged files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.committed) {
      // Break the body off first: an append waiting for the daemon to drain the body fails at once.
      this.tar.abort(new AirlockError("ERR_ABORTED", `${this.reference}: the load was abandoned before commit`));
      await this.inflight.abortAll();
      await this.appends.settled();
    }
    await this.client.close();
    await this.answer.catch(() => {});
    await fs.rm(this.stageDir, { recursive: true, force: true }).catch(() => {});
  }
}

/** The error a load answer reports, if any: a status other than 200, or an `error`/`errorDetail` message. */
function loadError(ref: DockerDaemonReference, client: DaemonClient, a: LoadAnswer): AirlockError | undefined {
  const host = client.endpoint.host;
  const messages: string[] = [];
  for (const line of a.text.split("\n")) {
    if (line.trim() === "") continue;
    let o: { message?: unknown; error?: unknown; errorDetail?: { message?: unknown } };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      if (a.status !== 200) messages.push(line.trim());
      continue;
    }
    const m = o.errorDetail?.message ?? o.error ?? (a.status !== 200 ? o.message : undefined);
    if (m !== undefined) messages.push(String(m));
  }
  if (a.status === 200 && messages.length === 0) return undefined;
  const detail = messages.length > 0 ? messages.join("; ") : "no message";
  return new AirlockError("ERR_DESTINATION", `${ref}: docker load failed in the Docker daemon at ${host}${a.status !== 200 ? ` (HTTP ${a.status})` : ""}: ${detail}`);
}
