/**
 * An OCI distribution-spec registry server on node:http (or node:https): pull, push (monolithic,
 * chunked, cross-repository mount), content discovery (tags, `_catalog`, referrers) and content
 * management (DELETE of manifests and tags, when enabled), over a {@link RegistryStore}.
 *
 * The server checks the protocol — names, digests, ranges, manifests and what they reference —
 * and the store keeps content. Every name and digest is validated before it reaches the store,
 * every upload is verified against its digest before it becomes a blob, and every error is
 * answered in the spec's JSON format with the spec's code.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
import { promises as fs } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { pipeline } from "node:stream/promises";
import { AirlockError, type Descriptor, type Digest, Manifest, MAX_MANIFEST_SIZE, MediaType, parseDigest } from "@airlock/core";
import { Htpasswd, parseBasicAuth } from "./auth.js";
import { RegistryError, toRegistryError } from "./errors.js";
import { clfDate, parseContentRange, parseListenAddress, parseRange, readBody } from "./http.js";
import { isRepositoryName, isTag } from "./names.js";
import { BufferPool, openSpan, sendSpans } from "./send.js";
import { hasBlobFiles, isWritableStore, type RegistryStore, type WritableRegistryStore } from "./store/types.js";
import { Uploads } from "./uploads.js";

/** Options of {@link createRegistryServer}. */
export interface RegistryServerOptions {
  /** Where repositories live. A store that is not writable makes the server read-only. */
  store: RegistryStore;
  /** Refuse every write (405 DENIED). */
  readOnly?: boolean;
  /** Allow DELETE of manifests and tags (otherwise 405 UNSUPPORTED, as the spec allows). */
  deleteEnabled?: boolean;
  /** Require HTTP basic authentication against an htpasswd file of bcrypt entries. */
  auth?: { htpasswdFile: string; realm?: string };
  /** Serve HTTPS with this certificate and key (PEM files). */
  tls?: { cert: string; key: string };
  /** Receives one access-log line per request, and a line per server fault. */
  log?: (line: string) => void;
}

/** Where a started server listens. */
export interface ListeningAddress {
  /** The base URL, `http://HOST:PORT` or `https://HOST:PORT`. */
  url: string;
  /** `HOST:PORT`, as it appears in image references. */
  host: string;
}

/** A registry server: start it with `listen`, stop it with `close`. */
export interface RegistryServer {
  /** Starts listening on `addr` (`HOST:PORT`, `:PORT`, `PORT`; port 0 picks a free one). */
  listen(addr: string): Promise<ListeningAddress>;
  /**
   * Stops accepting connections, lets requests in flight finish (for at most `graceMs`, default
   * 5 s, then cuts them), drops every upload session and removes its files.
   */
  close(graceMs?: number): Promise<void>;
}

const API_VERSION_HEADER = "Docker-Distribution-API-Version";
const WRITE_METHODS = new Set(["PUT", "POST", "PATCH", "DELETE"]);
/**
 * No limit on how long a request may take (Node's default cuts requests after 5 minutes, which a
 * large layer over a slow link needs); headers must still arrive within a minute.
 */
const SERVER_OPTIONS = { requestTimeout: 0, headersTimeout: 60_000 };
/** Pages of tags and repositories are at most this long (a `Link` header leads on). */
const MAX_PAGE = 10_000;

type RouteName = "base" | "catalog" | "tags" | "manifest" | "uploads" | "upload" | "blob" | "referrers";

/** Routes, tried in order; the greedy name group makes the last `/manifests/`, `/blobs/`… win. */
const ROUTES: [RegExp, RouteName, readonly string[]][] = [
  [/^\/v2\/?$/, "base", ["GET", "HEAD"]],
  [/^\/v2\/_catalog$/, "catalog", ["GET"]],
  [/^\/v2\/(.+)\/tags\/list$/, "tags", ["GET"]],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, "manifest", ["GET", "HEAD", "PUT", "DELETE"]],
  [/^\/v2\/(.+)\/blobs\/uploads\/?$/, "uploads", ["POST"]],
  [/^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, "upload", ["GET", "PATCH", "PUT", "DELETE"]],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, "blob", ["GET", "HEAD", "DELETE"]],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, "referrers", ["GET"]],
];

