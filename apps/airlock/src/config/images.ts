/**
 * `images.yaml` (version 1): the declarative list of images an air-gap bundle carries, read and
 * checked strictly. Every problem is reported as `FILE:LINE:COL: message`, all at once. The format
 * is documented in manifests/README.md; its JSON Schema is manifests/images.schema.json.
 *
 * Reading is pure (no network, no environment): credentials are *sources* here (names of
 * environment variables, an auth file), read only when images are resolved (resolve.ts).
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, isAbsolute, resolve as resolvePath } from "node:path";
import { AirlockError, type Digest, DOCKER_HUB_DOMAIN, DockerReference, formatPlatform, isValidDomain, isValidTag, normalizePlatform, type Platform, parseImageName, parsePlatform, transportNames } from "@airlock/core";
import type { Node } from "yaml";
import { NAMING_MODES, type NamingMode } from "./naming.js";
import { regexProblem, semverRangeProblem, type TagFilter } from "./tags.js";
import { type Entry, YamlChecker } from "./yaml-check.js";

/** The one version of the images file format this airlock reads. */
export const IMAGES_FILE_VERSION = 1;

/** Which platforms of a multi-platform image to carry: every one, or those listed. */
export type PlatformSelection = "all" | readonly Platform[];

/** Where the credentials of a registry come from. Never the secrets themselves. */
export type CredentialsSource =
  /** A username and a password read from these environment variables when images are resolved. */
  | { kind: "env"; usernameVar: string; passwordVar: string }
  /** This auth file (containers-auth.json(5) / Docker config.json) and no other. */
  | { kind: "authFile"; path: string }
  /** Anonymous access: no credentials at all, even if an auth file has some. */
  | { kind: "none" };

/** The settings of one source registry (`registries.HOST[:PORT]`). */
export interface RegistrySettings {
  /** The registry host with optional port, normalised (`index.docker.io` → `docker.io`). */
  host: string;
  /** false: skip TLS verification and allow plain HTTP. undefined: verify. */
  tlsVerify?: boolean;
  /** Absolute directory of `*.crt` CA files and a `*.cert`/`*.key` client pair. */
  certDir?: string;
  /** Where the credentials come from; undefined: the default auth files. */
  credentials?: CredentialsSource;
  /** `FILE:LINE:COL` of the registry's key. */
  at: string;
}

/** A name given with `as:`: a repository path under the destination, with an optional tag. */
export interface AsName {
  /** The repository path, e.g. `example/single` (never starts with a registry host). */
  repository: string;
  /** The tag, if one was given. */
  tag?: string;
}

/** What every image entry has. */
interface ImageEntryBase {
  /** 0-based position in `images:`. */
  index: number;
  /** `FILE:LINE:COL` of the entry. */
  at: string;
  /** The platforms to carry (the entry's own, or the default). */
  platforms: PlatformSelection;
  /** With a platform list on an index: true keeps the whole original index (digest unchanged). */
  keepIndex: boolean;
  /** The name in the bundle and at the destination, when renamed with `as:`. */
  as?: AsName;
}

/** Which tags or digest of a repository an entry means. */
export type ImageSelection =
  | { kind: "digest"; digest: Digest }
  | { kind: "tags"; tags: readonly string[] }
  | { kind: "filter"; filter: TagFilter };

/** An image in a registry (`name:` or `source: docker://…`). */
export interface RegistryImageEntry extends ImageEntryBase {
  kind: "registry";
  /** The repository, normalised, without tag or digest: `docker.io/library/busybox`. */
  repository: DockerReference;
  /** The digest, the tags, or the tag filter. */
  selection: ImageSelection;
}

/** An image in another transport (`source: oci:…`, `dir:…`, …); always renamed with `as:`. */
export interface TransportImageEntry extends ImageEntryBase {
  kind: "transport";
  /** The source as written in the file, e.g. `oci:./fixtures/oci:single`. */
  sourceAsWritten: string;
  /** The source with a relative path made absolute against the file's directory. */
  source: string;
  /** The name in the bundle (with a tag). */
  as: AsName & { tag: string };
}

