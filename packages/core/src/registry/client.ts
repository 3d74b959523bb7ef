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
import type { DockerContext } from "../transports/types.js";
import { repositoryScope } from "./auth.js";
import { type OpenedBody, PieceReader, ResumableBlobStream, RetainedChunk } from "./blobio.js";
import { RegistryError } from "./errors.js";
import { type ConnectionOptions, dumpBody, header, readBody, RegistryConnection, type RegistryRequest, type RegistryResponse } from "./http.js";
import { DEFAULT_RETRIES, isRetryableNetworkError, retryDelay, sleep } from "./retry.js";

/** Blobs up to this size are uploaded with POST + one PUT (and retried whole). */
export const MONOLITHIC_UPLOAD_MAX = 16 * 1024 * 1024;

/** Larger blobs are uploaded in PATCH chunks of this size; a failed chunk resumes where the registry says it stopped. */
export const UPLOAD_CHUNK_SIZE = 16 * 1024 * 1024;

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

  constructor(domain: string, ctx: DockerContext = {}, options: RegistryClientOptions = {}) {
    this.domain = domain;
    this.options = options;
    this.retries = ctx.retryTimes ?? DEFAULT_RETRIES;
    this.retryDelayMs = ctx.retryDelayMs;
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
  async getBlob(digest: string, options: { offset?: number; signal?: AbortSignal } = {}): Promise<BlobDownload> {
    const offset = options.offset ?? 0;
    const first = await this.openBlob(digest, offset, options.signal);
    const stream = new ResumableBlobStream(first, offset, {
      reopen: (at, signal) => this.openBlob(digest, at, signal),
      signal: options.signal,
      what: `reading blob ${digest} of ${this.name}`,
      ...(this.registry.options.resumeDelayMs === undefined ? {} : { resumeDelayMs: this.registry.options.resumeDelayMs }),
    });
    return first.size === undefined ? { stream } : { stream, size: first.size };
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
   * with Content-Range + PUT; a failed chunk resumes from the offset the registry reports.
   */
  async putBlob(desc: Pick<Descriptor, "digest" | "size">, stream: Readable, signal?: AbortSignal): Promise<void> {
    const what = `uploading blob ${desc.digest} to ${this.name}`;
    const reader = new PieceReader(stream);
    try {
      if (desc.size <= (this.registry.options.monolithicUploadMax ?? MONOLITHIC_UPLOAD_MAX)) await this.uploadMonolithic(desc, reader, what, signal);
      else await this.uploadChunked(desc, reader, what, signal);
    } catch (err) {
      await reader.close();
      throw err;
    }
  }

  private async uploadMonolithic(desc: Pick<Descriptor, "digest" | "size">, reader: PieceReader, what: string, signal?: AbortSignal): Promise<void> {
    const chunk = new RetainedChunk(reader, desc.size, true, what);
    for (let attempt = 0; ; attempt++) {
      const location = await this.startUpload(what, signal);
      try {
        const res = await this.send({
          method: "PUT",
          url: withDigest(location, desc.digest),
          headers: { "content-type": "application/octet-stream", "content-length": String(desc.size) },
          body: () => chunk.body(),
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

  private async uploadChunked(desc: Pick<Descriptor, "digest" | "size">, reader: PieceReader, what: string, signal?: AbortSignal): Promise<void> {
    const chunkSize = this.registry.options.uploadChunkSize ?? UPLOAD_CHUNK_SIZE;
    let location = await this.startUpload(what, signal);
    try {
      let offset = 0;
      let last: RetainedChunk | undefined;
      while (offset < desc.size) {
        const chunkStart = offset;
        const len = Math.min(chunkSize, desc.size - offset);
        const chunk = new RetainedChunk(reader, len, chunkStart + len === desc.size, what);
        last = chunk;
        let from = 0;
        for (let attempt = 0; from < len; attempt++) {
          try {
            const res = await this.send({
              method: "PATCH",
              url: location,
              headers: {
                "content-type": "application/octet-stream",
                "content-length": String(len - from),
                "content-range": `${chunkStart + from}-${chunkStart + len - 1}`,
              },
              body: () => chunk.body(from),
              ok: [202, 204],
              kind: "upload",
              what,
              signal,
            });
            await dumpBody(res.body);
            const loc = header(res.headers, "location");
            if (loc) location = new URL(loc, res.url).href;
            break;
          } catch (err) {
            if (signal?.aborted || !isRetryableNetworkError(err) || attempt >= this.registry.retries) throw err;
            await this.waitRetry(attempt, signal);
            const status = await this.uploadOffset(location, what, signal);
            location = status.location;
            // distribution answers "0-0" for an empty upload as well as for one byte.
            const reported = status.offset === 1 && chunkStart === 0 && from === 0 ? 0 : status.offset;
            if (reported < chunkStart || reported > chunkStart + len) {
              throw new AirlockError("ERR_REGISTRY", `${what}: cannot resume the upload: the registry holds ${reported} bytes, but airlock still has only bytes ${chunkStart}–${chunkStart + len}; retry the copy`, { cause: err, retryable: true });
            }
            from = reported - chunkStart;
          }
        }
        offset = chunkStart + len;
      }
      // The end of the stream (where the copy pipeline verifies the digest) before the commit.
      if (last) for await (const _ of last.bytes(last.length)) void _;
      const res = await this.send({ method: "PUT", url: withDigest(location, desc.digest), headers: { "content-length": "0" }, body: new Uint8Array(0), retry: false, ok: [201, 204], kind: "upload", what, signal });
      await dumpBody(res.body);
    } catch (err) {
      await this.cancelUpload(location);
      throw err;
    }
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

function withDigest(location: string, digest: string): string {
  const u = new URL(location);
  u.searchParams.set("digest", digest);
  return u.href;
}
