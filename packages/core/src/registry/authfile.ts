/**
 * Auth files (containers-auth.json(5) and Docker's config.json) and Docker credential helpers:
 * where credentials are looked up, in skopeo's order, and how `login` / `logout` write them.
 *
 * Lookup order (the first file with a matching, non-empty entry wins):
 *   1. `--authfile` or `$REGISTRY_AUTH_FILE` — then ONLY that file is consulted;
 *   2. `$XDG_RUNTIME_DIR/containers/auth.json` (without XDG_RUNTIME_DIR: /run/containers/UID/auth.json);
 *   3. `$XDG_CONFIG_HOME/containers/auth.json` (default ~/.config/containers/auth.json);
 *   4. `$DOCKER_CONFIG/config.json`, else ~/.docker/config.json;
 *   5. ~/.dockercfg (legacy: host keys at the top level).
 * In each file: `credHelpers[registry]`, then `auths` keys from the most specific
 * (`host/ns/repo`) to the host, then `credsStore` (which skopeo lacks).
 * @see https://github.com/containers/image/blob/main/docs/containers-auth.json.5.md
 * @see https://github.com/docker/docker-credential-helpers (the helper protocol)
 */
import { promises as fs } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { childProcess } from "../builtins.js";
import { AirlockError } from "../errors.js";
import { withFileLock, writeFileAtomic } from "../fsutil.js";
import { DOCKER_HUB_DOMAIN } from "../reference/docker.js";
import type { RegistryCredentials } from "./auth.js";

/** Where auth files are looked for; defaults come from the environment. */
export interface AuthFileOptions {
  /** `--authfile`: the only file consulted (and the one written). */
  authFile?: string | undefined;
  /** The environment to read XDG_RUNTIME_DIR, XDG_CONFIG_HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE, HOME from (default process.env). */
  env?: Record<string, string | undefined>;
}

/** An auth file in the lookup order, with its format. */
export interface AuthFileLocation {
  path: string;
  /** `json`: `{"auths": …}` (containers and Docker); `legacy`: ~/.dockercfg with host keys at the top level. */
  format: "json" | "legacy";
}

const DOCKER_HUB_ALIASES = [DOCKER_HUB_DOMAIN, "registry-1.docker.io", "index.docker.io", "https://index.docker.io/v1/"];

/** The server URL Docker's credential helpers store Docker Hub credentials under. */
const DOCKER_HUB_HELPER_URL = "https://index.docker.io/v1/";

function home(env: Record<string, string | undefined>): string {
  return env.HOME || homedir();
}

/** The auth file `login` writes and `logout` edits: `--authfile`, `$REGISTRY_AUTH_FILE`, else the XDG_RUNTIME_DIR one. */
export function primaryAuthFile(options: AuthFileOptions = {}): string {
  const env = options.env ?? process.env;
  if (options.authFile) return options.authFile;
  if (env.REGISTRY_AUTH_FILE) return env.REGISTRY_AUTH_FILE;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "containers", "auth.json");
  const uid = typeof process.getuid === "function" ? process.getuid() : 0;
  return join("/run/containers", String(uid), "auth.json");
}

/** The auth files consulted for credentials, in order (see the module comment). */
export function authFileLocations(options: AuthFileOptions = {}): AuthFileLocation[] {
  const env = options.env ?? process.env;
  if (options.authFile || env.REGISTRY_AUTH_FILE) return [{ path: primaryAuthFile(options), format: "json" }];
  const h = home(env);
  const configHome = env.XDG_CONFIG_HOME || join(h, ".config");
  const dockerConfig = env.DOCKER_CONFIG ? join(env.DOCKER_CONFIG, "config.json") : join(h, ".docker", "config.json");
  return [
    { path: primaryAuthFile(options), format: "json" },
    { path: join(configHome, "containers", "auth.json"), format: "json" },
    { path: dockerConfig, format: "json" },
    { path: join(h, ".dockercfg"), format: "legacy" },
  ];
}

