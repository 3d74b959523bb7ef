/**
 * containers-registries.conf(5), read as skopeo reads it (containers/image `pkg/sysregistriesv2`):
 * which file, which drop-ins, how they merge, which `[[registry]]` applies to a reference (longest
 * prefix), and what that means for reaching it — `insecure` (unverified TLS and plain HTTP),
 * `blocked`, `location` (a rewrite) and `[[registry.mirror]]` (pull sources tried before the
 * primary).
 * @see https://github.com/containers/image/blob/main/docs/containers-registries.conf.5.md
 * @see https://github.com/containers/image/blob/main/docs/containers-registries.conf.d.5.md
 */
import { promises as fs } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { AirlockError } from "../errors.js";
import { DockerReference } from "../reference/docker.js";
import type { DockerContext } from "../transports/types.js";
import type { RegistryCredentials } from "./auth.js";
import { lookupCredentials, runCredentialHelper } from "./authfile.js";

/** When a mirror is used: for every pull, only for pulls by digest, or only for pulls by tag. */
export type PullFromMirror = "all" | "digest-only" | "tag-only";

/** A `[[registry.mirror]]`: another place to pull the images of a registry from. */
export interface RegistryMirror {
  /** `host[:port][/namespace…]` that replaces the registry's prefix in a reference. */
  location: string;
  /** Allow plain HTTP and unverified TLS for this mirror. */
  insecure: boolean;
  /** When this mirror is used (default `all`). */
  pullFromMirror: PullFromMirror;
}

/** A `[[registry]]` table, with defaults applied (`prefix` defaults to `location`). */
export interface RegistryConfig {
  /** The references this applies to: `host[:port][/namespace…]`, or `*.domain` for its subdomains. */
  prefix: string;
  /** Where the references are really read and written; "" for a wildcard prefix without one (unchanged). */
  location: string;
  /** Allow plain HTTP and unverified TLS. */
  insecure: boolean;
  /** Refuse every access. */
  blocked: boolean;
  /** Use the mirrors only for pulls by digest. */
  mirrorByDigestOnly: boolean;
  /** The mirrors, tried in order before the primary location (pulls only). */
  mirrors: RegistryMirror[];
  /** The file that defined this table (for messages). */
  file: string;
}

/** The merged registries.conf(5) configuration of this process. */
export interface RegistriesConf {
  /** The files read, in the order applied (main file first, drop-ins after). */
  files: string[];
  /** Every `[[registry]]`, merged by prefix (a later file replaces a table with the same prefix). */
  registries: RegistryConfig[];
  /** `credential-helpers`: where credentials are looked up, in order (default `["containers-auth.json"]`). */
  credentialHelpers: string[];
  /** The file that set `credential-helpers`, if any (for messages). */
  credentialHelpersFile?: string;
}

/** Where to look for registries.conf: the process environment unless a test says otherwise. */
export interface RegistriesConfLookup {
  /** `--registries-conf`: that file only (it must exist), plus the drop-in directories. */
  path?: string | undefined;
  /** Environment variables (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** The home directory (default `os.homedir()`). */
  home?: string;
  /** The user id, for the rootful/rootless drop-in directories (default `process.getuid()`). */
  uid?: number;
  /** The system directories, in priority order (default `/etc/containers`, `/usr/share/containers`). */
  systemDirs?: string[];
}

const PULL_FROM_MIRROR: readonly PullFromMirror[] = ["all", "digest-only", "tag-only"];

/** What one file contributes before merging. */
interface PartialConf {
  registries: RegistryConfig[];
  credentialHelpers: string[] | undefined;
  credentialHelpersFile?: string;
}

/**
 * Parses the text of one registries.conf file (`file` names it in errors): the V2 format
 * (`[[registry]]` tables) or, outside drop-ins, the V1 format (`[registries.insecure]`,
 * `[registries.block]`, `[registries.search]`). Throws ERR_INVALID_ARGUMENT naming the file (and
 * the line, for TOML syntax) when it is malformed.
 */