/** One entry of `images:`. */
export type ImageEntry = RegistryImageEntry | TransportImageEntry;

/** A checked `images.yaml`. */
export interface ImagesConfig {
  /** The format version: 1. */
  version: 1;
  /** The file name as given (used in messages). */
  file: string;
  /** The absolute directory relative paths were resolved against. */
  dir: string;
  /** Settings every image gets unless it says otherwise. */
  defaults: { platforms: PlatformSelection; keepIndex: boolean };
  /** Per source registry settings, by normalised host. */
  registries: ReadonlyMap<string, RegistrySettings>;
  /** How images are named in the offline registry. */
  destination: { naming: NamingMode };
  /** The images, in file order. */
  images: readonly ImageEntry[];
}

const TOP_KEYS = ["version", "defaults", "registries", "destination", "images"] as const;
const DEFAULTS_KEYS = ["platforms", "keepIndex"] as const;
const REGISTRY_KEYS = ["tlsVerify", "certDir", "credentials"] as const;
const CREDENTIALS_KEYS = ["env", "authFile", "none"] as const;
const ENV_KEYS = ["username", "password"] as const;
const DESTINATION_KEYS = ["naming"] as const;
const IMAGE_KEYS = ["name", "source", "tags", "platforms", "keepIndex", "as"] as const;
const FILTER_KEYS = ["include", "exclude", "semver", "newest"] as const;

/** Transports whose reference starts with a filesystem path, and where that path ends. */
const PATH_TRANSPORTS: Record<string, "first-colon" | "whole"> = {
  oci: "first-colon",
  "oci-archive": "first-colon",
  "docker-archive": "first-colon",
  dir: "whole",
};

const SECRET_HINT = "name where they come from: credentials: { env: { username: VAR, password: VAR } }, { authFile: PATH } or { none: true }";
const ENV_VAR_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLATFORM_PART_RE = /^[a-z0-9][a-z0-9._-]*$/;
const q = (s: string): string => JSON.stringify(s);

/** Reads and checks an images file. Throws ERR_IO when it cannot be read, ConfigFileError when invalid. */
export async function loadImagesFile(path: string): Promise<ImagesConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (err as Error).message;
    throw new AirlockError("ERR_IO", `cannot read images file ${path}: ${why}; pass the file with -f FILE`, { cause: err });
  }
  return parseImagesConfig(text, path);
}

/**
 * Parses and checks the text of an images file. `fileName` names the file in messages and is the
 * base of relative paths (`oci:./layout`, `certDir`, `authFile`). Throws a ConfigFileError
 * (ERR_INVALID_ARGUMENT) listing every problem as `FILE:LINE:COL: message`.
 */
