/**
 * A distribution-spec registry client: manifests, blobs (download with resume; monolithic and
 * chunked, resumable uploads; cross-repository mounts), tag listing and the catalog with `Link`
 * pagination, the referrers API with its tag-schema fallback, and manifest deletion.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
import type { Readable } from "node:stream";
import { type Digest, digestHex, isDigest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { type Descriptor, Manifest, MAX_MANIFEST_SIZE } from "../manifest.js";
import { MANIFEST_MEDIA_TYPES, MediaType } from "../mediatype.js";
import { DOCKER_HUB_DOMAIN, DOCKER_HUB_REGISTRY_HOST } from "../reference/docker.js";
import type { DockerContext, PutBlobOptions, UploadSession, UploadSessionStore } from "../transports/types.js";
import { repositoryScope } from "./auth.js";
import { type OpenedBody, ResumableBlobStream, UploadBody } from "./blobio.js";
import { RegistryError } from "./errors.js";
import { type ConnectionOptions, dumpBody, header, readBody, RegistryConnection, type RegistryRequest, type RegistryResponse } from "./http.js";
import { DEFAULT_RETRIES, isRetryableNetworkError, retryDelay, sleep } from "./retry.js";

/** Blobs up to this size are uploaded with POST + one PUT (and retried whole). */
export const MONOLITHIC_UPLOAD_MAX = 16 * 1024 * 1024;

/** Larger blobs are uploaded in PATCH chunks of this size; a failed chunk resumes where the registry says it stopped. */
export const UPLOAD_CHUNK_SIZE = 16 * 1024 * 1024;

/**
 * Largest upload kept in memory for retries when the source cannot be read again (no `reopen`):
 * such blobs go monolithic up to this size, and in chunks of at most this size beyond it.
 */
export const RETAINED_UPLOAD_MAX = 4 * 1024 * 1024;

/**
 * How long a chunk in flight may go on after the upload was told to stop, when its session is
 * recorded for a rerun (ms): a second interrupt stops the process at once.
 */
export const UPLOAD_STOP_GRACE_MS = 10_000;

/** Environment variable that overrides {@link UPLOAD_CHUNK_SIZE} (bytes; tests make chunks small). */
export const UPLOAD_CHUNK_SIZE_ENV = "AIRLOCK_UPLOAD_CHUNK_SIZE";

/** Page size asked for when listing tags or the catalog. */
export const LIST_PAGE_SIZE = 1000;

/** Largest tag-list or catalog page accepted. */
const LIST_BODY_LIMIT = 32 * 1024 * 1024;

/** The Accept header for manifests: the four manifest media types airlock supports. */
export const MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(", ");

/** What a repository client may do; it decides the token scope (`pull`, `pull,push`, `*`). */
export type RepositoryAccess = "pull" | "push" | "delete";

const ACTIONS: Record<RepositoryAccess, string> = { pull: "pull", push: "pull,push", delete: "*" };

/** Options of a {@link RegistryClient}. */
export interface RegistryClientOptions extends ConnectionOptions {
  /** Overrides {@link MONOLITHIC_UPLOAD_MAX}. */
  monolithicUploadMax?: number;
  /** Overrides {@link UPLOAD_CHUNK_SIZE}. */
  uploadChunkSize?: number;
  /** Delay before a download resumes, in ms (default 500; tests use less). */
  resumeDelayMs?: number;
}

/** A manifest as a registry returned it: raw bytes, Content-Type and Docker-Content-Digest. */
export interface RawManifest {
  bytes: Uint8Array;
  /** The Content-Type the registry sent (may be empty). */
  contentType: string;
  /** The Docker-Content-Digest header, if sent (informational; never trusted). */
  digestHeader?: string;
}

/** What a manifest HEAD reveals. */
export interface ManifestHead {
  digest?: string;
  mediaType?: string;
  size?: number;
}

/** A blob being downloaded. */
export interface BlobDownload {
  stream: Readable;
  /** Full size of the blob, when the registry said. */
  size?: number;
  /** Offset in the blob of the stream's first byte. */
  start: number;
}

/** Options of list operations. */
export interface ListOptions {
  /** Entries per page (`?n=`). */
  pageSize?: number;
  signal?: AbortSignal;
}