/** The parsed content of an auth file (unknown fields are kept when it is rewritten). */
interface AuthFileJSON {
  auths?: Record<string, { auth?: string; identitytoken?: string; [k: string]: unknown }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [k: string]: unknown;
}

async function readAuthFile(loc: AuthFileLocation): Promise<AuthFileJSON | undefined> {
  let text: string;
  try {
    text = await fs.readFile(loc.path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw new AirlockError("ERR_IO", `cannot read auth file ${loc.path}: ${(err as Error).message}`, { cause: err });
  }
  if (text.trim() === "") return {};
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `auth file ${loc.path} is not valid JSON: fix or remove it`, { cause });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `auth file ${loc.path} is not a JSON object: fix or remove it`);
  }
  if (loc.format === "legacy") return { auths: json as AuthFileJSON["auths"] };
  return json as AuthFileJSON;
}

/**
 * Normalises an `auths` key for comparison: a key with an `http(s)://` prefix is a legacy Docker
 * key and is cut to its host; Docker Hub's aliases become `docker.io`.
 */
export function normalizeAuthKey(key: string): string {
  let k = key;
  if (/^https?:\/\//i.test(k)) {
    k = k.replace(/^https?:\/\//i, "");
    const slash = k.indexOf("/");
    if (slash >= 0) k = k.slice(0, slash);
  }
  k = k.replace(/\/+$/, "");
  const slash = k.indexOf("/");
  const host = slash < 0 ? k : k.slice(0, slash);
  if (host === "registry-1.docker.io" || host === "index.docker.io") return DOCKER_HUB_DOMAIN + (slash < 0 ? "" : k.slice(slash));
  return k;
}

/** The keys tried for `name` (`domain/path`), most specific first: `d/a/b/c`, `d/a/b`, `d/a`, `d`. */
export function authKeysFor(name: string): string[] {
  const parts = name.split("/");
  const keys: string[] = [];
  for (let n = parts.length; n >= 1; n--) keys.push(parts.slice(0, n).join("/"));
  return keys;
}

function decodeEntry(entry: { auth?: string; identitytoken?: string }, where: string): RegistryCredentials | undefined {
  const token = typeof entry.identitytoken === "string" && entry.identitytoken !== "" ? entry.identitytoken : undefined;
  let username = "";
  let password = "";
  if (typeof entry.auth === "string" && entry.auth !== "") {
    const text = Buffer.from(entry.auth, "base64").toString("utf8");
    const i = text.indexOf(":");
    if (i < 0) throw new AirlockError("ERR_INVALID_ARGUMENT", `auth file entry ${where} is malformed (its "auth" is not base64 of USER:PASSWORD); log in again`);
    username = text.slice(0, i);
    password = text.slice(i + 1).replace(/\0+$/, "");
  }
  if (!token && username === "" && password === "") return undefined;
  const creds: RegistryCredentials = { username, password };
  if (token) creds.identityToken = token;
  return creds;
}

/** Options of {@link lookupCredentials}. */
export interface LookupOptions extends AuthFileOptions {
  /** Runs a Docker credential helper (tests replace it); default spawns `docker-credential-NAME get`. */
  runHelper?: (helper: string, serverURL: string) => Promise<RegistryCredentials | undefined>;
}

/**
 * Finds stored credentials for the repository `name` (`domain/path`, e.g. `quay.io/org/app`, or
 * just a domain) in the auth files, in skopeo's order. Returns undefined when none match.
 */
export async function lookupCredentials(name: string, options: LookupOptions = {}): Promise<RegistryCredentials | undefined> {
  const found = await findCredentials(name, options);
  return found?.credentials;
}

/** Where a credential was found: the file and the key (or helper) that matched. */
export interface CredentialSource {
  credentials: RegistryCredentials;
  file: string;
  /** The `auths` key that matched, or `credHelpers:NAME` / `credsStore:NAME`. */
  key: string;
}

/** Like {@link lookupCredentials}, and says where the credentials came from. */
export async function findCredentials(name: string, options: LookupOptions = {}): Promise<CredentialSource | undefined> {
  const domain = normalizeAuthKey(name.split("/")[0] ?? name);
  const wanted = authKeysFor(normalizeAuthKey(name));
  const runHelper = options.runHelper ?? runCredentialHelper;
  const helperURL = domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_HELPER_URL : domain;
  for (const loc of authFileLocations(options)) {
    const file = await readAuthFile(loc);
    if (!file) continue;
    const helpers = file.credHelpers ?? {};
    const helperKey = Object.keys(helpers).find((k) => normalizeAuthKey(k) === domain);
    const helper = helperKey === undefined ? undefined : helpers[helperKey];
    if (helper) {
      const creds = await runHelper(helper, helperKey === undefined ? helperURL : helperKey);
      if (creds) return { credentials: creds, file: loc.path, key: `credHelpers:${helper}` };
    }
    const auths = file.auths ?? {};
    const normalised = new Map<string, string>();
    for (const k of Object.keys(auths)) {
      const n = normalizeAuthKey(k);
      // An exact key wins over a normalised legacy one.
      if (!normalised.has(n) || n === k) normalised.set(n, k);
    }
    for (const key of wanted) {
      const raw = normalised.get(key);
      if (raw === undefined) continue;
      const entry = auths[raw];
      if (!entry || typeof entry !== "object") continue;
      const creds = decodeEntry(entry, `${JSON.stringify(raw)} in ${loc.path}`);
      if (creds) return { credentials: creds, file: loc.path, key: raw };
    }
    if (typeof file.credsStore === "string" && file.credsStore !== "") {
      const creds = await runHelper(file.credsStore, helperURL);
      if (creds) return { credentials: creds, file: loc.path, key: `credsStore:${file.credsStore}` };
    }
  }
  return undefined;
}

/** Longest a credential helper may run, in ms. */
const HELPER_TIMEOUT_MS = 30_000;

/**
 * Runs `docker-credential-HELPER get` with `serverURL` on stdin (the Docker credential-helper
 * protocol). Returns undefined when the helper has no credentials for it; a username of
 * `<token>` means the secret is an identity token.
 */
export async function runCredentialHelper(helper: string, serverURL: string): Promise<RegistryCredentials | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `credential helper name ${JSON.stringify(helper)} is invalid`);
  }
  const program = `docker-credential-${helper}`;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    // Our own timer rather than spawn's `timeout`, which is not cleared when the program is missing
    // (ENOENT) and then keeps the process alive for HELPER_TIMEOUT_MS.
    const child = childProcess().spawn(program, ["get"], { stdio: ["pipe", "pipe", "pipe"] });
    const timer = setTimeout(() => child.kill(), HELPER_TIMEOUT_MS);
    timer.unref?.();
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      err += s;
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        reject(new AirlockError("ERR_INVALID_ARGUMENT", `credential helper ${program} (configured in an auth file) is not installed or not in PATH; install it or remove it from credHelpers/credsStore`, { cause: e }));
      } else reject(e);
    });
    child.on("close", (c) => {
      clearTimeout(timer);
      resolve({ code: c, stdout: out, stderr: err });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(serverURL);
  });
  if (code !== 0) {
    const text = `${stdout} ${stderr}`;
    if (/credentials not found/i.test(text)) return undefined;
    throw new AirlockError("ERR_UNAUTHORIZED", `credential helper ${program} failed for ${serverURL} (exit ${code}): ${stderr.trim().slice(0, 300) || stdout.trim().slice(0, 300)}`);
  }
  let json: { Username?: unknown; Secret?: unknown };
  try {
    json = JSON.parse(stdout) as typeof json;
  } catch (cause) {
    throw new AirlockError("ERR_UNAUTHORIZED", `credential helper ${program} printed something that is not JSON for ${serverURL}`, { cause });
  }
  const username = typeof json.Username === "string" ? json.Username : "";
  const secret = typeof json.Secret === "string" ? json.Secret : "";
  if (secret === "") return undefined;
  if (username === "<token>") return { username: "", password: "", identityToken: secret };
  return { username, password: secret };
}