export function parseImagesConfig(text: string, fileName: string): ImagesConfig {
  const c = new YamlChecker(text, fileName);
  const dir = dirname(resolvePath(fileName));
  const config: ImagesConfig = {
    version: 1,
    file: fileName,
    dir,
    defaults: { platforms: "all", keepIndex: false },
    registries: new Map(),
    destination: { naming: "keep-path" },
    images: [],
  };
  if (c.root === null) {
    if (c.issues.length === 0) c.error(null, "the file is empty; it must hold `version: 1` and an `images:` list");
    c.throwIfIssues("images file");
    return config;
  }
  const top = c.mapping(c.root, "the file", TOP_KEYS, SECRET_HINT);
  if (top === undefined) {
    c.throwIfIssues("images file");
    return config;
  }

  const version = c.require(top, "version", c.root, "the file");
  if (version !== undefined && !c.isScalarValue(version.value, IMAGES_FILE_VERSION)) {
    c.error(version.value ?? version.key, `version must be ${IMAGES_FILE_VERSION} (the images file format this airlock reads)`);
  }

  const defaults = top.get("defaults");
  if (defaults !== undefined) {
    const d = c.mapping(defaults.value, "defaults", DEFAULTS_KEYS, SECRET_HINT);
    if (d?.has("platforms")) {
      const p = readPlatforms(c, d.get("platforms")!.value, "defaults.platforms");
      if (p !== undefined) config.defaults.platforms = p;
    }
    if (d?.has("keepIndex")) {
      const k = c.boolean(d.get("keepIndex")!.value, "defaults.keepIndex");
      if (k !== undefined) config.defaults.keepIndex = k;
    }
  }

  const registries = top.get("registries");
  if (registries !== undefined) config.registries = readRegistries(c, registries.value, dir);

  const destination = top.get("destination");
  if (destination !== undefined) {
    const d = c.mapping(destination.value, "destination", DESTINATION_KEYS);
    const naming = d?.get("naming");
    if (naming !== undefined) {
      const n = c.string(naming.value, "destination.naming");
      if (n !== undefined && !(NAMING_MODES as readonly string[]).includes(n)) {
        c.error(naming.value, `destination.naming must be one of ${NAMING_MODES.join(", ")}, found ${q(n)}`);
      } else if (n !== undefined) {
        config.destination.naming = n as NamingMode;
      }
    }
  }

  const images = c.require(top, "images", c.root, "the file");
  if (images !== undefined) {
    const items = c.list(images.value, "images");
    if (items !== undefined && items.length === 0) c.error(images.value, "images must list at least one image");
    config.images = (items ?? []).flatMap((item, i) => {
      const e = readImage(c, item, i, config.defaults, dir);
      return e === undefined ? [] : [e];
    });
    checkDuplicates(c, config.images, items ?? []);
  }

  c.throwIfIssues("images file");
  return config;
}

/** Reads `platforms:`: "all", one platform, or a list of platforms. */
function readPlatforms(c: YamlChecker, node: Node | null, path: string): PlatformSelection | undefined {
  if (c.isScalarValue(node, "all")) return "all";
  const items = c.isList(node) ? c.list(node, path) : [c.deref(node)];
  if (items === undefined) return undefined;
  if (items.length === 0) {
    c.error(node, `${path} must not be empty; write "all" or a list such as [linux/amd64, linux/arm64]`);
    return undefined;
  }
  const out: Platform[] = [];
  const seen = new Set<string>();
  let ok = true;
  items.forEach((item, i) => {
    const where = c.isList(node) ? `${path}[${i}]` : path;
    if (c.isScalarValue(item, "all")) {
      c.error(item, `${where}: "all" cannot be part of a list; write platforms: all`);
      ok = false;
      return;
    }
    const s = c.string(item, where);
    if (s === undefined) {
      ok = false;
      return;
    }
    let p: Platform;
    try {
      p = parsePlatform(s);
    } catch (err) {
      c.error(item, `${where}: ${(err as Error).message}`);
      ok = false;
      return;
    }
    if (![p.os, p.architecture, p.variant ?? "v"].every((x) => PLATFORM_PART_RE.test(x))) {
      c.error(item, `${where}: invalid platform ${q(s)}: OS, architecture and variant are lowercase, e.g. linux/arm64/v8`);
      ok = false;
      return;
    }
    const key = formatPlatform(normalizePlatform(p));
    if (seen.has(key)) {
      c.error(item, `${where}: platform ${q(s)} is listed twice`);
      ok = false;
      return;
    }
    seen.add(key);
    out.push(p);
  });
  return ok ? out : undefined;
}

/** Expands `~/` and makes a path absolute against `dir`. */
function localPath(p: string, dir: string): string {
  if (p === "~" || p.startsWith("~/")) return resolvePath(homedir(), p.slice(2));
  return isAbsolute(p) ? p : resolvePath(dir, p);
}

/** Normalises a registry key the way image references are: `index.docker.io` and `registry-1.docker.io` are `docker.io`. */
function normaliseHost(host: string): string {
  return host === "index.docker.io" || host === "registry-1.docker.io" ? DOCKER_HUB_DOMAIN : host;
}

