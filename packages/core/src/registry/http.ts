/**
 * The HTTP layer of the registry client: one {@link RegistryConnection} per registry host. It
 * pings `/v2/` once to learn the scheme (HTTPS, or HTTP where allowed) and the authentication
 * challenge, then sends requests with the right `Authorization`, follows redirects (without
 * credentials to other hosts), retries transient failures with backoff, and maps failures onto
 * {@link RegistryError}s.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
import { setMaxListeners } from "node:events";
import type { Readable } from "node:stream";
import type { Agent, Dispatcher } from "undici";
import { AirlockError } from "../errors.js";
import { isLoopbackHost } from "../reference/docker.js";
import type { DockerContext } from "../transports/types.js";
import { basicAuthorization, type Challenge, mergeScopes, parseTokenResponse, parseWWWAuthenticate, type RegistryCredentials, TokenCache } from "./auth.js";
import { BulkPool, bulkSupported } from "./bulk.js";
import { lookupConfiguredCredentials } from "./registries-conf.js";
import { mapRegistryError, type RequestKind } from "./errors.js";
import { abortError, DEFAULT_RETRIES, isRetryableNetworkError, isRetryableStatus, MAX_RETRY_WAIT_MS, parseRetryAfter, type RetryPolicy, retryDelay, sleep } from "./retry.js";
import { undici } from "./undici.js";
import { CERT_DIR_FLAG_HINT, isCertificateError, isClientCertificateRefused, isPlainHttpResponse, isTlsAlert, loadTlsSettings, secureContextFor, TLS_VERIFY_FLAG_HINT, type TlsSettings } from "./tls.js";

/** HTTP methods the client uses. */
export type HttpMethod = "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE";

/** Timeouts of one connection, in milliseconds. */
export interface Timeouts {
  /** Establishing a TCP/TLS connection (default 30 s). */
  connectMs?: number;
  /** Waiting for response headers once the request is sent (default 5 min: a registry may hash a large blob before it answers a PUT). */
  headersMs?: number;
  /** Longest pause between two pieces of a response body (default 2 min). */
  bodyMs?: number;
}

/** Options of a {@link RegistryConnection} beyond the user's {@link DockerContext}. */
export interface ConnectionOptions {
  timeouts?: Timeouts;
  /** Receives one line per request (method, URL without query, status). Never credentials. */
  log?: (line: string) => void;
  /** Replaces the auth-file lookup (tests). */
  lookupCredentials?: (name: string) => Promise<RegistryCredentials | undefined>;
}

/** One request through {@link RegistryConnection.send}. */
export interface RegistryRequest {
  method: HttpMethod;
  /** A path such as `/v2/NAME/manifests/TAG`, or an absolute URL (an upload Location). */
  url: string;
  headers?: Record<string, string>;
  /**
   * The body: bytes (the request may then be repeated), or a factory of a fresh stream (the
   * request is then sent once).
   */
  body?: Uint8Array | (() => Readable);
  /** Token scopes the request needs, e.g. `repository:NAME:pull`. */
  scopes: string[];
  /** Repository path whose credentials apply (namespaced auth-file keys). */
  repository?: string;
  /** Statuses that are success for this request; others become errors. */
  ok: number[];
  /** What the request is about (decides what a 404 means). */
  kind: RequestKind;
  /** What is being done, for messages: `reading manifest "1.0" of quay.io/org/app`. */
  what: string;
  signal?: AbortSignal | undefined;
  /** Follow 3xx redirects (default: GET and HEAD only). */
  followRedirects?: boolean;
  /** Whether to repeat on transient failures (default: true when the body can be repeated). */
  retry?: boolean;
}

/**
 * A response body: a readable stream that can also be discarded (see {@link dumpBody}) — the bulk
 * client's (GETs and HEADs on Node) or undici's.
 */
export type ResponseBody = Readable & { dump(options?: { limit?: number }): Promise<unknown> };

/** A response as it came, before {@link RegistryConnection.send} looked at its status. */
interface RawResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody;
}

