/**
 * Test harness: starts the real CNCF distribution registry (`docker-registry serve`) on 127.0.0.1
 * in one of four modes — plain HTTP, htpasswd basic auth, TLS with a self-signed CA, bearer tokens
 * issued by a token server that runs inside the test process — and stops it again.
 *
 * Each test file starts what it needs in `beforeAll` and calls `stop()` in `afterAll`; a registry
 * starts in a fraction of a second.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { mkdtempSync, promises as fs, rmSync } from "node:fs";
import { request as httpRequest, type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/** The four ways the harness can run a registry. */
export type RegistryMode = "plain" | "basic" | "tls" | "token";

/** Options of {@link startRegistry}. */
export interface StartRegistryOptions {
  mode: RegistryMode;
  /** Token mode: the JSON field the token server puts the token in (default `token`). */
  tokenField?: "token" | "access_token";
  /**
   * Token mode: repositories (names without the host) the user may pull from but not push to — the
   * token server leaves `push` (and `*`) out of their grants, so the registry denies the push
   * (default: none).
   */
  denyPush?: string[];
  /**
   * The address to listen on (default `127.0.0.1`), e.g. one of this machine's non-loopback
   * addresses, to reach the registry under a name that is not loopback. TLS mode's certificate
   * names 127.0.0.1 and localhost only.
   */
  address?: string;
  /**
   * TLS mode: CA certificates (PEM files) that client certificates must chain to
   * (`http.tls.clientcas`); the registry then refuses any TLS connection without one.
   */
  clientCAs?: string[];
  /** Accept Docker schema 1 manifest pushes (`compatibility.schema1.enabled`; distribution 2.8 refuses them by default). */
  schema1?: boolean;
}

/** One request the token server answered (for assertions on scopes and grants). */
export interface TokenRequest {
  method: string;
  grantType?: string;
  account?: string;
  service?: string;
  scopes: string[];
  /** Whether the request carried valid credentials (basic or refresh token). */
  authenticated: boolean;
}

/** A running registry. */
export interface RunningRegistry {
  /** `127.0.0.1:PORT` (or `ADDRESS:PORT`), as it appears in image references. */
  host: string;
  mode: RegistryMode;
  /** `http://…` or `https://…` base URL. */
  url: string;
  /** Basic and token modes: the user that may push and pull. */
  username?: string;
  password?: string;
  /** TLS mode: a directory with `ca.crt`, usable as `--cert-dir`. */
  certDir?: string;
  /** TLS mode: the CA certificate (PEM file). */
  caFile?: string;
  /** Token mode: a refresh token the token server accepts (an auth file's `identitytoken`). */
  refreshToken?: string;
  /** Token mode: every request the token server answered, oldest first. */
  tokenRequests?: TokenRequest[];
  /** The registry's storage directory. */
  dataDir: string;
  /** Kills the registry (and token server) and removes every temporary file. */
  stop(): Promise<void>;
}

const USERNAME = "airlock";
const PASSWORD = "s3cret-pa55";