function readRegistries(c: YamlChecker, node: Node | null, dir: string): Map<string, RegistrySettings> {
  const out = new Map<string, RegistrySettings>();
  const entries = c.mapping(node, "registries", undefined);
  if (entries === undefined) return out;
  for (const [host, { key, value }] of entries) {
    const path = `registries.${host}`;
    if (!isValidDomain(host) || host.includes("/")) {
      c.error(key, `${path}: ${q(host)} is not a registry host; keys of registries are HOST or HOST:PORT, e.g. registry.example.com:5000`);
      continue;
    }
    const normal = normaliseHost(host);
    const previous = out.get(normal);
    if (previous !== undefined) {
      c.error(key, `${path}: registry ${q(normal)} is already configured at ${previous.at}`);
      continue;
    }
    const settings: RegistrySettings = { host: normal, at: c.where(key) };
    out.set(normal, settings);
    if (value === null || c.isScalarValue(value, null)) continue; // `host:` with no settings
    const r = c.mapping(value, path, REGISTRY_KEYS, SECRET_HINT);
    if (r === undefined) continue;
    if (r.has("tlsVerify")) {
      const v = c.boolean(r.get("tlsVerify")!.value, `${path}.tlsVerify`);
      if (v !== undefined) settings.tlsVerify = v;
    }
    if (r.has("certDir")) {
      const v = c.string(r.get("certDir")!.value, `${path}.certDir`);
      if (v !== undefined) settings.certDir = localPath(v, dir);
    }
    const creds = r.get("credentials");
    if (creds !== undefined) {
      const v = readCredentials(c, creds, `${path}.credentials`, dir);
      if (v !== undefined) settings.credentials = v;
    }
  }
  return out;
}

function readCredentials(c: YamlChecker, entry: Entry, path: string, dir: string): CredentialsSource | undefined {
  const before = c.issues.length;
  const cr = c.mapping(entry.value, path, CREDENTIALS_KEYS, SECRET_HINT);
  if (cr === undefined || (cr.size === 0 && c.issues.length > before)) return undefined;
  if (cr.size !== 1) {
    c.error(entry.value ?? entry.key, `${path} must have exactly one of env, authFile, none; found ${cr.size === 0 ? "none of them" : [...cr.keys()].join(" and ")}`);
    return undefined;
  }
  const [kind, { value }] = [...cr][0] as [string, Entry];
  if (kind === "none") {
    if (!c.isScalarValue(value, true)) {
      c.error(value, `${path}.none must be true (anonymous access); to use credentials, write env or authFile instead`);
      return undefined;
    }
    return { kind: "none" };
  }
  if (kind === "authFile") {
    const p = c.string(value, `${path}.authFile`);
    return p === undefined ? undefined : { kind: "authFile", path: localPath(p, dir) };
  }
  const env = c.mapping(value, `${path}.env`, ENV_KEYS);
  if (env === undefined) return undefined;
  const vars: Partial<Record<(typeof ENV_KEYS)[number], string>> = {};
  for (const k of ENV_KEYS) {
    const e = c.require(env, k, value, `${path}.env`);
    if (e === undefined) continue;
    // The value names an environment variable; if it does not look like one, it may be the
    // secret itself: never echo it.
    const s = c.string(e.value, `${path}.env.${k}`, { secret: true });
    if (s === undefined) continue;
    if (!ENV_VAR_RE.test(s)) {
      c.error(e.value, `${path}.env.${k} must be the NAME of an environment variable (letters, digits and _, e.g. REGISTRY_${k.toUpperCase()}), not the ${k} itself`);
      continue;
    }
    vars[k] = s;
  }
  if (vars.username === undefined || vars.password === undefined) return undefined;
  return { kind: "env", usernameVar: vars.username, passwordVar: vars.password };
}

