/**
 * Lookaside signature storage for registries (containers-registries.d(5), formerly "sigstore"):
 * signatures live beside the registry, at `BASE/REPOSITORY@ALGORITHM=HEX/signature-N` (N = 1, 2,
 * …, read until one is missing), where BASE comes from registries.d configuration. This module
 * holds the pure logic — URL layout, scope lookup and merging of already-parsed registries.d files;
 * reading YAML is the CLI's job (@airlock/sign does not depend on a YAML parser).
 *
 * @see https://github.com/containers/image/blob/main/docs/containers-registries.d.5.md
 * @see https://github.com/containers/image/blob/main/docker/registries_d.go
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { AirlockError, type Digest, DockerReference, digestAlgorithm, digestHex, parseDigest } from "@airlock/core";
import { dockerPolicyIdentity, dockerPolicyNamespaces } from "./policy/scope.js";

/** containers/image reads at most this many lookaside signatures per manifest. */
export const MAX_LOOKASIDE_SIGNATURES = 128;

/** The lookaside base used for root when registries.d configures none. */
export const DEFAULT_ROOT_LOOKASIDE = "file:///var/lib/containers/sigstore";

/** The lookaside base directory for other users, relative to their home directory. */
export const DEFAULT_USER_LOOKASIDE_DIR = ".local/share/containers/sigstore";

/**
 * The URL of the `n`-th signature (1-based: `signature-1` is the first) of the manifest `digest`
 * in repository `dockerReference`, under the lookaside `base` URL: `BASE/PATH@ALG=HEX/signature-N`,
 * where PATH is the repository path without the registry host (`library/busybox`). Joined exactly
 * as containers/image does (`base.Path + "/" + path`), so a base ending in "/" gives "//".
 */
