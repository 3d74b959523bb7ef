/**
 * `login`, `logout` and `getLogin`: credentials checked against the registry before they are
 * stored, in the auth file skopeo and Podman use (containers-auth.json(5)).
 */
import { AirlockError } from "../errors.js";
import type { RegistryCredentials } from "./auth.js";
import { type AuthFileOptions, authKeyFor, findCredentials, primaryAuthFile, removeAllCredentials, removeCredentials, storeCredentials } from "./authfile.js";
import { registryHostFor } from "./client.js";
import { type ConnectionOptions, dumpBody, RegistryConnection } from "./http.js";
import { findRegistry, loadRegistriesConf } from "./registries-conf.js";

/** Options of {@link login}. */
export interface LoginOptions extends AuthFileOptions, ConnectionOptions {
  /** `--tls-verify=false`: skip TLS verification and allow plain HTTP. */
  tlsVerify?: boolean;
  /** `--cert-dir`. */
  certDir?: string;
  userAgent?: string;
  retryTimes?: number;
  retryDelayMs?: number;
  /** `--registries-conf`: the registries.conf(5) whose `insecure` and `blocked` apply to the registry (default: the usual lookup). */
  registriesConf?: string;
  signal?: AbortSignal;
}

/** What {@link login} did. */
export interface LoginResult {
  /** The auth file written. */
  authFile: string;
  /** The key the credentials were stored under (`quay.io`, `localhost:5000/ns`). */
  key: string;
}

/**
 * Checks `credentials` against `registry` (`HOST[:PORT][/NAMESPACE…]`) — a `GET /v2/` with basic
 * auth, or a token request without scope for bearer registries — and, when the registry accepts
 * them, stores them in the auth file (atomically, mode 0600). Throws ERR_UNAUTHORIZED when the
 * registry rejects them; nothing is written then.
 */
export async function login(registry: string, credentials: RegistryCredentials, options: LoginOptions = {}): Promise<LoginResult> {
  const key = authKeyFor(registry);
  if (credentials.username === "" && !credentials.identityToken) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `logging in to ${key}: a username is required (--username, or --creds USERNAME:PASSWORD)`);
  }
  await verifyCredentials(key, credentials, options);
  const authFile = await storeCredentials(key, credentials, options);
  return { authFile, key };
}

/** Checks credentials against a registry without storing them. Throws ERR_UNAUTHORIZED when rejected. */
export async function verifyCredentials(registry: string, credentials: RegistryCredentials, options: LoginOptions = {}): Promise<void> {
  const key = authKeyFor(registry);
  const domain = key.split("/")[0] as string;
  // registries.conf, as for skopeo login: `blocked` refuses, `insecure` acts as --tls-verify=false unless it was given.
  const conf = await loadRegistriesConf(options.registriesConf);
  const configured = findRegistry(conf, key);
  if (configured?.blocked) throw new AirlockError("ERR_DENIED", `registry ${configured.prefix} is blocked in ${configured.file}: cannot log in to ${key}; remove "blocked = true" from its [[registry]] there to allow it`);
  const tlsVerify = options.tlsVerify ?? (configured?.insecure ? false : undefined);
  const ctx = {
    ...(tlsVerify === undefined ? {} : { tlsVerify }),
    ...(options.certDir === undefined ? {} : { certDir: options.certDir }),
    ...(options.userAgent === undefined ? {} : { userAgent: options.userAgent }),
    ...(options.retryTimes === undefined ? {} : { retryTimes: options.retryTimes }),
    ...(options.retryDelayMs === undefined ? {} : { retryDelayMs: options.retryDelayMs }),
  };
  const connOptions: ConnectionOptions = {
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...(options.log ? { log: options.log } : {}),
    // Given as if from an auth file, so that an identity token is exchanged with the refresh-token grant as later requests will.
    lookupCredentials: async () => credentials,
  };
  const conn = new RegistryConnection(domain, registryHostFor(domain), ctx, connOptions);
  try {
    const res = await conn.send({ method: "GET", url: "/v2/", scopes: [], ok: [200], kind: "ping", what: `logging in to ${domain}`, signal: options.signal });
    await dumpBody(res.body);
  } finally {
    await conn.close();
  }
}

/** Options of {@link logout}. */
export interface LogoutOptions extends AuthFileOptions {
  /** `--all`: remove every credential from the auth file. */
  all?: boolean;
}

/**
 * Removes the stored credentials for `registry` from the auth file (or, with `all`, every
 * credential). Throws ERR_INVALID_ARGUMENT when the file holds none for it, and says where the
 * credentials in use come from when another file (e.g. Docker's config.json) holds them.
 */
export async function logout(registry: string | undefined, options: LogoutOptions = {}): Promise<{ authFile: string }> {
  const authFile = primaryAuthFile(options);
  if (options.all) {
    await removeAllCredentials(options);
    return { authFile };
  }
  if (registry === undefined || registry === "") throw new AirlockError("ERR_INVALID_ARGUMENT", "logout needs a registry name, or --all");
  const key = authKeyFor(registry);
  if (await removeCredentials(key, options)) return { authFile };
  const elsewhere = await findCredentials(key, { ...options, env: options.env ?? process.env });
  if (elsewhere && elsewhere.file !== authFile) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `not logged into ${key} in ${authFile}; the credentials in use come from ${elsewhere.file} (${elsewhere.key}): remove them there, e.g. with "docker logout ${key}"`);
  }
  throw new AirlockError("ERR_INVALID_ARGUMENT", `not logged into ${key}`);
}

/** Returns the username stored for `registry` (`--get-login`). Throws ERR_INVALID_ARGUMENT when there is none. */
export async function getLogin(registry: string, options: AuthFileOptions = {}): Promise<string> {
  const key = authKeyFor(registry);
  const found = await findCredentials(key, options);
  if (!found) throw new AirlockError("ERR_INVALID_ARGUMENT", `not logged into ${key}`);
  return found.credentials.username;
}