/** The registry host to connect to for a reference domain (`docker.io` → `registry-1.docker.io`). */
export function registryHostFor(domain: string): string {
  return domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_REGISTRY_HOST : domain;
}

/** Parses the `next` target of a `Link` header (RFC 8288), relative to `base`. */
export function nextLink(link: string | string[] | undefined, base: string): string | undefined {
  const values = Array.isArray(link) ? link : link ? [link] : [];
  for (const v of values) {
    for (const part of v.split(/,(?=\s*<)/)) {
      const m = /^\s*<([^>]*)>(.*)$/.exec(part);
      if (m && /;\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?/i.test(m[2] as string)) return new URL(m[1] as string, base).href;
    }
  }
  return undefined;
}

/** A client for one registry (host + settings). Create repositories with {@link repository}; {@link close} when done. */
export class RegistryClient {
  /** The HTTP connection (scheme, auth, retries). */
  readonly connection: RegistryConnection;
  /** The registry domain as references name it. */
  readonly domain: string;
  /** @internal */
  readonly options: RegistryClientOptions;
  /** @internal */
  readonly retries: number;
  /** @internal */
  readonly retryDelayMs: number | undefined;
  /** @internal The PATCH chunk size: the option, else {@link UPLOAD_CHUNK_SIZE_ENV}, else {@link UPLOAD_CHUNK_SIZE}. */
  readonly uploadChunkSize: number;

  constructor(domain: string, ctx: DockerContext = {}, options: RegistryClientOptions = {}) {
    this.domain = domain;
    this.options = options;
    this.retries = ctx.retryTimes ?? DEFAULT_RETRIES;
    this.retryDelayMs = ctx.retryDelayMs;
    const env = Number(globalThis.process?.env?.[UPLOAD_CHUNK_SIZE_ENV]);
    this.uploadChunkSize = options.uploadChunkSize ?? (Number.isSafeInteger(env) && env > 0 ? env : UPLOAD_CHUNK_SIZE);
    this.connection = new RegistryConnection(domain, registryHostFor(domain), ctx, options);
  }

  /** Checks that the registry answers `/v2/` (and learns scheme and authentication). */
  ping(signal?: AbortSignal): Promise<void> {
    return this.connection.ping(signal);
  }

  /** A client for repository `path` (e.g. `library/busybox`) with the given access. */
  repository(path: string, access: RepositoryAccess = "pull"): Repository {
    return new Repository(this, path, access);
  }

  /** Lists the registry's repositories (`/v2/_catalog`), following `Link` pagination. */
  async catalog(options: ListOptions = {}): Promise<string[]> {
    const n = options.pageSize ?? LIST_PAGE_SIZE;
    return paginate(this.connection, `/v2/_catalog?n=${n}`, "repositories", {
      scopes: ["registry:catalog:*"],
      kind: "catalog",
      what: `listing the repositories of ${this.domain}`,
      signal: options.signal,
    });
  }

  /** Closes the connections. */
  close(): Promise<void> {
    return this.connection.close();
  }
}

async function paginate(
  conn: RegistryConnection,
  first: string,
  key: "tags" | "repositories",
  req: Pick<RegistryRequest, "scopes" | "kind" | "what" | "signal" | "repository">,
): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  let url: string | undefined = first;
  while (url !== undefined) {
    if (seen.has(url)) break;
    seen.add(url);
    const res = await conn.send({ ...req, method: "GET", url, ok: [200], headers: { accept: "application/json" } });
    const body = await readBody(res.body, LIST_BODY_LIMIT, true, `${req.what}: a page`);
    let json: unknown;
    try {
      json = JSON.parse(body.toString("utf8"));
    } catch (cause) {
      throw new AirlockError("ERR_REGISTRY", `${req.what}: the registry answered with invalid JSON`, { cause });
    }
    const list = (json as Record<string, unknown> | null)?.[key];
    if (list !== null && list !== undefined) {
      if (!Array.isArray(list) || !list.every((t) => typeof t === "string")) {
        throw new AirlockError("ERR_REGISTRY", `${req.what}: the registry's "${key}" is not a list of strings`);
      }
      out.push(...(list as string[]));
    }
    url = nextLink(res.headers.link, res.url);
  }
  return out;
}