export async function parseRegistriesConf(text: string, file: string, options: { dropIn?: boolean } = {}): Promise<PartialConf> {
  const { parse, TomlError } = await import("smol-toml");
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (cause) {
    const where = cause instanceof TomlError ? `${file}:${cause.line}:${cause.column}` : file;
    const msg = (cause as Error).message.split("\n")[0];
    throw new AirlockError("ERR_INVALID_ARGUMENT", `registries configuration ${where} is not valid TOML: ${msg}; fix the file or point --registries-conf elsewhere`, { cause });
  }
  const bad = (what: string): never => {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `registries configuration ${file}: ${what}; see containers-registries.conf(5)`);
  };
  const str = (v: unknown, key: string): string => (typeof v === "string" ? v : bad(`${key} must be a string`));
  const bool = (v: unknown, key: string): boolean => (v === undefined ? false : typeof v === "boolean" ? v : bad(`${key} must be true or false`));
  const strings = (v: unknown, key: string): string[] => (Array.isArray(v) && v.every((s) => typeof s === "string") ? (v as string[]) : bad(`${key} must be an array of strings`));
  const table = (v: unknown, key: string): Record<string, unknown> => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : bad(`${key} must be a table`));

  const registries: RegistryConfig[] = [];
  const v1 = doc.registries;
  if (v1 !== undefined && !Array.isArray(v1)) {
    // V1: [registries.search], [registries.insecure], [registries.block], each with registries = [...].
    if (options.dropIn) bad("the V1 format ([registries.*] tables) is not supported in drop-in files; use [[registry]] tables");
    if (doc.registry !== undefined) bad("mixing the V1 format ([registries.*]) with the V2 format ([[registry]]) is not supported");
    const t = table(v1, "registries");
    const byLocation = new Map<string, RegistryConfig>();
    const entry = (location: string): RegistryConfig => {
      const loc = parseLocation(location, bad);
      let r = byLocation.get(loc);
      if (!r) {
        r = { prefix: loc, location: loc, insecure: false, blocked: false, mirrorByDigestOnly: false, mirrors: [], file };
        byLocation.set(loc, r);
        registries.push(r);
      }
      return r;
    };
    for (const [kind, field] of [["insecure", "insecure"], ["block", "blocked"]] as const) {
      if (t[kind] === undefined) continue;
      const list = table(t[kind], `registries.${kind}`).registries;
      for (const loc of list === undefined ? [] : strings(list, `registries.${kind}.registries`)) entry(loc)[field] = true;
    }
    return { registries, credentialHelpers: undefined };
  }

  const list = doc.registry === undefined ? [] : Array.isArray(doc.registry) ? doc.registry : bad("registry must be an array of tables ([[registry]])");
  for (const [i, raw] of list.entries()) {
    const r = table(raw, `[[registry]] #${i + 1}`);
    const key = (k: string) => `[[registry]] #${i + 1} ${k}`;
    const locationText = r.location === undefined ? "" : str(r.location, key("location"));
    const prefixText = r.prefix === undefined ? "" : str(r.prefix, key("prefix"));
    if (locationText === "" && prefixText === "") bad(`${key("")}has neither prefix nor location`);
    const prefix = prefixText === "" ? parseLocation(locationText, bad) : parsePrefix(prefixText, bad);
    const wildcard = prefix.startsWith("*.");
    const location = locationText !== "" ? parseLocation(locationText, bad) : wildcard ? "" : prefix;
    const mirrorByDigestOnly = bool(r["mirror-by-digest-only"], key("mirror-by-digest-only"));
    const mirrors: RegistryMirror[] = [];
    const mirrorList = r.mirror === undefined ? [] : Array.isArray(r.mirror) ? r.mirror : bad(`${key("mirror")} must be an array of tables ([[registry.mirror]])`);
    for (const [j, rawMirror] of mirrorList.entries()) {
      const m = table(rawMirror, `${key("mirror")} #${j + 1}`);
      const mkey = (k: string) => `${key("")}[[registry.mirror]] #${j + 1} ${k}`;
      if (m.location === undefined || m.location === "") bad(`${mkey("location")} is not set`);
      const pull = m["pull-from-mirror"] === undefined || m["pull-from-mirror"] === "" ? "all" : str(m["pull-from-mirror"], mkey("pull-from-mirror"));
      if (!PULL_FROM_MIRROR.includes(pull as PullFromMirror)) bad(`${mkey("pull-from-mirror")} is ${JSON.stringify(pull)}; expected "all", "digest-only" or "tag-only"`);
      if (mirrorByDigestOnly && pull !== "all") bad(`${key("")}sets both mirror-by-digest-only and pull-from-mirror = ${JSON.stringify(pull)}; use one of them`);
      mirrors.push({ location: parseLocation(str(m.location, mkey("location")), bad), insecure: bool(m.insecure, mkey("insecure")), pullFromMirror: pull as PullFromMirror });
    }
    registries.push({ prefix, location, insecure: bool(r.insecure, key("insecure")), blocked: bool(r.blocked, key("blocked")), mirrorByDigestOnly, mirrors, file });
  }
  const helpers = doc["credential-helpers"] === undefined ? undefined : strings(doc["credential-helpers"], "credential-helpers");
  return helpers !== undefined && helpers.length > 0 ? { registries, credentialHelpers: helpers, credentialHelpersFile: file } : { registries, credentialHelpers: undefined };
}

