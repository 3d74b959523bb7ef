/**
 * A minimal Docker Engine API client over undici: where the daemon is (`--daemon-host`,
 * DOCKER_HOST, the default socket), one connection pool to it, and errors that say which daemon
 * could not be reached and how to choose another.
 *
 * Where the daemon is, first match wins:
 *  - `SystemContext.dockerDaemonHost` (skopeo's `--daemon-host` / `--src-daemon-host` /
 *    `--dest-daemon-host`), with skopeo's meaning: `unix:///PATH`; `tcp://HOST:PORT` and
 *    `https://…` use TLS (`--cert-dir` with docker's `ca.pem`, `cert.pem`, `key.pem`, as
 *    containers/image reads it for the daemon; `--tls-verify=false` skips verification);
 *    `http://HOST:PORT` is plain HTTP;
 *  - `DOCKER_HOST`, with the docker CLI's meaning: `unix:///PATH`; `tcp://HOST:PORT` is plain HTTP
 *    unless DOCKER_TLS_VERIFY is set (then TLS with `ca.pem`, `cert.pem`, `key.pem` of
 *    DOCKER_CERT_PATH, default ~/.docker);
 *  - `unix:///var/run/docker.sock`.
 * @see https://docs.docker.com/reference/api/engine/
 */
import { promises as fs } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { Agent, Dispatcher } from "undici";
import { AirlockError, type ErrorCode } from "../../errors.js";
import { isCertificateError, isPlainHttpResponse } from "../../registry/tls.js";
import { undici } from "../../registry/undici.js";
import type { SystemContext } from "../types.js";

/** The daemon used when neither `--daemon-host` nor DOCKER_HOST names one. */
export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";

/** How to choose another daemon, for error messages. */
export const DAEMON_HOST_HINT = "choose the daemon with --daemon-host (--src-daemon-host / --dest-daemon-host for copy) or DOCKER_HOST";

/** Where a daemon is and how to talk to it. */
export interface DaemonEndpoint {
  /** The host as given, e.g. `unix:///var/run/docker.sock` or `tcp://10.0.0.5:2376`. */
  host: string;
  /** What chose it. */
  chosenBy: "--daemon-host" | "DOCKER_HOST" | "default";
  /** The unix socket, for `unix://`. */
  socketPath?: string;
  /** The HTTP origin requests go to (`http://localhost` for a socket). */
  origin: string;
  /** Whether the connection uses TLS. */
  tls: boolean;
}

/** Settings of {@link daemonEndpoint} from the environment (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH). */
type Env = Record<string, string | undefined>;

/** Resolves which daemon `ctx` means (see the module comment). Throws ERR_INVALID_ARGUMENT for a host it cannot use. */
export function daemonEndpoint(ctx: SystemContext = {}, env: Env = process.env): DaemonEndpoint {
  const flag = ctx.dockerDaemonHost;
  const chosenBy: DaemonEndpoint["chosenBy"] = flag ? "--daemon-host" : env.DOCKER_HOST ? "DOCKER_HOST" : "default";
  const host = flag || env.DOCKER_HOST || DEFAULT_DOCKER_HOST;
  const bad = (why: string) => new AirlockError("ERR_INVALID_ARGUMENT", `invalid Docker daemon host ${JSON.stringify(host)} (from ${chosenBy}): ${why}; use unix:///PATH, tcp://HOST:PORT or http://HOST:PORT`);
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(host);
  if (!m) throw bad("it has no scheme");
  const scheme = (m[1] as string).toLowerCase();
  const rest = m[2] as string;
  if (scheme === "unix") {
    if (!rest.startsWith("/")) throw bad("the socket path must be absolute");
    return { host, chosenBy, socketPath: rest, origin: "http://localhost", tls: false };
  }
  if (scheme !== "tcp" && scheme !== "http" && scheme !== "https") throw bad(`airlock does not support ${scheme}://`);
  const tls = scheme === "https" || (scheme === "tcp" && (chosenBy === "--daemon-host" || !!env.DOCKER_TLS_VERIFY));
  let url: URL;
  try {
    url = new URL(`${tls ? "https" : "http"}://${rest}`);
  } catch (cause) {
    throw bad((cause as Error).message);
  }
  if (url.pathname !== "/" || url.search || url.username) throw bad("only HOST:PORT may follow the scheme");
  // The Docker CLI's default ports: 2376 with TLS, 2375 without.
  if (scheme === "tcp" && url.port === "") url.port = tls ? "2376" : "2375";
  return { host, chosenBy, origin: url.origin, tls };
}

/** Options of {@link DaemonClient.request}. */
export interface DaemonRequestOptions {
  body?: Readable;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
}