/** Operations on one repository of a registry. Obtain one with {@link RegistryClient.repository}. */
export class Repository {
  /** The registry client. */
  readonly registry: RegistryClient;
  /** The repository path, e.g. `library/busybox`. */
  readonly path: string;
  /** The access the client asks tokens for. */
  readonly access: RepositoryAccess;

  constructor(registry: RegistryClient, path: string, access: RepositoryAccess) {
    this.registry = registry;
    this.path = path;
    this.access = access;
  }

  /** `domain/path`, for messages. */
  get name(): string {
    return `${this.registry.domain}/${this.path}`;
  }

  private get conn(): RegistryConnection {
    return this.registry.connection;
  }

  private get scopes(): string[] {
    return [repositoryScope(this.path, ACTIONS[this.access])];
  }

  private send(req: Omit<RegistryRequest, "scopes" | "repository"> & { scopes?: string[] }): Promise<RegistryResponse> {
    return this.conn.send({ ...req, scopes: req.scopes ?? this.scopes, repository: this.path });
  }

  /** Fetches the manifest `reference` (a tag or a digest). Throws ERR_IMAGE_NOT_FOUND when it does not exist. */
  async getManifest(reference: string, signal?: AbortSignal): Promise<RawManifest> {
    const what = `reading manifest ${reference} of ${this.name}`;
    const res = await this.send({ method: "GET", url: `/v2/${this.path}/manifests/${reference}`, headers: { accept: MANIFEST_ACCEPT }, ok: [200], kind: "manifest", what, signal });
    const bytes = await readBody(res.body, MAX_MANIFEST_SIZE, true, `manifest ${reference} of ${this.name}`);
    const out: RawManifest = { bytes, contentType: header(res.headers, "content-type") ?? "" };
    const d = header(res.headers, "docker-content-digest");
    if (d) out.digestHeader = d;
    return out;
  }

  /** Fetches and parses a manifest; with a digest `reference` the bytes must hash to it. */
  async getParsedManifest(reference: string, signal?: AbortSignal): Promise<Manifest> {
    const raw = await this.getManifest(reference, signal);
    const expected = isDigest(reference) ? reference : undefined;
    return Manifest.parse(raw.bytes, { mediaType: raw.contentType, expected, what: `manifest ${reference} of ${this.name}` });
  }

  /** HEADs the manifest `reference`: its digest, media type and size, or undefined when it does not exist. */
  async headManifest(reference: string, signal?: AbortSignal): Promise<ManifestHead | undefined> {
    const what = `checking manifest ${reference} of ${this.name}`;
    const res = await this.send({ method: "HEAD", url: `/v2/${this.path}/manifests/${reference}`, headers: { accept: MANIFEST_ACCEPT }, ok: [200, 404], kind: "manifest", what, signal });
    await dumpBody(res.body);
    if (res.status === 404) return undefined;
    const out: ManifestHead = {};
    const d = header(res.headers, "docker-content-digest");
    if (d) out.digest = d;
    const ct = header(res.headers, "content-type");
    if (ct) out.mediaType = ct;
    const len = Number(header(res.headers, "content-length"));
    if (Number.isSafeInteger(len) && len >= 0) out.size = len;
    return out;
  }

  /** Stores manifest bytes under `reference` (a tag or the manifest's digest). Returns the digest the registry reports. */
  async putManifest(reference: string, bytes: Uint8Array, mediaType: string, signal?: AbortSignal): Promise<string | undefined> {
    const what = `writing manifest ${reference} to ${this.name}`;
    const res = await this.send({ method: "PUT", url: `/v2/${this.path}/manifests/${reference}`, headers: { "content-type": mediaType }, body: bytes, ok: [200, 201, 202, 204], kind: "manifest", what, signal });
    await dumpBody(res.body);
    return header(res.headers, "docker-content-digest");
  }

  /** Deletes the manifest with `digest` (and so every tag pointing at it). */
  async deleteManifest(digest: string, signal?: AbortSignal): Promise<void> {
    const what = `deleting manifest ${digest} of ${this.name}`;
    const res = await this.send({ method: "DELETE", url: `/v2/${this.path}/manifests/${digest}`, ok: [200, 202, 204], kind: "delete", what, signal });
    await dumpBody(res.body);
  }

