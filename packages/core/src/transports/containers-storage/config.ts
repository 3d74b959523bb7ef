/**
 * Where a containers/storage store is and which driver it uses, as podman 4 / containers/storage
 * decide it: storage.conf(5) — `$CONTAINERS_STORAGE_CONF`, else (rootless)
 * `$XDG_CONFIG_HOME/containers/storage.conf` (`~/.config/…`), else `/etc/containers/storage.conf`,
 * else `/usr/share/containers/storage.conf` — `[storage] driver, graphroot, runroot,
 * rootless_storage_path`, `$STORAGE_DRIVER`, then the reference's `[DRIVER@ROOT+RUNROOT]`. Without a
 * configured driver, the one whose files are already in the graph root is used.
 * @see https://github.com/containers/storage/blob/main/docs/containers-storage.conf.5.md
 * @see https://github.com/containers/storage/blob/main/types/options.go
 */
import { promises as fs } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { AirlockError } from "../../errors.js";
import type { StoreSpecifier } from "./reference.js";

/** A resolved store: the graph root (images, layers), the run root (runtime state) and the driver. */
export interface StoreOptions {
  graphRoot: string;
  runRoot: string;
  /** The graph driver named by configuration (undefined: detect from the graph root). */
  driver: string | undefined;
  /** The storage.conf that was read, if any. */
  configFile: string | undefined;
  /** Whether the store is a rootless user's. */
  rootless: boolean;
}

/** The environment a store is resolved in (process.env and the user; replaceable in tests). */
export interface StoreEnvironment {
  env: Record<string, string | undefined>;
  uid: number;
  home: string;
}

function currentEnvironment(): StoreEnvironment {
  return { env: process.env, uid: typeof process.getuid === "function" ? process.getuid() : 0, home: homedir() };
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new AirlockError("ERR_IO", `cannot read storage configuration ${path}: ${(err as Error).message}`, { cause: err });
  }
}

interface StorageTable {
  driver?: unknown;
  graphroot?: unknown;
  runroot?: unknown;
  rootless_storage_path?: unknown;
}

async function parseConf(path: string, text: string): Promise<StorageTable> {
  const { parse } = await import("smol-toml");
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `storage configuration ${path} is not valid TOML: ${(cause as Error).message}`, { cause });
  }
  const storage = doc.storage;
  return typeof storage === "object" && storage !== null ? (storage as StorageTable) : {};
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** Expands `$HOME`, `$UID` and `$USER` in a configured path, as containers/storage does. */
function expand(path: string, e: StoreEnvironment): string {
  return path
    .replace(/\$HOME|\$\{HOME\}/g, e.home)
    .replace(/\$UID|\$\{UID\}/g, String(e.uid))
    .replace(/\$USER|\$\{USER\}/g, e.env.USER ?? "");
}

/**
 * Resolves the store for a reference: storage.conf, `$STORAGE_DRIVER`, then the reference's
 * specifier. The driver stays undefined when nothing names one (see {@link detectDriver}).
 */
export async function resolveStoreOptions(spec: StoreSpecifier | undefined, environment: StoreEnvironment = currentEnvironment()): Promise<StoreOptions> {
  const { env, uid, home } = environment;
  const rootless = uid !== 0;
  const candidates: string[] = [];
  if (env.CONTAINERS_STORAGE_CONF) candidates.push(env.CONTAINERS_STORAGE_CONF);
  else {
    if (rootless) candidates.push(join(env.XDG_CONFIG_HOME || join(home, ".config"), "containers", "storage.conf"));
    candidates.push("/etc/containers/storage.conf", "/usr/share/containers/storage.conf");
  }
  let configFile: string | undefined;
  let table: StorageTable = {};
  for (const path of candidates) {
    const text = await readIfExists(path);
    if (text === undefined) {
      if (path === env.CONTAINERS_STORAGE_CONF) throw new AirlockError("ERR_INVALID_ARGUMENT", `CONTAINERS_STORAGE_CONF names ${path}, which does not exist`);
      continue;
    }
    configFile = path;
    table = await parseConf(path, text);
    break;
  }
  const userConf = rootless && configFile !== undefined && !configFile.startsWith("/etc/") && !configFile.startsWith("/usr/share/");
  let graphRoot: string;
  let runRoot: string;
  if (!rootless || userConf) {
    graphRoot = str(table.graphroot) ?? (rootless ? join(env.XDG_DATA_HOME || join(home, ".local", "share"), "containers", "storage") : "/var/lib/containers/storage");
    runRoot = str(table.runroot) ?? (rootless ? rootlessRunRoot(environment) : "/run/containers/storage");
  } else {
    // A rootless user with only the system's storage.conf: its driver applies, its paths do not.
    graphRoot = str(table.rootless_storage_path) ?? join(env.XDG_DATA_HOME || join(home, ".local", "share"), "containers", "storage");
    runRoot = rootlessRunRoot(environment);
  }
  graphRoot = expand(graphRoot, environment);
  runRoot = expand(runRoot, environment);
  let driver = str(env.STORAGE_DRIVER) ?? str(table.driver);
  if (spec?.driver) driver = spec.driver;
  if (spec?.graphRoot) graphRoot = spec.graphRoot;
  if (spec?.runRoot) runRoot = spec.runRoot;
  return { graphRoot, runRoot, driver, configFile, rootless };
}

function rootlessRunRoot(e: StoreEnvironment): string {
  if (e.env.XDG_RUNTIME_DIR) return join(e.env.XDG_RUNTIME_DIR, "containers");
  return join("/tmp", `containers-user-${e.uid}`, "containers");
}

/** Graph drivers containers/storage knows, in its order of preference. */
const KNOWN_DRIVERS = ["overlay", "btrfs", "zfs", "vfs", "aufs", "devicemapper"];

/**
 * The driver of a store whose configuration names none: the one whose files are in the graph root
 * (containers/storage's "prior driver"); undefined for an empty or missing graph root. Several
 * drivers with data there is an error, as in containers/storage.
 */
export async function detectDriver(graphRoot: string): Promise<string | undefined> {
  const found: string[] = [];
  for (const d of KNOWN_DRIVERS) {
    try {
      await fs.access(join(graphRoot, `${d}-layers`, "layers.json"));
      found.push(d);
    } catch {
      // not this one
    }
  }
  if (found.length > 1) {
    throw new AirlockError(
      "ERR_INVALID_ARGUMENT",
      `${graphRoot} contains several valid graph drivers (${found.join(", ")}); name the one to use with containers-storage:[DRIVER@${graphRoot}]… or in storage.conf`,
    );
  }
  return found[0];
}