export function lookasideSignatureURL(base: string, dockerReference: string | DockerReference, digest: Digest | string, n: number): string {
  if (!Number.isSafeInteger(n) || n < 1) throw new AirlockError("ERR_INVALID_ARGUMENT", `signature index ${n} is invalid: signatures are numbered from 1`);
  const d = parseDigest(digest);
  const ref = typeof dockerReference === "string" ? DockerReference.parse(dockerReference) : dockerReference;
  let url: URL;
  try {
    url = new URL(base);
  } catch (err) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid signature storage URL ${JSON.stringify(base)}: ${(err as Error).message}`, { cause: err });
  }
  // Go's url.Parse gives "" as the path of "https://host", where WHATWG URL gives "/".
  const basePath = url.pathname === "/" && !(base.split(/[?#]/)[0] as string).endsWith("/") ? "" : url.pathname;
  url.pathname = `${basePath}/${ref.path}@${digestAlgorithm(d)}=${digestHex(d)}/signature-${n}`;
  return url.toString();
}

/** One namespace section of registries.d (`default-docker` or an entry of `docker`). */
export interface RegistriesDNamespace {
  /** Where signatures are read (and written, without a staging location). */
  lookaside?: string;
  /** Where signatures are written. */
  lookasideStaging?: string;
  /** Deprecated name of `lookaside`. */
  sigstore?: string;
  /** Deprecated name of `lookaside-staging`. */
  sigstoreStaging?: string;
  /** Whether to use sigstore attachments (not implemented by airlock; kept for completeness). */
  useSigstoreAttachments?: boolean;
}

/** registries.d configuration, merged from all files of the directory. */
export interface RegistriesDConfig {
  /** The `default-docker` section, if any file has one. */
  defaultDocker?: RegistriesDNamespace;
  /** The `docker` sections by scope (`host[:port]/ns/repo[:tag]`, a parent, a host, or `*.domain`). */
  docker: Map<string, RegistriesDNamespace>;
}

/** A registries.d file after YAML parsing: its name (for messages) and the decoded document. */
export interface RegistriesDFile {
  name: string;
  content: unknown;
}

const FIELDS: Record<string, keyof RegistriesDNamespace> = {
  lookaside: "lookaside",
  "lookaside-staging": "lookasideStaging",
  sigstore: "sigstore",
  "sigstore-staging": "sigstoreStaging",
  "use-sigstore-attachments": "useSigstoreAttachments",
};

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function parseNamespace(v: unknown, file: string, where: string): RegistriesDNamespace {
  if (v === null || v === undefined) return {};
  if (!isRecord(v)) throw new AirlockError("ERR_INVALID_ARGUMENT", `parsing ${file}: ${where} must be a mapping`);
  const ns: RegistriesDNamespace = {};
  for (const [yamlKey, field] of Object.entries(FIELDS)) {
    const value = v[yamlKey];
    if (value === undefined || value === null) continue;
    if (field === "useSigstoreAttachments") {
      if (typeof value !== "boolean") throw new AirlockError("ERR_INVALID_ARGUMENT", `parsing ${file}: ${where}.${yamlKey} must be true or false`);
      ns.useSigstoreAttachments = value;
    } else {
      if (typeof value !== "string") throw new AirlockError("ERR_INVALID_ARGUMENT", `parsing ${file}: ${where}.${yamlKey} must be a URL string`);
      ns[field] = value;
    }
  }
  return ns;
}

/**
 * Merges parsed registries.d files (in the order the directory lists them) as containers/image
 * does: unknown keys are ignored; `default-docker`, or the same `docker` scope, in two files is an
 * error naming both. Throws ERR_INVALID_ARGUMENT.
 */
export function mergeRegistriesD(files: readonly RegistriesDFile[]): RegistriesDConfig {
  const merged: RegistriesDConfig = { docker: new Map() };
  let defaultFrom = "";
  const from = new Map<string, string>();
  for (const { name, content } of files) {
    if (content === null || content === undefined) continue;
    if (!isRecord(content)) throw new AirlockError("ERR_INVALID_ARGUMENT", `parsing ${name}: the document must be a mapping`);
    if (content["default-docker"] !== undefined && content["default-docker"] !== null) {
      if (merged.defaultDocker !== undefined) {
        throw new AirlockError("ERR_INVALID_ARGUMENT", `error parsing signature storage configuration: "default-docker" defined both in ${JSON.stringify(defaultFrom)} and ${JSON.stringify(name)}`);
      }
      merged.defaultDocker = parseNamespace(content["default-docker"], name, "default-docker");
      defaultFrom = name;
    }
    const docker = content.docker;
    if (docker === undefined || docker === null) continue;
    if (!isRecord(docker)) throw new AirlockError("ERR_INVALID_ARGUMENT", `parsing ${name}: docker must be a mapping of scopes`);
    for (const [scope, ns] of Object.entries(docker)) {
      const previous = from.get(scope);
      if (previous !== undefined) {
        throw new AirlockError(
          "ERR_INVALID_ARGUMENT",
          `error parsing signature storage configuration: "docker" namespace ${JSON.stringify(scope)} defined both in ${JSON.stringify(previous)} and ${JSON.stringify(name)}`,
        );
      }
      merged.docker.set(scope, parseNamespace(ns, name, `docker[${JSON.stringify(scope)}]`));
      from.set(scope, name);
    }
  }
  return merged;
}

function topLevel(ns: RegistriesDNamespace | undefined, write: boolean): string {
  if (ns === undefined) return "";
  if (write && ns.lookasideStaging) return ns.lookasideStaging;
  if (write && ns.sigstoreStaging) return ns.sigstoreStaging;
  return ns.lookaside || ns.sigstore || "";
}

/** Who is asking, for the built-in default location. */
export interface LookasideUser {
  /** Effective user ID; 0 means root. Default process.geteuid?.() ?? 0. */
  euid?: number;
  /** Home directory of a non-root user. */
  homeDir: string;
}

/** The built-in lookaside base when nothing is configured: `/var/lib/containers/sigstore` for root, `~/.local/share/containers/sigstore` otherwise. */
export function defaultLookasideBase(user: LookasideUser): string {
  const euid = user.euid ?? process.geteuid?.() ?? 0;
  return euid === 0 ? DEFAULT_ROOT_LOOKASIDE : pathToFileURL(join(user.homeDir, DEFAULT_USER_LOOKASIDE_DIR)).href;
}

/**
 * The lookaside base URL for an image (without the repository path; pass it to
 * {@link lookasideSignatureURL}): the first section, from the most specific scope (the full
 * reference, then repository, namespaces, host, `*.domain`) to `default-docker`, that configures a
 * location — for writing, `lookaside-staging` (or `sigstore-staging`) before `lookaside` (or
 * `sigstore`) — else the built-in default for `user`.
 */
export function lookasideBase(config: RegistriesDConfig, dockerReference: string | DockerReference, write: boolean, user: LookasideUser): string {
  const ref = typeof dockerReference === "string" ? DockerReference.parse(dockerReference) : dockerReference;
  for (const scope of [dockerPolicyIdentity(ref), ...dockerPolicyNamespaces(ref)]) {
    const url = topLevel(config.docker.get(scope), write);
    if (url !== "") return url;
  }
  return topLevel(config.defaultDocker, write) || defaultLookasideBase(user);
}