/** A response whose status was one of the request's `ok` statuses; its body MUST be consumed or dumped. */
export interface RegistryResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody;
  /** The URL that answered (after redirects). */
  url: string;
}

/** Longest error body kept for a message. */
const ERROR_BODY_LIMIT = 64 * 1024;
/** Largest token response accepted (containers/image: 1 MiB). */
const TOKEN_BODY_LIMIT = 1024 * 1024;
/** Most redirects followed for one request. */
const MAX_REDIRECTS = 10;

const DEFAULT_USER_AGENT = "airlock";

/** The HTTPS attempt failed against a server that answered plain HTTP saying it speaks HTTPS. */
class TlsRefusedError extends Error {
  constructor(cause: unknown) {
    super("the server speaks HTTPS but the TLS connection failed", { cause });
  }
}

let debugLogger: ((line: string) => void) | undefined;

/**
 * Sets the process-wide debug logger of the registry client (the CLI's `--debug`): it receives one
 * line per request — method, URL without query, status — and never credentials or headers. A
 * connection's own `log` option takes precedence. Pass undefined to stop logging.
 */
export function setRegistryDebugLogger(log: ((line: string) => void) | undefined): void {
  debugLogger = log;
}

/** Returns the first value of a header. */
export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Reads a body as text, up to `limit` bytes (the rest is discarded); throws when `strict` and it is longer. */
export async function readBody(body: Readable, limit: number, strict = false, what = "response"): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (size + b.length > limit) {
      if (strict) {
        body.destroy();
        throw new AirlockError("ERR_MANIFEST_INVALID", `${what} is larger than the ${limit} bytes airlock accepts`);
      }
      chunks.push(b.subarray(0, limit - size));
      size = limit;
      body.destroy();
      break;
    }
    chunks.push(b);
    size += b.length;
  }
  return Buffer.concat(chunks, size);
}

/** Discards a response body so that the connection can be reused. */
export async function dumpBody(body: ResponseBody): Promise<void> {
  try {
    await body.dump({ limit: 256 * 1024 });
  } catch {
    // The connection is closed instead; nothing else to do.
  }
}

/**
 * A connection to one registry host: scheme detection, authentication, retries, error mapping.
 * Create one per host and side of a copy; {@link close} it when done.
 */
export class RegistryConnection {
  /** The registry host as it appears in references (`docker.io`, `127.0.0.1:5000`). */
  readonly domain: string;
  /** The host actually contacted (`registry-1.docker.io` for `docker.io`). */
  readonly host: string;
  private readonly ctx: DockerContext;
  private readonly options: ConnectionOptions;
  private readonly policy: RetryPolicy;
  private readonly tokens = new TokenCache();
  private readonly credentials = new Map<string, Promise<RegistryCredentials | undefined>>();
  private agent: Agent | undefined;
  private bulkPool: BulkPool | undefined;
  private tls: TlsSettings | undefined;
  private pinged: Promise<void> | undefined;
  private baseURL: URL | undefined;
  private challenge: Challenge | undefined;

  constructor(domain: string, host: string, ctx: DockerContext = {}, options: ConnectionOptions = {}) {
    this.domain = domain;
    this.host = host;
    this.ctx = ctx;
    this.options = options;
    this.policy = { retries: ctx.retryTimes ?? DEFAULT_RETRIES, delayMs: ctx.retryDelayMs };
  }

  /** The base URL after the ping, e.g. `https://quay.io` or `http://127.0.0.1:5000`. */
  get base(): string | undefined {
    return this.baseURL?.origin;
  }

  /** The authentication scheme the registry asked for at the ping (`basic`, `bearer`), if any. */
  get authScheme(): string | undefined {
    return this.challenge?.scheme;
  }

  /** Closes the connection pool. */
  async close(): Promise<void> {
    const a = this.agent;
    this.agent = undefined;
    this.bulkPool?.close();
    this.bulkPool = undefined;
    this.pinged = undefined;
    if (a) await a.close().catch(() => {});
  }