/** Why a connection failed, by error code, for a daemon at `where` (a socket path or an origin). */
const CONNECT_ERRORS: Record<string, (where: string) => string> = {
  ENOENT: (w) => `${w} does not exist`,
  ECONNREFUSED: (w) => `nothing listens on ${w}`,
  EACCES: (w) => `permission denied on ${w} (is this user in the docker group?)`,
  EPERM: (w) => `permission denied on ${w}`,
  ENOTSOCK: (w) => `${w} is not a socket`,
  ENOTFOUND: (w) => `the host of ${w} does not resolve`,
  EHOSTUNREACH: (w) => `${w} is unreachable`,
  ETIMEDOUT: (w) => `connecting to ${w} timed out`,
  UND_ERR_CONNECT_TIMEOUT: (w) => `connecting to ${w} timed out`,
};

/** A connection pool to one Docker daemon. Close it when done. */
export class DaemonClient {
  readonly endpoint: DaemonEndpoint;
  /** Names the image being worked on in errors, e.g. `docker-daemon:busybox:latest`. */
  readonly what: string;
  private readonly agent: Agent;
  /** Whether a TLS client certificate is presented. */
  private readonly clientCertificate: boolean;
  /** The `--tls-details` file whose settings the TLS connection uses, if any (named in TLS errors). */
  private readonly tlsDetails: string | undefined;

  private constructor(endpoint: DaemonEndpoint, agent: Agent, what: string, clientCertificate: boolean, tlsDetails: string | undefined) {
    this.endpoint = endpoint;
    this.agent = agent;
    this.what = what;
    this.clientCertificate = clientCertificate;
    this.tlsDetails = tlsDetails;
  }

  /** A client for the daemon `ctx` means; loads TLS files when the connection uses TLS. */
  static async open(ctx: SystemContext, what: string, env: Env = process.env): Promise<DaemonClient> {
    const endpoint = daemonEndpoint(ctx, env);
    const connect: Record<string, unknown> = {};
    if (endpoint.socketPath) connect.socketPath = endpoint.socketPath;
    if (endpoint.tls) Object.assign(connect, await tlsOptions(endpoint, ctx, env));
    // A load or a save may be silent for minutes (the daemon unpacks or exports layers): no timeouts; callers abort.
    const agent = new (undici().Agent)({ connect, headersTimeout: 0, bodyTimeout: 0 });
    return new DaemonClient(endpoint, agent, what, connect.cert !== undefined, endpoint.tls ? ctx.docker?.baseTls?.source : undefined);
  }