/** One request being answered. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  query: URLSearchParams;
  /** Body bytes sent, for the access log. */
  sent: number;
  user: string | undefined;
}

/** Creates a registry server over `options.store`; nothing listens until {@link RegistryServer.listen}. */
export function createRegistryServer(options: RegistryServerOptions): RegistryServer {
  const store = options.store;
  const writable: WritableRegistryStore | undefined = !options.readOnly && isWritableStore(store) ? store : undefined;
  const log = options.log;
  let uploads: Uploads | undefined;
  let htpasswd: Htpasswd | undefined;
  let server: Server | undefined;
  const realm = options.auth?.realm ?? "airlock";
  const sockets = new Set<Socket>();
  const files = hasBlobFiles(store) ? store : undefined;
  const buffers = new BufferPool();

  // ---- responses -------------------------------------------------------------------------------

  const sendJSON = (x: Exchange, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const bytes = Buffer.from(JSON.stringify(body));
    x.res.writeHead(status, { "Content-Type": "application/json", "Content-Length": String(bytes.length), ...headers });
    if (x.req.method !== "HEAD") x.sent += bytes.length;
    x.res.end(bytes);
  };

  const sendEmpty = (x: Exchange, status: number, headers: Record<string, string> = {}) => {
    x.res.writeHead(status, { "Content-Length": "0", ...headers });
    x.res.end();
  };

  const sendError = (x: Exchange, err: unknown) => {
    const e = toRegistryError(err);
    if (e.status >= 500) log?.(`error: ${x.req.method} ${x.req.url}: ${(e.cause as Error | undefined)?.message ?? e.message}`);
    if (x.res.headersSent) {
      x.res.destroy();
      return;
    }
    const headers: Record<string, string> = {};
    if (e.status === 401) headers["WWW-Authenticate"] = `Basic realm="${realm}"`;
    // A body the handler did not read is not worth reading: close the connection instead.
    if (!x.req.complete) headers.Connection = "close";
    sendJSON(x, e.status, e.body(), headers);
  };

  // ---- validation ------------------------------------------------------------------------------

  const repositoryName = (raw: string): string => {
    const name = decode(raw);
    if (name === undefined || !isRepositoryName(name)) {
      throw new RegistryError(400, "NAME_INVALID", `invalid repository name ${JSON.stringify(name ?? raw)}: use lowercase letters and digits, separated by . _ __ - and /`, { name: name ?? raw });
    }
    return name;
  };

  /** Validates a digest from the path (already percent-decoded) or the query. */
  const digestParam = (s: string | null | undefined, what: string): Digest => {
    if (s === null || s === undefined || s === "") throw new RegistryError(400, "DIGEST_INVALID", `${what} is missing`);
    try {
      return parseDigest(s);
    } catch (err) {
      throw new RegistryError(400, "DIGEST_INVALID", `${what}: ${(err as Error).message}`, { digest: s });
    }
  };

  const needWritable = (): WritableRegistryStore => {
    if (!writable) throw new RegistryError(405, "DENIED", "this registry is read-only: it does not accept pushes or deletes");
    return writable;
  };

  const needUploads = (): Uploads => {
    if (!uploads) throw new RegistryError(405, "DENIED", "this registry is read-only: it does not accept pushes");
    return uploads;
  };

  // ---- handlers --------------------------------------------------------------------------------

  const handleManifest = async (x: Exchange, name: string, rawRef: string) => {
    const ref = decode(rawRef) ?? rawRef;
    const method = x.req.method;
    const byDigest = ref.includes(":");
    const digest = byDigest ? digestParam(ref, `manifest reference ${JSON.stringify(ref)}`) : undefined;
    if (method === "PUT") return putManifest(x, name, ref, digest);
    if (method === "DELETE") return deleteManifest(x, name, ref, digest);
    const found = digest !== undefined || isTag(ref) ? await store.getManifest(name, ref) : undefined;
    if (!found) throw await manifestUnknown(name, ref);
    const { descriptor, bytes } = found;
    const headers = { "Content-Type": descriptor.mediaType, "Content-Length": String(bytes.length), "Docker-Content-Digest": descriptor.digest, ETag: `"${descriptor.digest}"` };
    x.res.writeHead(200, headers);
    if (method === "HEAD") return void x.res.end();
    x.sent += bytes.length;
    x.res.end(bytes);
  };

  const manifestUnknown = async (name: string, ref: string): Promise<RegistryError> => {
    if (!(await store.hasRepository(name))) return new RegistryError(404, "NAME_UNKNOWN", `repository ${name} is not known to this registry`, { name });
    return new RegistryError(404, "MANIFEST_UNKNOWN", `manifest ${ref} is not in repository ${name}`, { name, reference: ref });
  };

  const putManifest = async (x: Exchange, name: string, ref: string, digest: Digest | undefined) => {
    const w = needWritable();
    if (digest === undefined && !isTag(ref)) {
      throw new RegistryError(400, "MANIFEST_INVALID", `invalid tag ${JSON.stringify(ref)}: a tag is up to 128 letters, digits, _ . and -, not starting with . or -`);
    }
    const bytes = await readBody(x.req, MAX_MANIFEST_SIZE, `the manifest for ${name}:${ref}`);
    const contentType = x.req.headers["content-type"];
    let manifest: Manifest;
    try {
      manifest = Manifest.parse(bytes, { mediaType: contentType, expected: digest, what: `the manifest pushed as ${name}:${ref}` });
    } catch (err) {
      if (err instanceof AirlockError && err.code === "ERR_DIGEST_MISMATCH") {
        throw new RegistryError(400, "DIGEST_INVALID", err.message, { digest }, { cause: err });
      }
      if (err instanceof AirlockError) throw new RegistryError(400, "MANIFEST_INVALID", err.message, undefined, { cause: err });
      throw err;
    }
    // Every descriptor but `subject` must name content the repository holds (spec: "Push").
    const missing: Descriptor[] = [];
    if (manifest.isIndex) {
      for (const child of manifest.index.manifests) {
        if (!(await store.getManifest(name, child.digest))) missing.push(child);
      }
    } else {
      for (const blob of manifest.blobs()) {
        if (blob.urls && blob.urls.length > 0) continue; // a foreign layer, fetched from its URLs
        if ((await store.statBlob(name, blob.digest)) === undefined) missing.push(blob);
      }
    }
    if (missing.length > 0) {
      const list = missing.map((d) => d.digest);
      throw new RegistryError(400, "MANIFEST_BLOB_UNKNOWN", `the manifest for ${name}:${ref} references ${list.length === 1 ? "content" : `${list.length} items`} not in the repository (${list.join(", ")}); push ${manifest.isIndex ? "the child manifests" : "the blobs"} first`, list[0]);
    }
    const artifactType = (manifest.json as { artifactType?: unknown }).artifactType;
    await w.putManifest(name, { bytes: Buffer.from(manifest.bytes), mediaType: manifest.mediaType, digest: manifest.digest, artifactType: typeof artifactType === "string" ? artifactType : undefined }, digest ? undefined : ref);
    const headers: Record<string, string> = { Location: `/v2/${name}/manifests/${manifest.digest}`, "Docker-Content-Digest": manifest.digest };
    const subject = manifest.json.subject;
    if (subject) headers["OCI-Subject"] = subject.digest;
    sendEmpty(x, 201, headers);
  };

  const deleteManifest = async (x: Exchange, name: string, ref: string, digest: Digest | undefined) => {
    const w = needWritable();
    if (!options.deleteEnabled) throw new RegistryError(405, "UNSUPPORTED", "deleting manifests and tags is disabled on this registry");
    let deleted = false;
    if (digest !== undefined) deleted = await w.deleteManifest(name, digest);
    else if (isTag(ref)) deleted = await w.deleteTag(name, ref);
    if (!deleted) throw await manifestUnknown(name, ref);
    sendEmpty(x, 202);
  };

  const handleBlob = async (x: Exchange, name: string, rawDigest: string) => {
    const digest = digestParam(decode(rawDigest) ?? rawDigest, "blob digest");
    if (x.req.method === "DELETE") {
      needWritable();
      throw new RegistryError(405, "UNSUPPORTED", "deleting blobs is not supported: blobs are shared between repositories; delete manifests instead");
    }
    const size = await store.statBlob(name, digest);
    if (size === undefined) throw new RegistryError(404, "BLOB_UNKNOWN", `blob ${digest} is not in repository ${name}`, digest);
    const headers: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      "Docker-Content-Digest": digest,
      "Accept-Ranges": "bytes",
      ETag: `"${digest}"`,
      "Cache-Control": "max-age=31536000",
    };
    const range = parseRange(x.req.headers.range, size);
    if (range === "unsatisfiable") {
      throw Object.assign(new RegistryError(416, "SIZE_INVALID", `range ${x.req.headers.range} is outside blob ${digest} of ${size} bytes`), { rangeSize: size });
    }
    const length = range ? range.end - range.start + 1 : size;
    headers["Content-Length"] = String(length);
    if (range) headers["Content-Range"] = `bytes ${range.start}-${range.end}/${size}`;
    if (x.req.method === "HEAD") {
      x.res.writeHead(range ? 206 : 200, headers);
      return void x.res.end();
    }
    if (files) {
      const spans = length === 0 ? [] : await files.blobFiles(digest, range ?? { start: 0, end: size - 1 });
      // Open the first file before answering, so that a missing one is an error response.
      const first = spans.length > 0 ? await openSpan(spans[0]!) : undefined;
      x.res.writeHead(range ? 206 : 200, headers);
      try {
        await sendSpans(x.res, spans, first, buffers, (n) => {
          x.sent += n;
        });
      } catch {
        // The client went away, or a file could not be read: the connection is cut either way.
        x.res.destroy();
      }
      return;
    }
    const stream = await store.openBlob(digest, range);
    x.res.writeHead(range ? 206 : 200, headers);
    stream.on("data", (c: Buffer) => {
      x.sent += c.length;
    });
    try {
      await pipeline(stream, x.res);
    } catch {
      // The client went away, or the file could not be read: the connection is cut either way.
      x.res.destroy();
    }
  };

  const uploadLocation = (name: string, id: string) => `/v2/${name}/blobs/uploads/${id}`;
  const uploadRange = (size: number) => `0-${size > 0 ? size - 1 : 0}`;

  const handleUploads = async (x: Exchange, name: string) => {
    const w = needWritable();
    const up = needUploads();
    const mount = x.query.get("mount");
    if (mount !== null) {
      const digest = digestParam(mount, "mount digest");
      const from = x.query.get("from");
      if (from !== null && isRepositoryName(from) && (await w.mountBlob(name, digest, from))) {
        return sendEmpty(x, 201, { Location: `/v2/${name}/blobs/${digest}`, "Docker-Content-Digest": digest });
      }
    }
    const digestRaw = x.query.get("digest");
    if (digestRaw !== null && mount === null) {
      // Monolithic upload in a single POST (end-4b).
      const digest = digestParam(digestRaw, "digest");
      const session = await up.create(name);
      try {
        await up.append(session, x.req, contentLength(x.req));
      } catch (err) {
        await up.cancel(session);
        throw err;
      }
      const path = await up.finish(session, digest);
      await w.commitBlobFile(name, path, digest);
      return sendEmpty(x, 201, { Location: `/v2/${name}/blobs/${digest}`, "Docker-Content-Digest": digest });
    }
    const session = await up.create(name);
    x.req.resume();
    sendEmpty(x, 202, { Location: uploadLocation(name, session.id), "Docker-Upload-UUID": session.id, Range: uploadRange(0) });
  };

  const handleUpload = async (x: Exchange, name: string, rawId: string) => {
    const w = needWritable();
    const up = needUploads();
    const id = decode(rawId) ?? rawId;
    const session = up.get(name, id);
    const method = x.req.method;
    const statusHeaders = () => ({ Location: uploadLocation(name, session.id), "Docker-Upload-UUID": session.id, Range: uploadRange(session.size) });
    if (method === "GET") return sendEmpty(x, 204, statusHeaders());
    if (method === "DELETE") {
      await up.cancel(session);
      return sendEmpty(x, 204);
    }
    // A PUT names the digest before any byte of it is written.
    const digest = method === "PUT" ? digestParam(x.query.get("digest"), "the digest query parameter of the closing PUT") : undefined;
    const range = parseContentRange(first(x.req.headers["content-range"]));
    if (range && range.start !== session.size) {
      throw Object.assign(
        new RegistryError(416, "BLOB_UPLOAD_INVALID", `chunk ${range.start}-${range.end} does not continue upload ${session.id}, which holds ${session.size} bytes; send the chunk starting at ${session.size}`),
        { headers: statusHeaders() },
      );
    }
    const length = range ? range.end - range.start + 1 : contentLength(x.req);
    if (method === "PATCH" || length !== 0) await up.append(session, x.req, length);
    if (method === "PATCH") return sendEmpty(x, 202, statusHeaders());
    const path = await up.finish(session, digest!);
    await w.commitBlobFile(name, path, digest!);
    sendEmpty(x, 201, { Location: `/v2/${name}/blobs/${digest}`, "Docker-Content-Digest": digest! });
  };

  const handleTags = async (x: Exchange, name: string) => {
    const tags = await store.tags(name);
    if (tags === undefined) throw new RegistryError(404, "NAME_UNKNOWN", `repository ${name} is not known to this registry`, { name });
    const page = paginate(tags, x.query);
    const headers: Record<string, string> = {};
    if (page.next !== undefined) headers.Link = `</v2/${name}/tags/list?last=${encodeURIComponent(page.next)}&n=${page.n}>; rel="next"`;
    sendJSON(x, 200, { name, tags: page.items }, headers);
  };

  const handleCatalog = async (x: Exchange) => {
    const page = paginate(await store.repositories(), x.query);
    const headers: Record<string, string> = {};
    if (page.next !== undefined) headers.Link = `</v2/_catalog?last=${encodeURIComponent(page.next)}&n=${page.n}>; rel="next"`;
    sendJSON(x, 200, { repositories: page.items }, headers);
  };

  const handleReferrers = async (x: Exchange, name: string, rawDigest: string) => {
    const digest = digestParam(decode(rawDigest) ?? rawDigest, "referrers digest");
    let manifests = await store.referrers(name, digest);
    const headers: Record<string, string> = { "Content-Type": MediaType.OCIIndex };
    const artifactType = x.query.get("artifactType");
    if (artifactType !== null) {
      manifests = manifests.filter((d) => d.artifactType === artifactType);
      headers["OCI-Filters-Applied"] = "artifactType";
    }
    sendJSON(x, 200, { schemaVersion: 2, mediaType: MediaType.OCIIndex, manifests }, headers);
  };

  // ---- dispatch --------------------------------------------------------------------------------

  const authenticate = async (x: Exchange): Promise<void> => {
    if (!htpasswd) return;
    const creds = parseBasicAuth(first(x.req.headers.authorization));
    if (creds && (await htpasswd.verify(creds.username, creds.password))) {
      x.user = creds.username;
      return;
    }
    throw new RegistryError(401, "UNAUTHORIZED", creds ? "invalid username or password" : "authentication required: log in with the registry's credentials");
  };

  const dispatch = async (x: Exchange, path: string) => {
    await authenticate(x);
    const method = x.req.method ?? "GET";
    for (const [re, route, methods] of ROUTES) {
      const m = re.exec(path);
      if (!m) continue;
      if (!methods.includes(method)) {
        throw new RegistryError(405, "UNSUPPORTED", `${method} is not supported on ${path}`);
      }
      if (WRITE_METHODS.has(method)) needWritable();
      if (route === "base") return sendJSON(x, 200, {});
      if (route === "catalog") return handleCatalog(x);
      const name = repositoryName(m[1]!);
      switch (route) {
        case "tags":
          return handleTags(x, name);
        case "manifest":
          return handleManifest(x, name, m[2]!);
        case "uploads":
          return handleUploads(x, name);
        case "upload":
          return handleUpload(x, name, m[2]!);
        case "blob":
          return handleBlob(x, name, m[2]!);
        case "referrers":
          return handleReferrers(x, name, m[2]!);
      }
    }
    throw new RegistryError(404, "UNSUPPORTED", `no registry endpoint at ${path}; the API is under /v2/`);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const x: Exchange = { req, res, query: new URLSearchParams(q < 0 ? "" : url.slice(q + 1)), sent: 0, user: undefined };
    res.setHeader(API_VERSION_HEADER, "registry/2.0");
    res.once("close", () => {
      if (!log) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const status = res.headersSent ? res.statusCode : 0;
      log(`${req.socket.remoteAddress ?? "-"} - ${x.user ?? "-"} [${clfDate(new Date())}] "${req.method} ${url} HTTP/${req.httpVersion}" ${status} ${x.sent} ${ms.toFixed(1)}ms${res.writableFinished ? "" : " (aborted)"}`);
    });
    dispatch(x, path).catch((err: unknown) => {
      const extra = err as { headers?: Record<string, string>; rangeSize?: number };
      if (extra.headers && !res.headersSent) for (const [k, v] of Object.entries(extra.headers)) res.setHeader(k, v);
      if (extra.rangeSize !== undefined && !res.headersSent) res.setHeader("Content-Range", `bytes */${extra.rangeSize}`);
      sendError(x, err);
    });
  };

  return {
    async listen(addr: string): Promise<ListeningAddress> {
      if (server) throw new AirlockError("ERR_INVALID_ARGUMENT", "the registry server is already listening; create another server to listen on a second address");
      const { host, port } = parseListenAddress(addr);
      if (options.auth) htpasswd = await Htpasswd.load(options.auth.htpasswdFile, (m) => log?.(`warning: ${m}`));
      if (writable) uploads = await Uploads.open(writable.uploadDir);
      if (options.tls) {
        const [cert, key] = await Promise.all([readPem(options.tls.cert, "certificate"), readPem(options.tls.key, "key")]);
        server = createHttpsServer({ cert, key, ...SERVER_OPTIONS }, onRequest);
      } else {
        server = createHttpServer(SERVER_OPTIONS, onRequest);
      }
      const srv = server;
      srv.on("connection", (s: Socket) => {
        sockets.add(s);
        s.once("close", () => sockets.delete(s));
      });
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(port, host, () => {
          srv.off("error", reject);
          resolve();
        });
      }).catch(async (err: unknown) => {
        server = undefined;
        await uploads?.close();
        throw new AirlockError("ERR_IO", `cannot listen on ${addr}: ${(err as Error).message}`, { cause: err });
      });
      const a = srv.address() as AddressInfo;
      const shown = host === undefined || host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
      const hostPort = `${shown}:${a.port}`;
      return { url: `${options.tls ? "https" : "http"}://${hostPort}`, host: hostPort };
    },

    async close(graceMs = 5000): Promise<void> {
      const srv = server;
      server = undefined;
      if (srv) {
        const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
        srv.closeIdleConnections?.();
        const timer = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, graceMs);
        await closed;
        clearTimeout(timer);
      }
      await uploads?.close();
      uploads = undefined;
    },
  };
}

function decode(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function first(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

/** The request's Content-Length, when it has one. */
function contentLength(req: IncomingMessage): number | undefined {
  const h = req.headers["content-length"];
  if (h === undefined || req.headers["transfer-encoding"] !== undefined) return undefined;
  const n = Number(h);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** A page of a sorted list after `last`, of at most `n` items; `next` is set when more follow. */
function paginate(all: string[], query: URLSearchParams): { items: string[]; next: string | undefined; n: number } {
  const last = query.get("last");
  const nRaw = query.get("n");
  const parsed = nRaw === null || !/^\d+$/.test(nRaw) ? undefined : Number(nRaw);
  const n = parsed === undefined ? undefined : Math.min(parsed, MAX_PAGE);
  let items = last === null ? all : all.filter((t) => t > last);
  if (n === undefined) return { items, next: undefined, n: 0 };
  if (n === 0) return { items: [], next: undefined, n };
  const more = items.length > n;
  items = items.slice(0, n);
  return { items, next: more ? items.at(-1) : undefined, n };
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await fs.readFile(path);
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read the TLS ${what} ${path}: ${(cause as Error).message}`, { cause });
  }
}