/** Parses an `as:` name: REPOSITORY[:TAG], a path under the destination. Returns a problem or the name. */
function parseAsName(s: string): AsName | string {
  const slash = s.indexOf("/");
  const first = slash < 0 ? "" : s.slice(0, slash);
  if (/[.:]/.test(first) || first === "localhost") {
    return `${q(s)} starts with a registry host (${q(first)}); as: names the repository under the destination given at import (--to REGISTRY[/PREFIX]), e.g. team/app:1.0`;
  }
  const host = "localhost";
  let ref: DockerReference;
  try {
    ref = DockerReference.parse(`${host}/${s}`);
  } catch (err) {
    return (err as Error).message.replaceAll(`"${host}/`, '"');
  }
  if (ref.digest !== undefined) return `${q(s)} has a digest; as: takes REPOSITORY[:TAG]`;
  return ref.tag === undefined ? { repository: ref.path } : { repository: ref.path, tag: ref.tag };
}

/** The transport a string starts with (`oci:`, `docker://`, …), or undefined when it has none (`localhost:5000/x` has none). */
function transportOf(s: string): string | undefined {
  const m = /^([a-z][a-z0-9-]*):(?!\d+(\/|$))/.exec(s);
  if (m === null) return undefined;
  const name = m[1] as string;
  return name === "docker" || transportNames().includes(name) || name in PATH_TRANSPORTS ? name : undefined;
}

/** Makes a relative path in a path-based transport reference absolute against `dir`. */
function absoluteSource(source: string, dir: string): string {
  const colon = source.indexOf(":");
  if (colon <= 0) return source;
  const transport = source.slice(0, colon);
  const how = PATH_TRANSPORTS[transport];
  if (how === undefined) return source;
  const spec = source.slice(colon + 1);
  const end = how === "whole" ? -1 : spec.indexOf(":");
  const path = end < 0 ? spec : spec.slice(0, end);
  const rest = end < 0 ? "" : spec.slice(end);
  if (path === "" || isAbsolute(path)) return source;
  return `${transport}:${resolvePath(dir, path)}${rest}`;
}