  /** Sends a request; a daemon that cannot be reached is one ERR_NETWORK naming it and how to choose another. */
  async request(method: "GET" | "POST" | "HEAD", path: string, options: DaemonRequestOptions = {}): Promise<Dispatcher.ResponseData> {
    const url = new URL(path, this.endpoint.origin);
    try {
      return await undici().request(this.agent, url, {
        method,
        ...(options.body ? { body: options.body } : {}),
        ...(options.headers ? { headers: options.headers } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (err) {
      throw this.connectionError(err);
    }
  }

  /** Translates a transport-level failure into an AirlockError; AirlockErrors and aborts pass through. */
  connectionError(err: unknown): unknown {
    if (err instanceof AirlockError) return err;
    const e = err as { code?: string; name?: string; message?: string };
    if (e?.name === "AbortError" || e?.code === "UND_ERR_ABORTED") return new AirlockError("ERR_ABORTED", `${this.what}: talking to the Docker daemon at ${this.endpoint.host} was aborted`, { cause: err });
    const where = this.endpoint.socketPath ? `the socket ${this.endpoint.socketPath}` : this.endpoint.origin;
    const known = e?.code ? CONNECT_ERRORS[e.code] : undefined;
    const why = known ? known(where) : `${where}: ${e?.message || String(err)}`;
    if (this.endpoint.tls && isPlainHttpResponse(err)) {
      const plain = new URL(this.endpoint.origin);
      return new AirlockError("ERR_TLS", `${this.what}: the Docker daemon at ${this.endpoint.host} speaks plain HTTP, not TLS; use --daemon-host http://${plain.host}`, { cause: err });
    }
    if (isCertificateError(err)) {
      return new AirlockError("ERR_TLS", `${this.what}: the Docker daemon at ${this.endpoint.host} has a certificate airlock cannot verify (${e?.message ?? e?.code}); give its CA as ca.pem in --cert-dir DIR (with cert.pem and key.pem for a client certificate), or skip verification with --tls-verify=false`, { cause: err });
    }
    const chosen = this.endpoint.chosenBy === "default" ? "" : ` (from ${this.endpoint.chosenBy})`;
    if (this.tlsDetails && typeof e?.code === "string" && (e.code.startsWith("ERR_SSL") || e.code.startsWith("ERR_TLS") || e.code === "EPROTO")) {
      return new AirlockError("ERR_TLS", `${this.what}: TLS with the Docker daemon at ${this.endpoint.host}${chosen} failed: ${(e.message ?? e.code).split("\n")[0]}; the TLS versions, cipher suites or groups allowed by ${this.tlsDetails} (--tls-details) may be ones the daemon does not offer`, { cause: err });
    }
    if (this.endpoint.tls && !this.clientCertificate && !known) {
      // A daemon started with --tlsverify drops a TLS client that has no certificate.
      return new AirlockError("ERR_TLS", `${this.what}: the Docker daemon at ${this.endpoint.host}${chosen} closed the connection: ${why}; if it was started with --tlsverify it wants a client certificate: cert.pem and key.pem (and its CA, ca.pem) in --cert-dir DIR`, { cause: err });
    }
    return new AirlockError("ERR_NETWORK", `${this.what}: cannot reach the Docker daemon at ${this.endpoint.host}${chosen}: ${why}; is dockerd running? ${DAEMON_HOST_HINT}`, { cause: err });
  }

  /**
   * Reads an error response (`{"message": …}`) and returns it as an AirlockError with `code`,
   * saying `doing` failed; 404 becomes ERR_IMAGE_NOT_FOUND.
   */
  async responseError(res: Dispatcher.ResponseData, doing: string, code: ErrorCode): Promise<AirlockError> {
    const text = await readText(res.body, 64 * 1024).catch(() => "");
    let message = text.trim();
    try {
      const m = (JSON.parse(text) as { message?: unknown }).message;
      if (typeof m === "string") message = m;
    } catch {
      // Not JSON: the text as it is.
    }
    const detail = message ? `: ${message}` : "";
    // The daemon's 404 message only repeats the name ("No such image: …").
    if (res.statusCode === 404) return new AirlockError("ERR_IMAGE_NOT_FOUND", `${this.what}: the Docker daemon at ${this.endpoint.host} has no such image; list its images with docker images`);
    return new AirlockError(code, `${this.what}: ${doing} failed: the Docker daemon at ${this.endpoint.host} answered ${res.statusCode}${detail}`);
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    await this.agent.destroy().catch(() => {});
  }
}

/** Reads a response body as text, at most `max` bytes (the rest is discarded). */
export async function readText(body: Readable, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    const b = c as Buffer;
    if (n < max) chunks.push(b.subarray(0, max - n));
    n += b.length;
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * undici `connect` options for a TLS daemon: `ca.pem`, `cert.pem` and `key.pem` of the cert dir
 * (docker's names, which containers/image also uses for the daemon): `--cert-dir`, or
 * DOCKER_CERT_PATH (default ~/.docker) for a DOCKER_HOST; a file that is missing is not used, but
 * a `--cert-dir` with none of them, or a certificate without its key, is an error.
 */
async function tlsOptions(endpoint: DaemonEndpoint, ctx: SystemContext, env: Env): Promise<Record<string, unknown>> {
  const fromEnv = endpoint.chosenBy === "DOCKER_HOST";
  const dir = fromEnv ? env.DOCKER_CERT_PATH || join(homedir(), ".docker") : ctx.docker?.certDir;
  // --tls-details (containers-tls-details.yaml): TLS versions, cipher suites and groups, as for registries.
  const b = ctx.docker?.baseTls;
  const verify = { rejectUnauthorized: fromEnv || ctx.docker?.tlsVerify !== false, ...(b?.minVersion ? { minVersion: b.minVersion } : {}), ...(b?.ciphers ? { ciphers: b.ciphers } : {}), ...(b?.ecdhCurve ? { ecdhCurve: b.ecdhCurve } : {}) };
  if (dir === undefined) return verify;
  const read = async (name: string) => {
    try {
      return await fs.readFile(join(dir, name), "utf8");
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read ${join(dir, name)} for the Docker daemon at ${endpoint.host}: ${(cause as Error).message}`, { cause });
    }
  };
  const [ca, cert, key] = await Promise.all([read("ca.pem"), read("cert.pem"), read("key.pem")]);
  const flag = fromEnv ? "DOCKER_CERT_PATH" : "--cert-dir";
  if (!fromEnv && !ca && !cert && !key) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `${flag} ${dir} holds none of ca.pem, cert.pem, key.pem, which a Docker daemon's TLS needs (the CA, and the client certificate and key)`);
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `${flag} ${dir} has ${cert ? "cert.pem without key.pem" : "key.pem without cert.pem"}; the client certificate needs both`);
  }
  return { ...verify, ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) };
}