  /** HEADs a blob: its size, or undefined when it does not exist. */
  async headBlob(digest: string, signal?: AbortSignal): Promise<number | undefined> {
    const what = `checking blob ${digest} in ${this.name}`;
    const res = await this.send({ method: "HEAD", url: `/v2/${this.path}/blobs/${digest}`, ok: [200, 404], kind: "blob", what, signal });
    await dumpBody(res.body);
    if (res.status === 404) return undefined;
    const len = Number(header(res.headers, "content-length"));
    return Number.isSafeInteger(len) && len >= 0 ? len : -1;
  }

  private async openBlob(digest: string, offset: number, signal?: AbortSignal): Promise<OpenedBody & { size?: number }> {
    const what = `reading blob ${digest} of ${this.name}`;
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await this.send({ method: "GET", url: `/v2/${this.path}/blobs/${digest}`, headers, ok: [200, 206], kind: "blob", what, signal });
    let start = 0;
    let size: number | undefined;
    if (res.status === 206) {
      const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/.exec(header(res.headers, "content-range") ?? "");
      if (!m) {
        await dumpBody(res.body);
        throw new AirlockError("ERR_REGISTRY", `${what}: a partial response without a valid Content-Range`, { retryable: true });
      }
      start = Number(m[1]);
      if (m[3] !== "*") size = Number(m[3]);
    } else {
      const len = Number(header(res.headers, "content-length"));
      if (Number.isSafeInteger(len) && len >= 0) size = len;
    }
    return { body: res.body, start, ...(size === undefined ? {} : { size }) };
  }

  /**
   * Downloads a blob, from byte `offset` on (default 0). Redirects are followed; a connection cut
   * mid-body is resumed with a Range request, invisibly to the reader. Throws ERR_BLOB_NOT_FOUND
   * when the blob does not exist.
   */
  async getBlob(digest: string, options: { offset?: number; signal?: AbortSignal; wholeIfUnseekable?: boolean } = {}): Promise<BlobDownload> {
    let offset = options.offset ?? 0;
    const first = await this.openBlob(digest, offset, options.signal);
    // A registry that ignores Range answers 200 with the whole blob: the caller may take it from byte 0.
    if (options.wholeIfUnseekable && offset > 0 && first.start === 0) offset = 0;
    const stream = new ResumableBlobStream(first, offset, {
      reopen: (at, signal) => this.openBlob(digest, at, signal),
      signal: options.signal,
      what: `reading blob ${digest} of ${this.name}`,
      ...(this.registry.options.resumeDelayMs === undefined ? {} : { resumeDelayMs: this.registry.options.resumeDelayMs }),
    });
    const out: BlobDownload = first.size === undefined ? { stream, start: offset } : { stream, size: first.size, start: offset };
    return out;
  }

  /**
   * Mounts blob `digest` from repository `from` of the same registry
   * (`POST …/blobs/uploads/?mount=&from=`). Returns true when mounted (201); false when the
   * registry declined (202: the upload session it opened instead is cancelled) or refused.
   */
  async mountBlob(digest: string, from: string, signal?: AbortSignal): Promise<boolean> {
    const what = `mounting blob ${digest} from ${this.registry.domain}/${from} into ${this.name}`;
    const q = new URLSearchParams({ mount: digest, from });
    try {
      const res = await this.send({
        method: "POST",
        url: `/v2/${this.path}/blobs/uploads/?${q}`,
        body: new Uint8Array(0),
        scopes: [...this.scopes, repositoryScope(from, "pull")],
        ok: [201, 202],
        kind: "upload",
        what,
        signal,
      });
      await dumpBody(res.body);
      if (res.status === 201) return true;
      const loc = header(res.headers, "location");
      if (loc) await this.cancelUpload(new URL(loc, res.url).href);
      return false;
    } catch (err) {
      if (err instanceof RegistryError && err.status >= 400 && err.status < 500 && err.status !== 429) return false;
      throw err;
    }
  }