function readImage(c: YamlChecker, node: Node | null, i: number, defaults: ImagesConfig["defaults"], dir: string): ImageEntry | undefined {
  const path = `images[${i}]`;
  const bare = c.scalarString(node);
  if (bare !== undefined) {
    // A bare string is the most common slip: say what to write.
    const kind = transportOf(bare) === undefined ? "name" : "source";
    c.error(node, `${path} must be a mapping; write - ${kind}: ${bare}${kind === "name" && !/[:@]/.test(bare.slice(bare.lastIndexOf("/") + 1)) ? ' with tags: ["…"]' : ""}`);
    return undefined;
  }
  const e = c.mapping(node, path, IMAGE_KEYS, SECRET_HINT);
  if (e === undefined) return undefined;
  const at = c.where(node);
  let ok = true;
  const fail = (n: Node | null, message: string) => {
    c.error(n, `${path}: ${message}`);
    ok = false;
  };

  const platformsEntry = e.get("platforms");
  let platforms = defaults.platforms;
  if (platformsEntry !== undefined) {
    const p = readPlatforms(c, platformsEntry.value, `${path}.platforms`);
    if (p === undefined) ok = false;
    else platforms = p;
  }
  let keepIndex = defaults.keepIndex;
  const keepEntry = e.get("keepIndex");
  if (keepEntry !== undefined) {
    const k = c.boolean(keepEntry.value, `${path}.keepIndex`);
    if (k === undefined) ok = false;
    else keepIndex = k;
  }
  let as: AsName | undefined;
  const asEntry = e.get("as");
  if (asEntry !== undefined) {
    const s = c.string(asEntry.value, `${path}.as`);
    if (s === undefined) ok = false;
    else {
      const parsed = parseAsName(s);
      if (typeof parsed === "string") fail(asEntry.value, `as: ${parsed}`);
      else as = parsed;
    }
  }

  const name = e.get("name");
  const source = e.get("source");
  const tags = e.get("tags");
  if (name !== undefined && source !== undefined) {
    fail(source.key, "has both name and source; use name: for a registry image, source: for any transport (oci:, dir:, docker-archive:, …)");
    return undefined;
  }
  if (name === undefined && source === undefined) {
    fail(node, "needs name: (a registry image, e.g. docker.io/library/busybox) or source: (any transport, e.g. oci:./layout:app)");
    return undefined;
  }

  // A registry image: name:, or source: docker://…
  let refText: string | undefined;
  let refNode: Node | null = null;
  if (name !== undefined) {
    refNode = name.value;
    const s = c.string(name.value, `${path}.name`);
    if (s === undefined) return undefined;
    const transport = transportOf(s);
    if (transport !== undefined) {
      const hint = transport === "docker" ? `name: ${s.replace(/^docker:(\/\/)?/, "")}` : `source: ${s}`;
      fail(name.value, `name: ${q(s)} starts with the transport ${q(`${transport}:`)}; name: takes a registry reference, write ${hint}`);
      return undefined;
    }
    refText = s;
  } else {
    refNode = source!.value;
    const s = c.string(source!.value, `${path}.source`);
    if (s === undefined) return undefined;
    if (s.startsWith("docker://")) {
      refText = s.slice("docker://".length);
    } else {
      if (tags !== undefined) fail(tags.key, `tags: selects tags of a registry image (name: or source: docker://…); ${q(s)} is not one`);
      const absolute = absoluteSource(s, dir);
      try {
        parseImageName(absolute);
      } catch (err) {
        fail(source!.value, `source: ${(err as Error).message.replaceAll(absolute, s)}`);
        return undefined;
      }
      if (as === undefined) {
        if (asEntry === undefined) fail(node, `source ${q(s)} needs as: REPOSITORY:TAG, the name it gets in the bundle and at the destination`);
        return undefined;
      }
      if (as.tag === undefined) {
        fail(asEntry!.value, `as: ${q(as.repository)} needs a tag (e.g. ${as.repository}:1.0): the source ${q(s)} has none`);
        return undefined;
      }
      if (!ok) return undefined;
      return { kind: "transport", index: i, at, platforms, keepIndex, sourceAsWritten: s, source: absolute, as: { repository: as.repository, tag: as.tag } };
    }
  }

  let ref: DockerReference;
  try {
    ref = DockerReference.parse(refText);
  } catch (err) {
    fail(refNode, (err as Error).message);
    return undefined;
  }
  let selection: ImageSelection | undefined;
  if (ref.tag !== undefined && ref.digest !== undefined) {
    fail(refNode, `${q(refText)} has both a tag and a digest; write ${ref.withoutTagOrDigest()}@${ref.digest} to pin the digest, or ${ref.withoutTagOrDigest()}:${ref.tag} and let \`airlock lock\` pin it`);
  } else if (tags !== undefined && (ref.tag !== undefined || ref.digest !== undefined)) {
    fail(tags.key, `tags: cannot be combined with a ${ref.digest !== undefined ? "digest" : "tag"} in the name; write the name without :TAG/@DIGEST, or drop tags:`);
  } else if (ref.digest !== undefined) {
    selection = { kind: "digest", digest: ref.digest };
  } else if (ref.tag !== undefined) {
    selection = { kind: "tags", tags: [ref.tag] };
  } else if (tags === undefined) {
    fail(refNode, `${q(refText)} has no tag: write ${refText}:TAG, ${refText}@sha256:…, or tags: (a list, or a filter such as { semver: ">=1.2 <2", newest: 3 })`);
  } else {
    selection = readTags(c, tags.value, `${path}.tags`);
  }
  if (selection === undefined) return undefined;
  if (as?.tag !== undefined && selection.kind !== "digest" && !(selection.kind === "tags" && selection.tags.length === 1)) {
    fail(asEntry!.value, `as: ${q(`${as.repository}:${as.tag}`)} has a tag, but the entry selects several tags; write as: ${as.repository} and each tag keeps its name`);
  }
  if (!ok) return undefined;
  const entry: RegistryImageEntry = { kind: "registry", index: i, at, platforms, keepIndex, repository: ref.withoutTagOrDigest(), selection };
  if (as !== undefined) entry.as = as;
  return entry;
}

