/**
 * registries.d(5) for the CLI: which directory is read, YAML parsing of its `*.yaml` files (the
 * merging and scope rules are @airlock/sign's), and the lookaside locations of one image.
 *
 * Directory: `--registries.d DIR`, else `~/.config/containers/registries.d` if it exists, else
 * `/etc/containers/registries.d` (containers/image `registriesDirPath`). A missing directory is an
 * empty configuration.
 * @see https://github.com/containers/image/blob/main/docs/containers-registries.d.5.md
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { AirlockError, type DockerReference } from "@airlock/core";
import {
  dockerPolicyIdentity,
  dockerPolicyNamespaces,
  lookasideBase,
  mergeRegistriesD,
  type RegistriesDConfig,
  type RegistriesDFile,
  type RegistriesDNamespace,
} from "@airlock/sign";

/** The system-wide registries.d directory. */
export const SYSTEM_REGISTRIES_D = "/etc/containers/registries.d";

/** The per-user registries.d directory, relative to the home directory. */
export const USER_REGISTRIES_D = ".config/containers/registries.d";

/** The registries.d directory to read: `explicit` (`--registries.d`), else the user's if it exists, else the system's. */
export function registriesDir(explicit?: string, home = homedir()): string {
  if (explicit) return explicit;
  const user = join(home, USER_REGISTRIES_D);
  return existsSync(user) ? user : SYSTEM_REGISTRIES_D;
}

/** A loaded registries.d configuration and the directory it came from (for messages). */
export interface RegistriesD {
  dir: string;
  config: RegistriesDConfig;
}

/**
 * Reads and merges every `*.yaml` file of the registries.d directory (in name order). Throws
 * ERR_INVALID_ARGUMENT naming the file (and line) of a YAML error or a conflicting definition.
 */
export async function loadRegistriesD(explicit?: string): Promise<RegistriesD> {
  const dir = registriesDir(explicit);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".yaml")).sort();
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return { dir, config: mergeRegistriesD([]) };
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read the registries.d directory ${dir}: ${(cause as Error).message}`, { cause });
  }
  const files: RegistriesDFile[] = [];
  for (const name of names) {
    const path = join(dir, name);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === "EISDIR") continue;
      throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read ${path}: ${(cause as Error).message}`, { cause });
    }
    // YAML is loaded only when there is a file to parse: copy reads registries.d on every run,
    // and many machines have none. yaml is CommonJS: a bundler's chunk of it may offer only the
    // default export (module.exports), where Node also offers its names.
    const yaml: Partial<typeof import("yaml")> & { default?: typeof import("yaml") } = await import("yaml");
    const parseDocument = yaml.parseDocument ?? (yaml.default as typeof import("yaml")).parseDocument;
    const doc = parseDocument(text, { prettyErrors: true });
    const problem = doc.errors[0];
    if (problem) {
      const at = problem.linePos?.[0];
      throw new AirlockError("ERR_INVALID_ARGUMENT", `parsing ${path}${at ? `:${at.line}:${at.col}` : ""}: ${problem.message.split("\n")[0]}`);
    }
    files.push({ name: path, content: doc.toJS() });
  }
  return { dir, config: mergeRegistriesD(files) };
}

function writeLocation(ns: RegistriesDNamespace | undefined): string {
  if (ns === undefined) return "";
  return ns.lookasideStaging || ns.sigstoreStaging || ns.lookaside || ns.sigstore || "";
}

/**
 * Where signatures of `ref` are written, as registries.d configures it (`lookaside-staging`, else
 * `lookaside`, from the most specific scope to `default-docker`); undefined when nothing is
 * configured — airlock then refuses to write signatures rather than use a built-in location.
 */
export function configuredLookasideStaging(config: RegistriesDConfig, ref: DockerReference): string | undefined {
  for (const scope of [dockerPolicyIdentity(ref), ...dockerPolicyNamespaces(ref)]) {
    const url = writeLocation(config.docker.get(scope));
    if (url !== "") return url;
  }
  return writeLocation(config.defaultDocker) || undefined;
}

/** Where signatures of `ref` are read: the configured `lookaside`, else the built-in default location. */
export function lookasideForReading(config: RegistriesDConfig, ref: DockerReference): string {
  return lookasideBase(config, ref, false, { homeDir: homedir() });
}

/** A one-line hint on configuring lookaside storage for `ref` in `dir`. */
export function lookasideHint(ref: DockerReference, dir: string): string {
  return `add a file such as ${join(dir, "airlock.yaml")} with "docker: {${ref.domain}: {lookaside-staging: file:///var/lib/containers/sigstore}}" (and a lookaside: URL readers can reach), or name another directory with --registries.d DIR`;
}