/** Starts a real docker-registry on 127.0.0.1 (or `address`) in `mode`; resolves when `/v2/` answers. */
export async function startRegistry(options: StartRegistryOptions): Promise<RunningRegistry> {
  const dir = mkdtempSync(join(tmpdir(), `airlock-registry-${options.mode}-`));
  tempDirs.add(dir);
  installExitHook();
  const cleanups: (() => Promise<void>)[] = [
    async () => {
      await fs.rm(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  ];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    return await startIn(dir, options, cleanups, cleanup);
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function startIn(dir: string, options: StartRegistryOptions, cleanups: (() => Promise<void>)[], cleanup: () => Promise<void>): Promise<RunningRegistry> {
  const { mode } = options;
  const result: Partial<RunningRegistry> = { mode, dataDir: join(dir, "data") };
  let authYaml = "";
  let tlsYaml = "";
  if (mode === "basic" || mode === "token") {
    result.username = USERNAME;
    result.password = PASSWORD;
  }
  if (mode === "basic") {
    const { stdout } = await execFileP("htpasswd", ["-Bbn", USERNAME, PASSWORD]);
    await fs.writeFile(join(dir, "htpasswd"), stdout);
    authYaml = `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${join(dir, "htpasswd")}\n`;
  }
  if (mode === "tls") {
    await opensslSelfSigned(dir, "cert.pem", "key.pem", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    const certDir = join(dir, "certs");
    await fs.mkdir(certDir);
    await fs.copyFile(join(dir, "cert.pem"), join(certDir, "ca.crt"));
    result.certDir = certDir;
    result.caFile = join(certDir, "ca.crt");
    tlsYaml = `  tls:\n    certificate: ${join(dir, "cert.pem")}\n    key: ${join(dir, "key.pem")}\n`;
    if (options.clientCAs?.length) tlsYaml += `    clientcas:\n${options.clientCAs.map((f) => `      - ${f}\n`).join("")}`;
  }
  if (mode === "token") {
    await opensslSelfSigned(dir, "token-cert.pem", "token-key.pem", "test-token-issuer");
    const ts = await startTokenServer({
      certPem: await fs.readFile(join(dir, "token-cert.pem"), "utf8"),
      keyPem: await fs.readFile(join(dir, "token-key.pem"), "utf8"),
      tokenField: options.tokenField ?? "token",
      denyPush: options.denyPush ?? [],
    });
    cleanups.push(ts.stop);
    result.refreshToken = ts.refreshToken;
    result.tokenRequests = ts.requests;
    authYaml =
      `auth:\n  token:\n    realm: http://127.0.0.1:${ts.port}/token\n    service: ${SERVICE}\n` +
      `    issuer: ${ISSUER}\n    rootcertbundle: ${join(dir, "token-cert.pem")}\n`;
  }

  let lastErr: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const address = options.address ?? "127.0.0.1";
    const port = await freePort(address);
    const host = `${address.includes(":") ? `[${address}]` : address}:${port}`;
    const config =
      `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n` +
      `storage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n` +
      `http:\n  addr: ${host}\n  secret: any-test-secret\n${tlsYaml}` +
      authYaml +
      (options.schema1 ? "compatibility:\n  schema1:\n    enabled: true\n" : "");
    const configPath = join(dir, "config.yml");
    await fs.writeFile(configPath, config);
    const proc = spawn("docker-registry", ["serve", configPath], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (s: string) => {
      if (stderr.length < 16_384) stderr += s;
    });
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    trackChild(proc);
    const url = `${mode === "tls" ? "https" : "http"}://${host}`;
    try {
      await waitUntilUp(url, exited);
    } catch (err) {
      lastErr = new Error(`docker-registry did not start (${(err as Error).message}); stderr:\n${stderr}`);
      await killChild(proc, exited);
      continue;
    }
    const stop = async () => {
      await killChild(proc, exited);
      await cleanup();
    };
    return { ...result, host, url, stop } as RunningRegistry;
  }
  throw lastErr;
}

async function opensslSelfSigned(dir: string, certName: string, keyName: string, cn: string, san?: string): Promise<void> {
  const args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", `/CN=${cn}`, "-keyout", join(dir, keyName), "-out", join(dir, certName)];
  if (san) args.push("-addext", san);
  await execFileP("openssl", args);
}

/** Finds a free TCP port on `address` (racy, hence the retries in startRegistry). */
async function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, address, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

async function waitUntilUp(url: string, exited: Promise<number | null>): Promise<void> {
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (dead) throw new Error("the process exited");
    const status = await probe(`${url}/v2/`).catch(() => 0);
    // CLIENT_CERT_REQUIRED: a registry with clientcas answered the probe's certificate-less handshake.
    if (status === 200 || status === 401 || status === CLIENT_CERT_REQUIRED) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("timed out waiting for /v2/");
}

/** What {@link probe} returns when the TLS handshake was refused for want of a client certificate. */
const CLIENT_CERT_REQUIRED = -1;

function probe(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith("https:") ? httpsRequest : httpRequest)(url, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", (err: NodeJS.ErrnoException) => (err.code?.startsWith("ERR_SSL_") ? resolve(CLIENT_CERT_REQUIRED) : reject(err)));
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

/** If the test process exits without stop() (a crash, a timeout), registries and temp dirs still go. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const c of children) c.kill("SIGKILL");
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });
}

function trackChild(proc: ChildProcess): void {
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
}

async function killChild(proc: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// The token server (distribution's "token" auth: https://distribution.github.io/distribution/spec/auth/token/)

const SERVICE = "test-registry";
const ISSUER = "test-issuer";

interface TokenServerOptions {
  certPem: string;
  keyPem: string;
  tokenField: "token" | "access_token";
  /** Repositories whose grants never include push. */
  denyPush: string[];
}

interface TokenServer {
  port: number;
  refreshToken: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/**
 * Starts an OAuth2-style token server: `GET /token?service&scope&account` with basic auth, and
 * `POST /token` with `grant_type=password|refresh_token`. Authenticated clients get every action
 * they ask for; anonymous ones get a token with no access (the registry then answers 401).
 */
async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const key = createPrivateKey(options.keyPem);
  const der = Buffer.from(
    options.certPem
      .replace(/-----(BEGIN|END) CERTIFICATE-----/g, "")
      .replace(/\s+/g, ""),
    "base64",
  );
  const refreshToken = `refresh-${randomUUID()}`;
  const requests: TokenRequest[] = [];

  const issue = (subject: string, scopes: string[], granted: boolean): string => {
    const now = Math.floor(Date.now() / 1000);
    const access = granted
      ? scopes
          .map(parseScope)
          .filter((a) => a !== undefined)
          .map((a) => (a.type === "repository" && options.denyPush.includes(a.name) ? { ...a, actions: a.actions.filter((x) => x !== "push" && x !== "*") } : a))
      : [];
    const header = { typ: "JWT", alg: "RS256", x5c: [der.toString("base64")] };
    const claims = { iss: ISSUER, sub: subject, aud: SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign("sha256", Buffer.from(input), key))}`;
  };

  const reply = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? "/", "http://x");
    if (u.pathname !== "/token") return reply(res, 404, { error: "not found" });
    if (req.method === "GET") {
      const scopes = u.searchParams.getAll("scope");
      const creds = parseBasic(req.headers.authorization);
      const entry: TokenRequest = { method: "GET", scopes, authenticated: false };
      const account = u.searchParams.get("account");
      if (account !== null) entry.account = account;
      const service = u.searchParams.get("service");
      if (service !== null) entry.service = service;
      requests.push(entry);
      if (creds && !(creds.username === USERNAME && creds.password === PASSWORD)) {
        return reply(res, 401, { details: "invalid username or password" });
      }
      entry.authenticated = creds !== undefined;
      const token = issue(creds?.username ?? "", scopes, creds !== undefined);
      return reply(res, 200, { [options.tokenField]: token, expires_in: 300, issued_at: new Date().toISOString() });
    }
    if (req.method === "POST") {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      const scopes = (form.get("scope") ?? "").split(" ").filter((s) => s !== "");
      const grantType = form.get("grant_type") ?? "";
      const entry: TokenRequest = { method: "POST", grantType, scopes, authenticated: false };
      const service = form.get("service");
      if (service !== null) entry.service = service;
      requests.push(entry);
      let ok = false;
      if (grantType === "refresh_token") ok = form.get("refresh_token") === refreshToken;
      else if (grantType === "password") ok = form.get("username") === USERNAME && form.get("password") === PASSWORD;
      if (!ok) return reply(res, 401, { error: "invalid_grant" });
      entry.authenticated = true;
      const body: Record<string, unknown> = { access_token: issue(USERNAME, scopes, true), expires_in: 300, scope: scopes.join(" ") };
      if (grantType === "password" && form.get("access_type") === "offline") body.refresh_token = refreshToken;
      return reply(res, 200, body);
    }
    return reply(res, 405, { error: "method not allowed" });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => reply(res, 500, { error: String(err) }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    port,
    refreshToken,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function parseScope(scope: string): { type: string; name: string; actions: string[] } | undefined {
  // repository:NAME:ACTIONS — NAME may contain a colon only for a port, which repository names cannot.
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first <= 0 || last === first) return undefined;
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(",").filter((a) => a !== "") };
}

function parseBasic(header: string | undefined): { username: string; password: string } | undefined {
  if (!header?.toLowerCase().startsWith("basic ")) return undefined;
  const text = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
  const i = text.indexOf(":");
  if (i < 0) return undefined;
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}