function readTags(c: YamlChecker, node: Node | null, path: string): ImageSelection | undefined {
  if (c.isList(node)) {
    const items = c.list(node, path) ?? [];
    if (items.length === 0) {
      c.error(node, `${path} must not be empty`);
      return undefined;
    }
    const tags: string[] = [];
    let ok = true;
    items.forEach((item, i) => {
      const t = c.string(item, `${path}[${i}]`);
      if (t === undefined) ok = false;
      else if (!isValidTag(t)) {
        c.error(item, `${path}[${i}]: ${q(t)} is not a valid tag (1 to 128 of [A-Za-z0-9_.-], not starting with . or -)${/[\^$*+?()[\]{}|\\]/.test(t) ? "; to select tags by pattern write tags: { include: [...] }" : ""}`);
        ok = false;
      } else if (tags.includes(t)) {
        c.error(item, `${path}[${i}]: tag ${q(t)} is listed twice`);
        ok = false;
      } else tags.push(t);
    });
    return ok ? { kind: "tags", tags } : undefined;
  }
  if (!c.isMapping(node)) {
    c.error(node, `${path} must be a list of tags or a filter mapping ({ include, exclude, semver, newest })`);
    return undefined;
  }
  const f = c.mapping(node, path, FILTER_KEYS);
  if (f === undefined) return undefined;
  if (f.size === 0) {
    c.error(node, `${path} is empty; give include, exclude, semver or newest (include: ['.*'] selects every tag)`);
    return undefined;
  }
  const filter: TagFilter = {};
  let ok = true;
  for (const k of ["include", "exclude"] as const) {
    const e = f.get(k);
    if (e === undefined) continue;
    const list = c.stringList(e.value, `${path}.${k}`);
    if (list === undefined) {
      ok = false;
      continue;
    }
    if (list.length === 0) {
      c.error(e.value, `${path}.${k} must not be empty`);
      ok = false;
    }
    for (const { value, node: n } of list) {
      const problem = regexProblem(value);
      if (problem !== undefined) {
        c.error(n, `${path}.${k}: invalid regular expression ${q(value)}: ${problem}`);
        ok = false;
      }
    }
    filter[k] = list.map((x) => x.value);
  }
  const sv = f.get("semver");
  if (sv !== undefined) {
    const s = c.string(sv.value, `${path}.semver`);
    const problem = s === undefined ? undefined : semverRangeProblem(s);
    if (s === undefined) ok = false;
    else if (problem !== undefined) {
      c.error(sv.value, `${path}.semver: ${q(s)} is ${problem}`);
      ok = false;
    } else filter.semver = s;
  }
  const nw = f.get("newest");
  if (nw !== undefined) {
    const n = c.integer(nw.value, `${path}.newest`, 1);
    if (n === undefined) ok = false;
    else filter.newest = n;
  }
  return ok ? { kind: "filter", filter } : undefined;
}

/** The bundle names an entry has without asking a registry (none for a tag filter). */
export function staticBundleNames(entry: ImageEntry): string[] {
  if (entry.kind === "transport") return [`${entry.as.repository}:${entry.as.tag}`];
  const sel = entry.selection;
  if (sel.kind === "filter") return [];
  if (sel.kind === "digest") {
    if (entry.as === undefined) return [entry.repository.withDigest(sel.digest).toString()];
    return [entry.as.tag === undefined ? `${entry.as.repository}@${sel.digest}` : `${entry.as.repository}:${entry.as.tag}`];
  }
  return sel.tags.map((t) => {
    if (entry.as === undefined) return entry.repository.withTag(t).toString();
    return `${entry.as.repository}:${entry.as.tag ?? t}`;
  });
}

/** Two entries that name the same image in the bundle are an error (found here when no registry is needed). */
function checkDuplicates(c: YamlChecker, images: readonly ImageEntry[], nodes: readonly (Node | null)[]): void {
  const seen = new Map<string, ImageEntry>();
  for (const entry of images) {
    for (const name of staticBundleNames(entry)) {
      const first = seen.get(name);
      if (first !== undefined) {
        c.error(nodes[entry.index] ?? null, `images[${entry.index}]: ${q(name)} is already listed by images[${first.index}] at ${first.at}`);
      } else seen.set(name, entry);
    }
  }
}