/**
 * Normalises the argument of `login` / `logout` (`HOST[:PORT][/NAMESPACE…]`, possibly with an
 * `http(s)://` prefix or a Docker Hub alias) into an `auths` key.
 */
export function authKeyFor(registry: string): string {
  const trimmed = registry.trim();
  if (trimmed === "") throw new AirlockError("ERR_INVALID_ARGUMENT", "a registry name is required, e.g. quay.io or localhost:5000");
  let k = trimmed.replace(/^https?:\/\//i, "").replace(/\/+$/, "");
  if (/^https?:\/\//i.test(trimmed) && k.includes("/")) {
    // A URL such as https://index.docker.io/v1/ names its host.
    k = k.slice(0, k.indexOf("/"));
  }
  k = normalizeAuthKey(k);
  if (k.includes("@") || k.split("/").slice(1).some((c) => c === "" || c.includes(":"))) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `${JSON.stringify(registry)} is not a registry: expected HOST[:PORT][/NAMESPACE…] without a tag or digest`);
  }
  return k;
}

async function mutateAuthFile(path: string, fn: (file: AuthFileJSON) => boolean): Promise<boolean> {
  await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  return withFileLock(`${path}.lock`, async () => {
    const file = (await readAuthFile({ path, format: "json" })) ?? {};
    if (!fn(file)) return false;
    await writeFileAtomic(path, `${JSON.stringify(file, null, "\t")}\n`, 0o600);
    return true;
  });
}