  /** Pings `GET /v2/` once (concurrent callers share it): learns the scheme and the challenge. */
  ping(signal?: AbortSignal): Promise<void> {
    if (!this.pinged) {
      this.pinged = this.doPing(signal);
      this.pinged.catch(() => {
        this.pinged = undefined;
      });
    }
    return this.pinged;
  }

  /** The TLS settings of this host (cert dir, `--tls-verify`, `--tls-details`), loaded once. */
  private async getTls(): Promise<TlsSettings> {
    if (this.tls) return this.tls;
    if (this.ctx.tlsDetails !== undefined && this.ctx.baseTls === undefined) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `${this.ctx.tlsDetails}: the TLS details file was not parsed; callers setting DockerContext.tlsDetails must set baseTls too`);
    }
    this.tls ??= await loadTlsSettings(this.host, { certDir: this.ctx.certDir, tlsVerify: this.ctx.tlsVerify, base: this.ctx.baseTls });
    return this.tls;
  }

  /** undici's pool, for requests with a body (and everything when the bulk client does not run here). */
  private async getAgent(): Promise<Agent> {
    if (this.agent) return this.agent;
    const tls = await this.getTls();
    const t = this.options.timeouts ?? {};
    const connect: Record<string, unknown> = { rejectUnauthorized: tls.verify };
    // One secure context for every connection: parsing the CAs per connection is slow.
    const secureContext = secureContextFor(tls);
    if (secureContext) connect.secureContext = secureContext;
    this.agent ??= new (undici().Agent)({
      connect,
      connectTimeout: t.connectMs ?? 30_000,
      headersTimeout: t.headersMs ?? 300_000,
      bodyTimeout: t.bodyMs ?? 120_000,
      keepAliveTimeout: 10_000,
    });
    return this.agent;
  }

  private async doPing(signal?: AbortSignal): Promise<void> {
    const allowHttp = this.ctx.tlsVerify === false || isLoopbackHost(this.domain);
    const what = `pinging container registry ${this.domain}`;
    const plainFirst = await this.plainHttpFirst();
    for (let attempt = 0; ; attempt++) {
      let res: RawResponse | undefined;
      let errorBody: string | undefined; // a body already read
      let base = new URL(`https://${this.host}`);
      if (plainFirst && attempt === 0) {
        // A registry on this machine with no TLS settings: most often plain HTTP, which answers
        // at once, where an HTTPS attempt would first fail its handshake (and build Node's root
        // store, ~25 ms). Anything but a registry's answer goes on to HTTPS as below.
        try {
          const plain = await this.request("GET", new URL(`http://${this.host}/v2/`), {}, undefined, signal);
          if (plain.statusCode === 200 || plain.statusCode === 401) {
            res = plain;
            base = new URL(`http://${this.host}`);
          } else await dumpBody(plain.body);
        } catch {
          if (signal?.aborted) throw abortError(signal, what);
        }
      }
      try {
        if (!res) {
          try {
            res = await this.request("GET", new URL("/v2/", base), {}, undefined, signal);
          } catch (httpsErr) {
            if (signal?.aborted || isCertificateError(httpsErr) || isTlsAlert(httpsErr) || !allowHttp) throw httpsErr;
            // An insecure (or loopback) registry may speak plain HTTP: try it right away.
            base = new URL(`http://${this.host}`);
            try {
              res = await this.request("GET", new URL("/v2/", base), {}, undefined, signal);
            } catch {
              throw httpsErr;
            }
            // The server says it speaks HTTPS (Go's and nginx's answers to plain HTTP on a TLS port):
            // the TLS failure is the one to report. A server that wants a client certificate hangs
            // up after a TLS 1.3 handshake, which a client sees only as a closed connection.
            if (res.statusCode === 400) {
              const body = (await readBody(res.body, ERROR_BODY_LIMIT)).toString("utf8");
              if (/HTTP request to an HTTPS server|plain HTTP request was sent to HTTPS port/i.test(body)) throw new TlsRefusedError(httpsErr);
              errorBody = body;
            }
          }
        }
      } catch (err) {
        if (signal?.aborted) throw abortError(signal, what);
        const mapped = this.connectionError(err, what);
        const refused = (err as { code?: unknown }).code === "ECONNREFUSED";
        if (mapped.retryable && !refused && attempt < this.policy.retries) {
          await sleep(retryDelay(attempt, this.policy), signal);
          continue;
        }
        throw mapped;
      }
      const status = res.statusCode;
      this.log("GET", new URL("/v2/", base), status);
      if (status === 200 || status === 401) {
        const challenges = parseWWWAuthenticate(res.headers["www-authenticate"]);
        await dumpBody(res.body);
        this.baseURL = base;
        this.challenge = pickChallenge(challenges);
        return;
      }
      const body = errorBody ?? (await readBody(res.body, ERROR_BODY_LIMIT)).toString("utf8");
      const err = mapRegistryError({ what, kind: "ping", host: this.domain, status, body, credentialsSent: false, retryAfter: header(res.headers, "retry-after") });
      if (isRetryableStatus(status) && attempt < this.policy.retries) {
        await this.waitForRetry(attempt, res.headers, err, signal);
        continue;
      }
      if (!err.retryable && status !== 404) throw err;
      throw new AirlockError("ERR_REGISTRY", `${what}: ${base.origin}/v2/ answered HTTP ${status}, so ${this.domain} does not look like a container registry (${err.message})`, { cause: err, retryable: err.retryable });
    }
  }

  /**
   * Whether the ping asks plain HTTP first: a loopback registry, with no `--tls-verify=true` and no
   * cert dir, client certificate or `--tls-details` for it.
   */
  private async plainHttpFirst(): Promise<boolean> {
    if (!isLoopbackHost(this.domain) || this.ctx.tlsVerify === true) return false;
    const tls = await this.getTls();
    return !tls.certDir && !tls.ca && !tls.cert && !tls.base;
  }

  /**
   * The bulk client for requests without a body, on this host's TLS settings and timeouts;
   * undefined where it does not run (Bun, Deno, `AIRLOCK_HTTP_BULK=0`).
   */
  private async getBulkPool(): Promise<BulkPool | undefined> {
    if (this.bulkPool || !bulkSupported()) return this.bulkPool;
    const tls = await this.getTls();
    if (this.bulkPool) return this.bulkPool;
    const t = this.options.timeouts ?? {};
    this.bulkPool = new BulkPool({ secureContext: secureContextFor(tls), rejectUnauthorized: tls.verify, connectMs: t.connectMs ?? 30_000, headersMs: t.headersMs ?? 300_000, bodyMs: t.bodyMs ?? 120_000 });
    return this.bulkPool;
  }

  /** The headers every request carries, then `headers`. */
  private requestHeaders(headers: Record<string, string>): Record<string, string> {
    return { "user-agent": this.ctx.userAgent ?? DEFAULT_USER_AGENT, "docker-distribution-api-version": "registry/2.0", ...headers };
  }

  /**
   * Sends one request as it is (no authentication, retries or redirects): GETs and HEADs without a
   * body through the bulk client where it runs — so a run that only reads from the registry API never loads undici —
   * everything else through undici.
   */
  private async request(method: HttpMethod, url: URL, headers: Record<string, string>, body: Uint8Array | Readable | undefined, signal: AbortSignal | undefined): Promise<RawResponse> {
    if (signal) unlimitedListeners(signal);
    if ((method === "GET" || method === "HEAD") && body === undefined) {
      const bulk = await this.getBulkPool();
      if (bulk) return bulk.request(url, this.requestHeaders(headers), signal, method);
    }
    return this.rawRequest(await this.getAgent(), method, url, headers, body, signal);
  }

  private async rawRequest(agent: Agent, method: HttpMethod, url: URL, headers: Record<string, string>, body: Uint8Array | Readable | undefined, signal: AbortSignal | undefined): Promise<Dispatcher.ResponseData> {
    const h = this.requestHeaders(headers);
    // undici closes the connection after every HEAD unless told otherwise (undici#258: servers
    // that send a body anyway); registries answer HEADs properly, and a sync or import that checks
    // one manifest per image would otherwise open one connection per check.
    const reset = method === "HEAD" ? { reset: false } : {};
    if (signal) unlimitedListeners(signal);
    return undici().request(agent, url, { method, headers: h, body: body ?? null, signal: signal ?? null, ...reset });
  }

  /**
   * GETs a URL outside the registry API (a lookaside signature), without credentials, through this
   * connection's pool: with its TLS settings (cert dir, `--tls-verify`, `--tls-details`), as
   * containers/image reads lookaside storage with the registry's HTTP client. Redirects are
   * followed; there are no retries, and network failures are thrown as they are. The caller MUST
   * consume or dump the body.
   */
  async getUnauthenticated(url: URL, signal?: AbortSignal): Promise<{ status: number; body: ResponseBody }> {
    const agent = await this.getAgent();
    for (let redirects = 0, at = url; ; redirects++) {
      const res = await this.rawRequest(agent, "GET", at, {}, undefined, signal);
      this.log("GET", at, res.statusCode);
      const location = header(res.headers, "location");
      if (res.statusCode < 300 || res.statusCode >= 400 || res.statusCode === 304 || !location || redirects >= MAX_REDIRECTS) return { status: res.statusCode, body: res.body };
      await dumpBody(res.body);
      at = new URL(location, at);
    }
  }

  private log(method: string, url: URL, status: number | string): void {
    const log = this.options.log ?? debugLogger;
    log?.(`${method} ${url.origin}${url.pathname} → ${status}`);
  }

  /** What error messages say about this registry's credentials: the caller's hints, and whether `airlock login` helps. */
  private credentialHints(): { hints: DockerContext["hints"]; authFilesConsulted: boolean; authFile: string | undefined } {
    const c = this.ctx;
    return { hints: c.hints, authFilesConsulted: !c.noCreds && c.credentials === undefined && c.registryToken === undefined, authFile: c.authFile };
  }

  /** Maps a connection-level failure onto an actionable error (TLS hints, network faults). */
  private connectionError(err: unknown, what: string): AirlockError {
    if (err instanceof AirlockError) return err;
    const e = err as { code?: string; message?: string };
    const msg = e?.message ?? String(err);
    const tlsVerify = this.ctx.hints?.tlsVerify ?? TLS_VERIFY_FLAG_HINT;
    const certDir = this.ctx.hints?.certDir ?? CERT_DIR_FLAG_HINT;
    if (isPlainHttpResponse(err)) {
      return new AirlockError(
        "ERR_TLS",
        `${what}: ${this.host} answered HTTPS with plain HTTP (http: server gave HTTP response to HTTPS client); if the registry really serves plain HTTP, use ${tlsVerify}`,
        { cause: err },
      );
    }
    if (isCertificateError(err)) {
      const dir = this.tls?.certDir ? ` (the CAs in ${this.tls.certDir} did not verify it)` : "";
      return new AirlockError(
        "ERR_TLS",
        `${what}: the TLS certificate of ${this.host} could not be verified: ${msg}${dir}; if the registry uses a private CA, give its certificate with ${certDir} (a directory holding ca.crt) or install it in /etc/containers/certs.d/${this.host}/ca.crt; to skip verification use ${tlsVerify}`,
        { cause: err },
      );
    }
    if (err instanceof TlsRefusedError) {
      const e2 = err.cause as { code?: string; message?: string };
      const have = this.tls?.cert ? `the client certificate in ${this.tls.certDir} may not be one it trusts` : "no client certificate was given";
      return new AirlockError(
        "ERR_TLS",
        `${what}: ${this.host} speaks HTTPS but ended the TLS connection (${e2?.message ?? e2?.code ?? "closed"}): it probably requires a client certificate (mutual TLS), and ${have}; put client.cert and client.key next to ca.crt in the directory given with ${certDir}, or in /etc/containers/certs.d/${this.host}/`,
        { cause: err.cause },
      );
    }
    if (isClientCertificateRefused(err)) {
      const have = this.tls?.cert ? `the client certificate in ${this.tls.certDir} was refused` : "no client certificate was given";
      return new AirlockError(
        "ERR_TLS",
        `${what}: ${this.host} requires a client certificate it trusts (mutual TLS) and ${have} (${e.code}); put its client.cert and client.key next to ca.crt in the directory given with ${certDir}, or in /etc/containers/certs.d/${this.host}/`,
        { cause: err },
      );
    }
    if (typeof e?.code === "string" && (e.code.startsWith("ERR_SSL") || e.code.startsWith("ERR_TLS") || e.code === "EPROTO")) {
      const base = this.tls?.base ? `; the TLS versions, cipher suites or groups allowed by ${this.tls.base.source} (--tls-details) may be ones ${this.host} does not offer` : "";
      return new AirlockError("ERR_TLS", `${what}: TLS with ${this.host} failed: ${msg.split("\n")[0]}${base}; check ${certDir}, or use ${tlsVerify}`, { cause: err });
    }
    const timeout = e?.code === "UND_ERR_CONNECT_TIMEOUT" || e?.code === "UND_ERR_HEADERS_TIMEOUT" || e?.code === "UND_ERR_BODY_TIMEOUT" || e?.code === "ETIMEDOUT";
    const retryable = isRetryableNetworkError(err);
    const hint = e?.code === "ECONNREFUSED" ? `; is the registry running and is ${this.host} the right host and port?` : e?.code === "ENOTFOUND" ? `; check the registry name` : "";
    return new AirlockError(timeout ? "ERR_TIMEOUT" : "ERR_NETWORK", `${what}: ${timeout ? "timed out" : "network error"} talking to ${this.host}: ${msg}${e?.code && !msg.includes(e.code) ? ` (${e.code})` : ""}${hint}`, { cause: err, retryable });
  }

  private async waitForRetry(attempt: number, headers: Record<string, string | string[] | undefined>, err: AirlockError, signal?: AbortSignal): Promise<void> {
    const after = parseRetryAfter(header(headers, "retry-after"));
    if (after !== undefined && after > MAX_RETRY_WAIT_MS) throw err;
    await sleep(retryDelay(attempt, this.policy, after), signal);
  }

  /** The credentials for a repository (memoised): `--no-creds`, `--creds`, else the auth files. */
  credentialsFor(repository?: string): Promise<RegistryCredentials | undefined> {
    const key = repository ?? "";
    let p = this.credentials.get(key);
    if (!p) {
      if (this.ctx.noCreds) p = Promise.resolve(undefined);
      else if (this.ctx.credentials) p = Promise.resolve({ ...this.ctx.credentials });
      else {
        const name = repository ? `${this.domain}/${repository}` : this.domain;
        p = this.options.lookupCredentials ? this.options.lookupCredentials(name) : lookupConfiguredCredentials(name, this.ctx);
      }
      this.credentials.set(key, p);
    }
    return p;
  }

  /** The Authorization value for a request with `scopes`, and whether it carries credentials. */
  private async authorization(scopes: string[], repository: string | undefined, signal?: AbortSignal): Promise<{ value?: string; withCredentials: boolean }> {
    const ch = this.challenge;
    if (!ch) return { withCredentials: false };
    if (ch.scheme === "basic") {
      const creds = await this.credentialsFor(repository);
      if (!creds || (creds.username === "" && creds.password === "")) return { withCredentials: false };
      return { value: basicAuthorization(creds.username, creds.password), withCredentials: true };
    }
    if (ch.scheme === "bearer") {
      if (this.ctx.registryToken) return { value: `Bearer ${this.ctx.registryToken}`, withCredentials: true };
      const creds = await this.credentialsFor(repository);
      const key = mergeScopes(scopes);
      const t = await this.tokens.get([ch.params.realm ?? "", ch.params.service ?? "", ...key], () => this.fetchToken(ch, key, creds, signal));
      return { value: `Bearer ${t.token}`, withCredentials: creds !== undefined };
    }
    return { withCredentials: false };
  }

  /** Obtains a bearer token for `scopes` from the challenge's realm (GET with basic auth, or the OAuth2 refresh-token grant). */
  private async fetchToken(ch: Challenge, scopes: string[], creds: RegistryCredentials | undefined, signal?: AbortSignal) {
    const realm = ch.params.realm;
    const what = `requesting an access token from ${this.domain}${scopes.length ? ` for ${scopes.join(" ")}` : ""}`;
    let realmURL: URL;
    try {
      realmURL = new URL(realm ?? "");
      if (realmURL.protocol !== "https:" && realmURL.protocol !== "http:") throw new Error("not http(s)");
    } catch {
      throw new AirlockError("ERR_REGISTRY", `${what}: the registry's bearer challenge has no usable realm (${JSON.stringify(realm ?? "")})`);
    }
    const service = ch.params.service;
    let req: RegistryRequest;
    if (creds?.identityToken) {
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: creds.identityToken, client_id: "airlock" });
      if (service) form.set("service", service);
      if (scopes.length) form.set("scope", scopes.join(" "));
      req = { method: "POST", url: realmURL.href, body: Buffer.from(form.toString()), headers: { "content-type": "application/x-www-form-urlencoded" }, scopes: [], ok: [200], kind: "token", what, signal };
    } else {
      const u = new URL(realmURL.href);
      if (service) u.searchParams.set("service", service);
      for (const s of scopes) u.searchParams.append("scope", s);
      const headers: Record<string, string> = {};
      if (creds && (creds.username !== "" || creds.password !== "")) {
        u.searchParams.set("account", creds.username);
        headers.authorization = basicAuthorization(creds.username, creds.password);
      }
      req = { method: "GET", url: u.href, headers, scopes: [], ok: [200], kind: "token", what, signal };
    }
    const res = await this.send(req, { authenticate: false, credentialsSent: creds !== undefined });
    const body = (await readBody(res.body, TOKEN_BODY_LIMIT, true, "token response")).toString("utf8");
    const t = parseTokenResponse(body);
    if (!t) throw new AirlockError("ERR_REGISTRY", `${what}: the token server's answer has neither "token" nor "access_token"`);
    return t;
  }

  /**
   * Sends a request: pings first, authenticates, follows redirects, retries transient failures,
   * upgrades the token once on a 401 that names another scope. Returns when the status is one of
   * `req.ok` (the caller MUST consume or dump the body); throws a {@link RegistryError} or an
   * {@link AirlockError} otherwise.
   */
  async send(req: RegistryRequest, internal: { authenticate?: boolean; credentialsSent?: boolean } = {}): Promise<RegistryResponse> {
    const authenticate = internal.authenticate ?? true;
    if (authenticate) await this.ping(req.signal);
    const base = this.baseURL ?? new URL(`https://${this.host}`);
    let url = new URL(req.url, base);
    const replayable = !(typeof req.body === "function");
    const retry = req.retry ?? replayable;
    const follow = req.followRedirects ?? (req.method === "GET" || req.method === "HEAD");
    let scopes = req.scopes;
    let authRetried = false;
    let attempt = 0;
    let redirects = 0;
    const origin = url.origin;
    for (;;) {
      const headers: Record<string, string> = { ...req.headers };
      // Credentials the caller put in the request (a token endpoint's Basic authorization) are for
      // the origin asked, never for another that a redirect names (nor for plain HTTP after HTTPS).
      if (url.origin !== origin) for (const name of Object.keys(headers)) if (name.toLowerCase() === "authorization") delete headers[name];
      let credentialsSent = internal.credentialsSent ?? false;
      if (authenticate && url.origin === base.origin) {
        const auth = await this.authorization(scopes, req.repository, req.signal);
        if (auth.value) headers.authorization = auth.value;
        credentialsSent = auth.withCredentials;
      }
      const body = typeof req.body === "function" ? req.body() : req.body;
      let res: RawResponse;
      try {
        res = await this.request(req.method, url, headers, body, req.signal);
      } catch (err) {
        if (req.signal?.aborted) throw abortError(req.signal, req.what);
        const inner = findAirlockError(err);
        if (inner) throw inner;
        const mapped = this.connectionError(err, req.what);
        this.log(req.method, url, (err as { code?: string }).code ?? "error");
        if (retry && mapped.retryable && attempt < this.policy.retries) {
          await sleep(retryDelay(attempt++, this.policy), req.signal);
          continue;
        }
        throw mapped;
      }
      const status = res.statusCode;
      this.log(req.method, url, status);
      if (follow && status >= 300 && status < 400 && status !== 304) {
        const location = header(res.headers, "location");
        await dumpBody(res.body);
        if (!location) throw new AirlockError("ERR_REGISTRY", `${req.what}: ${this.domain} answered HTTP ${status} without a Location`);
        if (++redirects > MAX_REDIRECTS) throw new AirlockError("ERR_REGISTRY", `${req.what}: more than ${MAX_REDIRECTS} redirects`);
        url = new URL(location, url);
        continue;
      }
      if (req.ok.includes(status)) return { status, headers: res.headers, body: res.body, url: url.href };
      let text = "";
      if (req.method === "HEAD") await dumpBody(res.body);
      else text = (await readBody(res.body, ERROR_BODY_LIMIT)).toString("utf8");
      const challenge = status === 401 ? pickChallenge(parseWWWAuthenticate(res.headers["www-authenticate"])) : undefined;
      if (status === 401 && authenticate && url.origin === base.origin && !authRetried && replayable) {
        // Worth one more try with a (new) token, or with a challenge the ping did not reveal.
        if (challenge && (challenge.scheme === "bearer" || !sameChallenge(challenge, this.challenge))) {
          authRetried = true;
          if (challenge.scheme === "bearer" && this.challenge?.scheme === "bearer") this.tokens.invalidate([this.challenge.params.realm ?? "", this.challenge.params.service ?? "", ...mergeScopes(scopes)]);
          this.challenge = challenge;
          if (challenge.params.scope) scopes = mergeScopes([...scopes, ...challenge.params.scope.split(" ")]);
          continue;
        }
      }
      const err = mapRegistryError({
        what: req.what,
        kind: req.kind,
        host: this.domain,
        status,
        body: text,
        credentialsSent,
        retryAfter: header(res.headers, "retry-after"),
        authError: challenge?.params.error,
        ...this.credentialHints(),
      });
      if (retry && isRetryableStatus(status) && attempt < this.policy.retries) {
        await this.waitForRetry(attempt++, res.headers, err, req.signal);
        continue;
      }
      throw err;
    }
  }
}

const raised = new WeakSet<AbortSignal>();

/**
 * Lets `signal` take any number of abort listeners: each request in flight adds one, and a sync or
 * import runs many at once under one signal (Node warns past 10, as if they leaked).
 */
function unlimitedListeners(signal: AbortSignal): void {
  if (raised.has(signal)) return;
  raised.add(signal);
  try {
    setMaxListeners(0, signal);
  } catch {
    // Runtimes without per-target listener limits have nothing to raise.
  }
}

/** Chooses the challenge to answer: bearer over basic; undefined when none is usable. */
function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic");
}

function sameChallenge(a: Challenge, b: Challenge | undefined): boolean {
  return b !== undefined && a.scheme === b.scheme && a.params.realm === b.params.realm && a.params.service === b.params.service;
}

/** Finds an AirlockError in an error's cause chain (a request body that failed with one, e.g. a digest mismatch). */
function findAirlockError(err: unknown): AirlockError | undefined {
  let e: unknown = err;
  for (let i = 0; i < 5 && e; i++) {
    if (e instanceof AirlockError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