/** A location without its trailing slash; a URL scheme is refused, as containers/image does. */
function parseLocation(location: string, bad: (what: string) => never): string {
  const loc = location.trim().replace(/\/+$/, "");
  if (loc.includes("://")) bad(`location ${JSON.stringify(location)} has a URL scheme, which is not supported; write host[:port][/namespace]`);
  return loc;
}

/** A prefix: a location, or `*.domain` (which must stop at the host). */
function parsePrefix(prefix: string, bad: (what: string) => never): string {
  const p = parseLocation(prefix, bad);
  if (p.startsWith("*.") && p.includes("/")) bad(`prefix ${JSON.stringify(prefix)}: a wildcard prefix names hosts only, e.g. *.example.com`);
  return p;
}

/** Merges `update` into `base`: a table with the same prefix is replaced, new ones appended; credential-helpers replaced when set. */
function merge(base: PartialConf, update: PartialConf): PartialConf {
  const byPrefix = new Map(base.registries.map((r) => [r.prefix, r]));
  for (const r of update.registries) byPrefix.set(r.prefix, r);
  return update.credentialHelpers ? { registries: [...byPrefix.values()], credentialHelpers: update.credentialHelpers, ...(update.credentialHelpersFile ? { credentialHelpersFile: update.credentialHelpersFile } : {}) } : { ...base, registries: [...byPrefix.values()] };
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new AirlockError("ERR_IO", `cannot read registries configuration ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The drop-in files to apply, in order: `*.conf` of every drop-in directory (user, then system
 * dirs, each with its rootful/rootless variant), a name in an earlier directory hiding the same
 * name in a later one, sorted by file name.
 */
async function dropInFiles(dirs: string[]): Promise<string[]> {
  const chosen = new Map<string, string>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      continue;
    }
    for (const name of names.filter((n) => n.endsWith(".conf")).sort()) if (!chosen.has(name)) chosen.set(name, join(dir, name));
  }
  return [...chosen.keys()].sort().map((n) => chosen.get(n) as string);
}

/**
 * Reads and merges registries.conf as skopeo does, without caching: `lookup.path`
 * (`--registries-conf`, which must exist) or else `$CONTAINERS_REGISTRIES_CONF` (no drop-ins), or
 * else the first existing of `$XDG_CONFIG_HOME/containers/registries.conf` (default
 * `~/.config/containers/registries.conf`), `/etc/containers/registries.conf`,
 * `/usr/share/containers/registries.conf`; then the drop-ins of `registries.conf.d` (and
 * `registries.rootful.conf.d` or `registries.rootless.conf.d[/UID]`) under the user's and the
 * system directories; then `$CONTAINERS_REGISTRIES_CONF_OVERRIDE`. No file at all is an empty
 * configuration.
 */
export async function readRegistriesConf(lookup: RegistriesConfLookup = {}): Promise<RegistriesConf> {
  const env = lookup.env ?? process.env;
  const home = lookup.home ?? homedir();
  const uid = lookup.uid ?? process.getuid?.() ?? -1;
  const systemDirs = lookup.systemDirs ?? ["/etc/containers", "/usr/share/containers"];
  const userDir = join(env.XDG_CONFIG_HOME || join(home, ".config"), "containers");
  let conf: PartialConf = { registries: [], credentialHelpers: undefined };
  const files: string[] = [];
  const apply = async (path: string, text: string, dropIn: boolean) => {
    conf = merge(conf, await parseRegistriesConf(text, path, { dropIn }));
    files.push(path);
  };

  let withDropIns = true;
  if (lookup.path) {
    const text = await readIfExists(lookup.path);
    if (text === undefined) throw new AirlockError("ERR_INVALID_ARGUMENT", `registries configuration ${lookup.path} (--registries-conf) does not exist`);
    await apply(lookup.path, text, false);
  } else if (env.CONTAINERS_REGISTRIES_CONF) {
    const text = await readIfExists(env.CONTAINERS_REGISTRIES_CONF);
    if (text !== undefined) await apply(env.CONTAINERS_REGISTRIES_CONF, text, false);
    withDropIns = false;
  } else {
    for (const dir of [userDir, ...systemDirs]) {
      const path = join(dir, "registries.conf");
      const text = await readIfExists(path);
      if (text === undefined) continue;
      await apply(path, text, false);
      break;
    }
  }
  if (withDropIns) {
    const variant = uid === 0 ? ["registries.rootful.conf.d"] : ["registries.rootless.conf.d", join("registries.rootless.conf.d", String(uid))];
    const dirs = [userDir, ...systemDirs].flatMap((d) => [join(d, "registries.conf.d"), ...(d === userDir ? [] : variant.map((v) => join(d, v)))]);
    for (const path of await dropInFiles(dirs)) {
      const text = await readIfExists(path);
      if (text !== undefined) await apply(path, text, true);
    }
  }
  const override = env.CONTAINERS_REGISTRIES_CONF_OVERRIDE;
  if (override) {
    const text = await readIfExists(override);
    if (text !== undefined) await apply(override, text, true);
  }
  return {
    files,
    registries: conf.registries,
    credentialHelpers: conf.credentialHelpers ?? [AUTH_FILE_HELPER],
    ...(conf.credentialHelpersFile ? { credentialHelpersFile: conf.credentialHelpersFile } : {}),
  };
}

/** The `credential-helpers` entry that means the auth files (auth.json and its `credHelpers`). */
export const AUTH_FILE_HELPER = "containers-auth.json";

const cache = new Map<string, Promise<RegistriesConf>>();

/**
 * The registries.conf configuration for `path` (`--registries-conf`, else the default lookup of
 * {@link readRegistriesConf}), read once per process and shared by every image.
 */
export function loadRegistriesConf(path?: string): Promise<RegistriesConf> {
  const key = path ? `path\n${path}` : `env\n${process.env.CONTAINERS_REGISTRIES_CONF ?? ""}\n${process.env.CONTAINERS_REGISTRIES_CONF_OVERRIDE ?? ""}\n${process.env.XDG_CONFIG_HOME ?? ""}`;
  let p = cache.get(key);
  if (!p) {
    p = readRegistriesConf(path ? { path } : {});
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}

/**
 * Where `prefix` matches the reference string `ref`: the length of the matched part, or -1
 * (containers/image `refMatchingPrefix`): a plain prefix must end at a `/`, `:` or `@` of `ref` (or
 * its end); `*.domain` matches any subdomain of `domain`, up to the end of the host.
 */
export function matchPrefix(ref: string, prefix: string): number {
  if (prefix.startsWith("*.")) {
    const suffix = prefix.slice(1);
    const i = ref.indexOf(suffix);
    if (i <= 0 || ref.slice(0, i).includes("/")) return -1;
    const end = i + suffix.length;
    return end === ref.length || ":/@".includes(ref[end] as string) ? end : -1;
  }
  if (!ref.startsWith(prefix)) return -1;
  return ref.length === prefix.length || ":/@".includes(ref[prefix.length] as string) ? prefix.length : -1;
}

/** The `[[registry]]` for a repository name (`domain/path`): the longest matching prefix, or undefined. */
export function findRegistry(conf: RegistriesConf, name: string): RegistryConfig | undefined {
  let best: RegistryConfig | undefined;
  let bestLength = -1;
  for (const r of conf.registries) {
    const n = matchPrefix(name, r.prefix);
    if (n > bestLength) {
      best = r;
      bestLength = n;
    }
  }
  return best;
}

/** One place to read or write an image: the reference there, and whether TLS may be unverified. */
export interface RegistryEndpoint {
  /** The reference at this place (the prefix replaced by the location). */
  ref: DockerReference;
  /** `insecure = true` for this place. */
  insecure: boolean;
  /** Whether this is a `[[registry.mirror]]` rather than the primary location. */
  mirror: boolean;
}

/** `ref` with the registry's prefix (matched against it) replaced by `location`; unchanged when `location` is "". */
function rewrite(ref: DockerReference, registry: RegistryConfig, location: string): DockerReference {
  if (location === "") return ref;
  const s = ref.toString();
  const end = matchPrefix(s, registry.prefix);
  if (end < 0) return ref;
  try {
    return DockerReference.parse(location + s.slice(end));
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `registries configuration ${registry.file}: location ${JSON.stringify(location)} of prefix ${JSON.stringify(registry.prefix)} turns ${s} into an invalid reference: ${(cause as Error).message}`, { cause });
  }
}

/**
 * The places to try for `ref` under `registry` (containers/image `PullSourcesFromReference`): for
 * a pull (reading an image), the mirrors that apply (all, or by `mirror-by-digest-only` /
 * `pull-from-mirror` only those for a reference by digest or by tag), then the primary location;
 * for anything else — a push, list-tags, delete — `ref` itself, as skopeo does (containers/image
 * rewrites and mirrors pulls only), with the registry's `insecure`.
 */
export function endpointsFor(registry: RegistryConfig | undefined, ref: DockerReference, operation: "pull" | "push" | "use"): RegistryEndpoint[] {
  if (!registry) return [{ ref, insecure: false, mirror: false }];
  if (operation !== "pull") return [{ ref, insecure: registry.insecure, mirror: false }];
  const byDigest = ref.digest !== undefined;
  const mirrors = registry.mirrorByDigestOnly
    ? byDigest
      ? registry.mirrors
      : []
    : registry.mirrors.filter((m) => m.pullFromMirror === "all" || (m.pullFromMirror === "digest-only") === byDigest);
  return [
    ...mirrors.map((m) => ({ ref: rewrite(ref, registry, m.location), insecure: m.insecure, mirror: true })),
    { ref: rewrite(ref, registry, registry.location), insecure: registry.insecure, mirror: false },
  ];
}

/** An endpoint with the registry settings to reach it. */
export interface ResolvedEndpoint extends RegistryEndpoint {
  /** `ctx` with `insecure` applied (TLS verification off unless the user asked for it explicitly) and, for a mirror on another registry, without the primary's `--creds` / `--registry-token`. */
  ctx: DockerContext;
}

/**
 * Applies registries.conf (`ctx.registriesConf`, else the default lookup) to `ref` for `operation`:
 * the places to try, in order. Throws ERR_DENIED when the registry is `blocked`, for any
 * operation, with skopeo's message ("registry X is blocked in FILE").
 */
export async function resolveRegistryEndpoints(ref: DockerReference, ctx: DockerContext, operation: "pull" | "push" | "use"): Promise<ResolvedEndpoint[]> {
  const conf = await loadRegistriesConf(ctx.registriesConf);
  const registry = findRegistry(conf, ref.name);
  if (registry?.blocked) throw blockedError(registry, String(ref), operation);
  return endpointsFor(registry, ref, operation).map((e) => {
    const insecure = e.insecure && ctx.tlsVerify !== true;
    const anonymous = e.mirror && e.ref.domain !== ref.domain && (ctx.credentials !== undefined || ctx.registryToken !== undefined);
    return { ...e, ctx: adjusted(ctx, insecure, anonymous) };
  });
}

/**
 * Applies registries.conf to a registry (or a repository prefix on it: `domain[/path]`) used as it
 * is named, for listings such as `inventory` that have no image reference: ERR_DENIED when it is
 * `blocked`, and `ctx` with TLS verification off when it is `insecure` (unless the user asked for
 * verification explicitly). `location` and mirrors do not apply: the registry named is the one read.
 */
export async function registryContext(name: string, ctx: DockerContext): Promise<DockerContext> {
  const conf = await loadRegistriesConf(ctx.registriesConf);
  const registry = findRegistry(conf, name);
  if (registry?.blocked) throw blockedError(registry, name, "use");
  return adjusted(ctx, registry?.insecure === true && ctx.tlsVerify !== true, false);
}

/** skopeo's refusal of a `blocked` registry, with what to do. */
function blockedError(registry: RegistryConfig, what: string, operation: "pull" | "push" | "use"): AirlockError {
  const verb = operation === "push" ? "written" : operation === "pull" ? "read" : "used";
  return new AirlockError("ERR_DENIED", `registry ${registry.prefix} is blocked in ${registry.file}: ${what} cannot be ${verb}; remove "blocked = true" from its [[registry]] there to allow it`);
}

const variants = new WeakMap<DockerContext, Map<string, DockerContext>>();

/**
 * `ctx` with TLS verification off (`insecure`) and/or without `--creds`/`--registry-token`
 * (`anonymous`): `ctx` itself when neither, else the same derived object for the same `ctx`, so
 * that callers keying clients by context object (sync's client pool) share them.
 */
function adjusted(ctx: DockerContext, insecure: boolean, anonymous: boolean): DockerContext {
  if (!insecure && !anonymous) return ctx;
  const key = `${insecure}/${anonymous}`;
  let m = variants.get(ctx);
  if (!m) {
    m = new Map();
    variants.set(ctx, m);
  }
  let c = m.get(key);
  if (!c) {
    const { credentials: _c, registryToken: _t, ...rest } = ctx;
    c = { ...(anonymous ? rest : ctx), ...(insecure ? { tlsVerify: false } : {}) };
    m.set(key, c);
  }
  return c;
}

/**
 * Finds stored credentials for the repository `name` (`domain/path`) as containers/image does,
 * through registries.conf's `credential-helpers` in order: `containers-auth.json` is the auth files
 * ({@link lookupCredentials}, honouring `ctx.authFile`), any other NAME runs
 * `docker-credential-NAME get` for the registry's domain. The first credentials found win; a helper
 * that fails is skipped, and its error thrown only when no other has credentials.
 */
export async function lookupConfiguredCredentials(name: string, ctx: DockerContext): Promise<RegistryCredentials | undefined> {
  const conf = await loadRegistriesConf(ctx.registriesConf);
  const domain = name.split("/")[0] ?? name;
  let failure: unknown;
  for (const helper of conf.credentialHelpers) {
    try {
      const creds = helper === AUTH_FILE_HELPER ? await lookupCredentials(name, ctx.authFile ? { authFile: ctx.authFile } : {}) : await runCredentialHelper(helper, domain);
      if (creds) return creds;
    } catch (err) {
      const notInstalled = err instanceof AirlockError && err.message.includes("is not installed");
      failure ??= notInstalled && helper !== AUTH_FILE_HELPER
        ? new AirlockError("ERR_INVALID_ARGUMENT", `credential helper docker-credential-${helper} (credential-helpers in ${conf.credentialHelpersFile ?? "registries.conf"}) is not installed or not in PATH; install it or remove it from credential-helpers`, { cause: err })
        : err;
    }
  }
  if (failure !== undefined) throw failure;
  return undefined;
}