  private async startUpload(what: string, signal?: AbortSignal): Promise<string> {
    const res = await this.send({ method: "POST", url: `/v2/${this.path}/blobs/uploads/`, body: new Uint8Array(0), ok: [202], kind: "upload", what, signal });
    await dumpBody(res.body);
    const loc = header(res.headers, "location");
    if (!loc) throw new AirlockError("ERR_REGISTRY", `${what}: the registry opened an upload without a Location`);
    return new URL(loc, res.url).href;
  }

  private async cancelUpload(location: string): Promise<void> {
    try {
      const res = await this.send({ method: "DELETE", url: location, ok: [200, 202, 204, 404], kind: "upload", what: `cancelling an upload to ${this.name}`, retry: false, signal: AbortSignal.timeout(10_000) });
      await dumpBody(res.body);
    } catch {
      // Best effort: the registry expires abandoned uploads.
    }
  }

  private async waitRetry(attempt: number, signal?: AbortSignal): Promise<void> {
    await sleep(retryDelay(attempt, { retries: this.registry.retries, delayMs: this.registry.retryDelayMs }), signal);
  }

  /**
   * Uploads a blob from `stream`, which MUST yield exactly `desc.size` bytes with digest
   * `desc.digest` (the registry checks the digest; a stream that errors aborts the upload and
   * nothing is stored). Small blobs: POST + PUT, retried whole. Large ones: POST + PATCH chunks
   * with Content-Range + PUT; after a failed chunk the registry is asked how much it holds and the
   * upload goes on from there, or — when it dropped the session, as distribution does after a
   * PATCH cut mid-body — starts again on a new one. With `options.reopen` (a seekable source),
   * bytes for a retry are read again from the source instead of being kept in memory; without
   * it, at most {@link RETAINED_UPLOAD_MAX} bytes are kept. With `options.session`, each
   * acknowledged chunk is recorded, and a session an earlier run left is continued: the stream's
   * bytes up to the registry's offset are read (and so verified by the caller) but not sent.
   */
  async putBlob(desc: Pick<Descriptor, "digest" | "size">, stream: Readable, signal?: AbortSignal, options: PutBlobOptions = {}): Promise<void> {
    const what = `uploading blob ${desc.digest} to ${this.name}`;
    const body = new UploadBody(stream, desc.size, options.reopen, what);
    const retainLimit = body.seekable ? Number.POSITIVE_INFINITY : RETAINED_UPLOAD_MAX;
    const monolithicMax = Math.min(this.registry.options.monolithicUploadMax ?? MONOLITHIC_UPLOAD_MAX, retainLimit);
    try {
      if (desc.size <= monolithicMax) await this.uploadMonolithic(desc, body, what, signal);
      else await this.uploadChunked(desc, body, Math.min(this.registry.uploadChunkSize, retainLimit), what, signal, options.session);
    } catch (err) {
      await body.close();
      throw err;
    }
  }