/** Stores credentials for `registry` (an `auths` key) in the primary auth file, atomically, mode 0600. */
export async function storeCredentials(registry: string, creds: RegistryCredentials, options: AuthFileOptions = {}): Promise<string> {
  const key = authKeyFor(registry);
  const path = primaryAuthFile(options);
  await mutateAuthFile(path, (file) => {
    file.auths = file.auths && typeof file.auths === "object" ? file.auths : {};
    const entry: { auth: string; identitytoken?: string } = { auth: Buffer.from(`${creds.username}:${creds.password}`, "utf8").toString("base64") };
    if (creds.identityToken) entry.identitytoken = creds.identityToken;
    // Docker Hub may be stored under an alias by other tools; one entry is enough.
    if (key === DOCKER_HUB_DOMAIN) for (const alias of DOCKER_HUB_ALIASES) delete file.auths[alias];
    file.auths[key] = entry;
    return true;
  });
  return path;
}

/**
 * Removes the credentials for `registry` from the primary auth file. Returns false when that
 * file held none for it.
 */
export async function removeCredentials(registry: string, options: AuthFileOptions = {}): Promise<boolean> {
  const key = authKeyFor(registry);
  const path = primaryAuthFile(options);
  try {
    await fs.access(path);
  } catch {
    return false;
  }
  return mutateAuthFile(path, (file) => {
    const auths = file.auths ?? {};
    const matches = Object.keys(auths).filter((k) => normalizeAuthKey(k) === key);
    for (const k of matches) delete auths[k];
    return matches.length > 0;
  });
}

/** Removes every credential from the primary auth file. Returns false when there was none. */
export async function removeAllCredentials(options: AuthFileOptions = {}): Promise<boolean> {
  const path = primaryAuthFile(options);
  try {
    await fs.access(path);
  } catch {
    return false;
  }
  return mutateAuthFile(path, (file) => {
    const had = Object.keys(file.auths ?? {}).length > 0;
    file.auths = {};
    return had;
  });
}