  private async uploadMonolithic(desc: Pick<Descriptor, "digest" | "size">, body: UploadBody, what: string, signal?: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const location = await this.startUpload(what, signal);
      try {
        const res = await this.send({
          method: "PUT",
          url: withDigest(location, desc.digest),
          headers: { "content-type": "application/octet-stream", "content-length": String(desc.size) },
          body: () => body.body(0, desc.size),
          ok: [201, 204],
          kind: "upload",
          what,
          signal,
        });
        await dumpBody(res.body);
        return;
      } catch (err) {
        await this.cancelUpload(location);
        if (signal?.aborted || !isRetryableNetworkError(err) || attempt >= this.registry.retries) throw err;
        await this.waitRetry(attempt, signal);
      }
    }
  }

  /** Asks the registry how many bytes of an upload it has (`GET` on the upload URL → `Range: 0-N`). */
  private async uploadOffset(location: string, what: string, signal?: AbortSignal): Promise<{ offset: number; location: string }> {
    const res = await this.send({ method: "GET", url: location, ok: [204, 200], kind: "upload", what: `${what}: checking the upload's progress`, signal });
    await dumpBody(res.body);
    const loc = header(res.headers, "location");
    const range = header(res.headers, "range");
    const m = range ? /^(?:bytes=)?0-(\d+)$/.exec(range.trim()) : null;
    const end = m ? Number(m[1]) : -1;
    return { offset: end + 1, location: loc ? new URL(loc, res.url).href : location };
  }

  private async uploadChunked(desc: Pick<Descriptor, "digest" | "size">, body: UploadBody, chunkSize: number, what: string, signal?: AbortSignal, store?: UploadSessionStore): Promise<void> {
    let session = store ? await this.continueSession(store, body, what, signal) : undefined;
    session ??= { location: await this.startUpload(what, signal), offset: 0 };
    let { location, offset: confirmed } = session;
    try {
      for (let attempt = 0; confirmed < desc.size; ) {
        const from = confirmed;
        const to = Math.min(from + chunkSize, desc.size);
        signal?.throwIfAborted();
        // With a store, a stop lets the chunk in flight finish for a while: a registry that cannot
        // resume a cut PATCH (distribution) then keeps a session the rerun continues.
        const grace = store && signal ? graceSignal(signal, UPLOAD_STOP_GRACE_MS) : undefined;
        try {
          const res = await this.send({
            method: "PATCH",
            url: location,
            headers: { "content-type": "application/octet-stream", "content-length": String(to - from), "content-range": `${from}-${to - 1}` },
            body: () => body.body(from, to),
            ok: [202, 204],
            kind: "upload",
            what,
            signal: grace?.signal ?? signal,
          });
          await dumpBody(res.body);
          const loc = header(res.headers, "location");
          if (loc) location = new URL(loc, res.url).href;
          confirmed = to;
          body.confirm(to);
          attempt = 0;
          // Recorded before the next chunk goes out: a kill during it finds this session and offset.
          await store?.save({ location, offset: confirmed });
        } catch (err) {
          if (signal?.aborted) throw err;
          if (signal?.aborted || !isRetryableNetworkError(err) || attempt >= this.registry.retries) throw err;
          await this.waitRetry(attempt++, signal);
          ({ location, offset: confirmed } = await this.recoverUpload(location, confirmed, body, err, what, signal));
          body.confirm(confirmed);
        } finally {
          grace?.dispose();
        }
      }
      const res = await this.send({ method: "PUT", url: withDigest(location, desc.digest), headers: { "content-length": "0" }, body: new Uint8Array(0), retry: false, ok: [201, 204], kind: "upload", what, signal });
      await dumpBody(res.body);
      await store?.clear();
    } catch (err) {
      // With a store, a session that a rerun can continue (stopped, or failed in a way a retry may
      // fix) is kept, its offset recorded; otherwise (e.g. the stream failed verification) it is cancelled.
      if (!store || (!signal?.aborted && !isRetryableNetworkError(err))) {
        await this.cancelUpload(location);
        await store?.clear();
      }
      throw err;
    }
  }

  /**
   * After a failed chunk: where the upload goes on. The registry's offset when it still has the
   * session and the bytes from there can be produced again; else (distribution drops a session
   * whose PATCH was cut: the bytes it kept no longer match the offset in its `_state`) a new
   * session from byte 0, when the source can be read again.
   */
  private async recoverUpload(location: string, confirmed: number, body: UploadBody, cause: unknown, what: string, signal?: AbortSignal): Promise<UploadSession> {
    let why: string;
    try {
      const status = await this.uploadOffset(location, what, signal);
      // distribution answers "0-0" for an empty upload as well as for one byte.
      const offset = status.offset === 1 && confirmed === 0 ? 0 : status.offset;
      if (offset >= 0 && body.canStartAt(offset)) return { location: status.location, offset };
      why = `the registry holds ${offset} bytes of the upload, and airlock no longer holds the bytes from there`;
    } catch (err) {
      if (!isSessionGone(err)) throw err;
      why = "the registry dropped the upload session (distribution does so when a chunk is cut off mid-request)";
    }
    if (!body.seekable) throw new AirlockError("ERR_REGISTRY", `${what}: cannot resume the upload: ${why}, and the blob's source cannot be read again; retry the copy`, { cause, retryable: true });
    await this.cancelUpload(location);
    return { location: await this.startUpload(what, signal), offset: 0 };
  }

  /** Continues the session an earlier run recorded in `store`, or returns undefined when the registry no longer has it. */
  private async continueSession(store: UploadSessionStore, body: UploadBody, what: string, signal?: AbortSignal): Promise<UploadSession | undefined> {
    const saved = store.load();
    if (!saved) return undefined;
    let status: UploadSession;
    try {
      status = await this.uploadOffset(saved.location, what, signal);
    } catch (err) {
      if (!isSessionGone(err)) throw err;
      await store.clear();
      return undefined;
    }
    const offset = status.offset === 1 && saved.offset === 0 ? 0 : status.offset;
    if (offset <= 0 || offset > body.size) {
      await this.cancelUpload(status.location);
      await store.clear();
      return undefined;
    }
    // The bytes the registry holds are read (the caller's verification sees every byte) but not sent.
    await body.skipTo(offset);
    return { location: status.location, offset };
  }

  /** Lists the repository's tags, following `Link` pagination. Throws ERR_IMAGE_NOT_FOUND for an unknown repository. */
  async listTags(options: ListOptions = {}): Promise<string[]> {
    const n = options.pageSize ?? LIST_PAGE_SIZE;
    return paginate(this.conn, `/v2/${this.path}/tags/list?n=${n}`, "tags", {
      scopes: this.scopes,
      repository: this.path,
      kind: "tags",
      what: `listing the tags of ${this.name}`,
      signal: options.signal,
    });
  }

  /**
   * Lists the manifests that refer to `digest` (their `subject`): the referrers API
   * (`GET /v2/NAME/referrers/DIGEST`), or, where the registry lacks it, the tag schema
   * (`sha256-HEX` tag holding an index). Filtered by `artifactType` when given.
   * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
   */
  async referrers(digest: Digest, options: { artifactType?: string; signal?: AbortSignal } = {}): Promise<Descriptor[]> {
    const what = `listing the referrers of ${digest} in ${this.name}`;
    const filter = (ds: Descriptor[]) => (options.artifactType ? ds.filter((d) => d.artifactType === options.artifactType) : ds);
    const q = options.artifactType ? `?${new URLSearchParams({ artifactType: options.artifactType })}` : "";
    const out: Descriptor[] = [];
    let url: string | undefined = `/v2/${this.path}/referrers/${digest}${q}`;
    let first = true;
    while (url !== undefined) {
      const res = await this.send({ method: "GET", url, headers: { accept: MediaType.OCIIndex }, ok: first ? [200, 404] : [200], kind: "referrers", what, signal: options.signal });
      if (res.status === 404) {
        await dumpBody(res.body);
        return filter(await this.referrersByTag(digest, options.signal));
      }
      first = false;
      const bytes = await readBody(res.body, MAX_MANIFEST_SIZE, true, what);
      const index = Manifest.parse(bytes, { mediaType: MediaType.OCIIndex, what: `${what}: the answer` });
      out.push(...index.index.manifests);
      url = nextLink(res.headers.link, res.url);
    }
    return filter(out);
  }

  private async referrersByTag(digest: Digest, signal?: AbortSignal): Promise<Descriptor[]> {
    const tag = `${digest.slice(0, digest.indexOf(":"))}-${digestHex(digest)}`;
    try {
      const m = await this.getParsedManifest(tag, signal);
      return m.isIndex ? m.index.manifests : [];
    } catch (err) {
      if (err instanceof AirlockError && err.code === "ERR_IMAGE_NOT_FOUND") return [];
      throw err;
    }
  }
}

/**
 * A signal that aborts `ms` after `signal` does (a grace period for the request in flight);
 * `dispose` when the request is over.
 */
function graceSignal(signal: AbortSignal, ms: number): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => {
    timer = setTimeout(() => controller.abort(signal.reason), ms);
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      signal.removeEventListener("abort", onAbort);
      if (timer) clearTimeout(timer);
    },
  };
}

/** Whether a failed upload request means the registry no longer has the session (404, BLOB_UPLOAD_UNKNOWN / _INVALID, 416). */
function isSessionGone(err: unknown): boolean {
  if (!(err instanceof RegistryError)) return false;
  return err.status === 404 || err.status === 416 || err.errors.some((e) => e.code === "BLOB_UPLOAD_UNKNOWN" || e.code === "BLOB_UPLOAD_INVALID");
}

function withDigest(location: string, digest: string): string {
  const u = new URL(location);
  u.searchParams.set("digest", digest);
  return u.href;
}
