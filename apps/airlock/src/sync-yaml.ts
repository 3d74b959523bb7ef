/**
 * skopeo's sync YAML (`skopeo sync --src yaml FILE`, skopeo-sync(1)), read with its semantics,
 * plus one airlock extension.
 *
 * ```yaml
 * registry.example.com:              # registry host[:port], optionally with a path prefix
 *   images:                          # repository → tags and/or digests; [] or nothing = every tag
 *     busybox: []
 *     redis: ["1.0", "2.0", "sha256:0000…"]
 *   images-by-tag-regex:             # repository → regular expression, unanchored
 *     nginx: ^1\.13\.[12]-alpine-perl$
 *   images-by-semver:                # repository → semantic-version constraint
 *     alpine: ">= 3.12.0"
 *   credentials: {username: john, password: secret}
 *   tls-verify: true                 # omitted: the --src-tls-verify setting
 *   cert-dir: /home/john/certs       # omitted: the --src-cert-dir setting
 * ```
 *
 * The extension — per-repository destination names (skopeo#1998, #854, #1072) — writes a
 * repository's value as a mapping with a `destination:`, the repository path under DESTINATION
 * (the tag or digest is kept; `--scoped` does not apply to it):
 *
 * ```yaml
 *     busybox: {tags: ["1.36"], destination: tools/busybox}     # in images:
 *     nginx: {regex: "^1\\.2", destination: web/nginx}         # in images-by-tag-regex:
 *     alpine: {semver: ">=3.19", destination: base/alpine}      # in images-by-semver:
 * ```
 *
 * Differences from skopeo, on purpose: a file with an error (a malformed regular expression or
 * constraint, an invalid repository name, tag or digest, a value of the wrong shape) is refused as
 * a whole, with every problem and its line and column, where skopeo logs the entry and syncs the
 * rest; unknown keys are warnings (skopeo ignores them); a registry without `cert-dir` keeps the
 * command line's `--src-cert-dir` (skopeo then drops it); entries keep the file's order (Go maps
 * have none). Regular expressions are JavaScript's (RE2 syntax such as `(?i)` or `\z` differs).
 * Constraints are Masterminds/semver's, matched by node-semver after two translations: a `,`
 * (AND) becomes a space, and a tag is read as Masterminds reads it (`v1.2` and `3.12` are 1.2.0 and
 * 3.12.0); a pre-release tag matches only a constraint that names a pre-release of the same
 * MAJOR.MINOR.PATCH (Masterminds accepts any pre-release once the constraint names one).
 */
import { readFile } from "node:fs/promises";
import { AirlockError, DockerReference, isDigest, isValidTag, type SystemContext } from "@airlock/core";
import { isMap, isScalar, isSeq, type Node } from "yaml";
import { regexProblem, selectTags, semverRangeProblem } from "./config/tags.js";
import { YamlChecker } from "./config/yaml-check.js";

/** The section of a registry a repository entry comes from. */
export type SyncYamlSection = "images" | "images-by-tag-regex" | "images-by-semver";

/** One repository entry of the sync YAML. */
export interface SyncYamlRepository {
  /** The repository, `REGISTRY-KEY/NAME` parsed and normalised (no tag or digest). */
  repository: DockerReference;
  section: SyncYamlSection;
  /** `images`: the tags and digests listed; empty = every tag. */
  refs: string[];
  /** `images-by-tag-regex`: the regular expression. */
  regex?: string;
  /** `images-by-semver`: the constraint as written. */
  semver?: string;
  /** airlock's extension: the repository path under DESTINATION. */
  destination?: string;
  /** `FILE:LINE:COL` of the entry. */
  at: string;
}

/** One top-level key of the sync YAML: a registry and its settings. */
export interface SyncYamlRegistry {
  /** The key as written (`registry.example.com`, `localhost:5000`, `quay.io/org`). */
  name: string;
  /** `tls-verify`, when given. */
  tlsVerify?: boolean;
  /** `cert-dir`, when given. */
  certDir?: string;
  /** `credentials`, when given. Never print it. */
  credentials?: { username: string; password: string };
  repositories: SyncYamlRepository[];
}

/** A parsed sync YAML file. */
export interface SyncYaml {
  registries: SyncYamlRegistry[];
  /** Things worth saying that do not stop the sync (unknown keys, a registry without images). */
  warnings: string[];
}

const REGISTRY_KEYS = ["images", "images-by-tag-regex", "images-by-semver", "credentials", "tls-verify", "cert-dir"] as const;
const q = (s: string): string => JSON.stringify(s);

/** Reads and parses a sync YAML file ({@link parseSyncYaml}). */
export async function loadSyncYaml(path: string): Promise<SyncYaml> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read the sync file ${path}: ${(cause as Error).message}`, { cause });
  }
  return parseSyncYaml(text, path);
}

/**
 * Parses skopeo's sync YAML (see this module's comment). Throws a ConfigFileError
 * (ERR_INVALID_ARGUMENT) listing every problem with its line and column.
 */
export function parseSyncYaml(text: string, file: string): SyncYaml {
  const c = new YamlChecker(text, file);
  const warnings: string[] = [];
  const registries: SyncYamlRegistry[] = [];
  const root = c.root;
  if (root === null) {
    c.throwIfIssues("sync file");
    return { registries, warnings: [`${file} lists no registries`] };
  }
  const top = c.mapping(root, file, undefined);
  for (const [name, { key, value }] of top ?? []) {
    const reg: SyncYamlRegistry = { name, repositories: [] };
    const entries = c.mapping(value, name, undefined);
    if (!entries) continue;
    for (const [k, e] of entries) {
      if (!(REGISTRY_KEYS as readonly string[]).includes(k)) warnings.push(`${c.where(e.key)}: ${name}: unknown key ${q(k)} ignored (keys: ${REGISTRY_KEYS.join(", ")})`);
    }
    const tls = entries.get("tls-verify");
    if (tls) {
      const v = c.boolean(tls.value, `${name}.tls-verify`);
      if (v !== undefined) reg.tlsVerify = v;
    }
    const certDir = entries.get("cert-dir");
    if (certDir && certDir.value !== null) {
      const v = c.string(certDir.value, `${name}.cert-dir`);
      if (v !== undefined) reg.certDir = v;
    }
    const creds = entries.get("credentials");
    if (creds && creds.value !== null) {
      const m = c.mapping(creds.value, `${name}.credentials`, undefined);
      if (m) {
        for (const [k, e] of m) if (k !== "username" && k !== "password") warnings.push(`${c.where(e.key)}: ${name}.credentials: key ${q(k)} ignored (keys: username, password)`);
        const u = m.get("username");
        const p = m.get("password");
        const username = u ? scalarText(c, u.value, `${name}.credentials.username`) : undefined;
        const password = p ? scalarText(c, p.value, `${name}.credentials.password`, true) : undefined;
        if (username !== undefined) reg.credentials = { username, password: password ?? "" };
        else if (!u && p) c.error(creds.value, `${name}.credentials: "username" is required with a password`);
      }
    }
    readImages(c, reg, entries.get("images")?.value ?? null, entries.has("images"));
    readFilters(c, reg, "images-by-tag-regex", entries.get("images-by-tag-regex")?.value ?? null);
    readFilters(c, reg, "images-by-semver", entries.get("images-by-semver")?.value ?? null);
    if (reg.repositories.length === 0) warnings.push(`${c.where(key)}: No images specified for registry ${name}`);
    registries.push(reg);
  }
  c.throwIfIssues("sync file");
  return { registries, warnings };
}

/** The text of a scalar as written (`1.0` stays "1.0", as Go's yaml.v3 decodes it into a string). */
function scalarText(c: YamlChecker, node: Node | null, path: string, allowEmpty = false): string | undefined {
  const n = c.deref(node);
  if (n !== null && isScalar(n) && n.value !== null && typeof n.value !== "object") {
    const text = typeof n.source === "string" && typeof n.value !== "string" ? n.source : String(n.value);
    if (text !== "" || allowEmpty) return text;
  }
  c.error(n ?? node, `${path} must be a string`);
  return undefined;
}

function repositoryOf(c: YamlChecker, reg: SyncYamlRegistry, name: string, node: Node | null): DockerReference | undefined {
  try {
    const ref = DockerReference.parse(`${reg.name}/${name}`);
    if (ref.tag !== undefined || ref.digest !== undefined) throw new Error("input names a reference, not a repository: write tags and digests in the list");
    return ref;
  } catch (err) {
    c.error(node, `${reg.name}: ${q(name)} is not a repository name: ${(err as Error).message}`);
    return undefined;
  }
}

function destinationOf(c: YamlChecker, node: Node | null, path: string): string | undefined {
  const d = c.string(node, path);
  if (d === undefined) return undefined;
  // The destination is a repository path: it must form a valid reference under any registry.
  try {
    const ref = DockerReference.parse(`registry.invalid/${d}`);
    if (ref.tag !== undefined || ref.digest !== undefined) throw new Error("give a repository path without tag or digest; the source's tag or digest is kept");
  } catch (err) {
    c.error(node, `${path} ${q(d)} is not a repository path: ${(err as Error).message}`);
    return undefined;
  }
  return d;
}

function readImages(c: YamlChecker, reg: SyncYamlRegistry, node: Node | null, present: boolean): void {
  if (!present || node === null) return;
  const m = c.mapping(node, `${reg.name}.images`, undefined);
  for (const [name, { key, value }] of m ?? []) {
    const path = `${reg.name}.images.${name}`;
    const repository = repositoryOf(c, reg, name, key);
    let listNode: Node | null = value;
    let destination: string | undefined;
    const v = c.deref(value);
    if (v !== null && isMap(v)) {
      const e = c.mapping(v, path, ["tags", "destination"]);
      listNode = e?.get("tags")?.value ?? null;
      const d = e?.get("destination");
      if (d) destination = destinationOf(c, d.value, `${path}.destination`);
    }
    const refs: string[] = [];
    const ln = c.deref(listNode);
    if (ln !== null && !(isScalar(ln) && ln.value === null)) {
      if (!isSeq(ln)) c.error(ln, `${path} must be a list of tags and digests (or [] for every tag)`);
      else {
        ln.items.forEach((item, i) => {
          const r = scalarText(c, (item as Node | null) ?? null, `${path}[${i}]`);
          if (r === undefined) return;
          if (r.startsWith("sha256:") || r.startsWith("sha512:") ? !isDigest(r) : !isValidTag(r)) {
            c.error(item as Node, `${path}[${i}]: ${q(r)} is neither a valid tag nor a valid digest`);
            return;
          }
          refs.push(r);
        });
      }
    }
    if (repository) reg.repositories.push({ repository, section: "images", refs, ...(destination ? { destination } : {}), at: c.where(key) });
  }
}

function readFilters(c: YamlChecker, reg: SyncYamlRegistry, section: "images-by-tag-regex" | "images-by-semver", node: Node | null): void {
  if (node === null) return;
  const field = section === "images-by-tag-regex" ? "regex" : "semver";
  const m = c.mapping(node, `${reg.name}.${section}`, undefined);
  for (const [name, { key, value }] of m ?? []) {
    const path = `${reg.name}.${section}.${name}`;
    const repository = repositoryOf(c, reg, name, key);
    let exprNode: Node | null = value;
    let destination: string | undefined;
    const v = c.deref(value);
    if (v !== null && isMap(v)) {
      const e = c.mapping(v, path, [field, "destination"]);
      const d = e?.get("destination");
      if (d) destination = destinationOf(c, d.value, `${path}.destination`);
      const x = e ? c.require(e, field, v, path) : undefined;
      if (!x) continue;
      exprNode = x.value;
    }
    const expr = scalarText(c, exprNode, section === "images-by-tag-regex" ? path : `${path} (a constraint such as ">= 3.12.0")`);
    if (expr === undefined) continue;
    const problem = section === "images-by-tag-regex" ? regexProblem(expr) : semverRangeProblem(semverRange(expr));
    if (problem !== undefined) {
      c.error(exprNode, `${path}: ${q(expr)} is not a valid ${section === "images-by-tag-regex" ? "regular expression" : "semver constraint"}: ${problem}`);
      continue;
    }
    if (repository) reg.repositories.push({ repository, section, refs: [], [field]: expr, ...(destination ? { destination } : {}), at: c.where(key) });
  }
}

/**
 * A Masterminds/semver constraint as a node-semver range: `,` (AND in Masterminds) becomes a
 * space (AND in node-semver); everything else is common syntax.
 */
export function semverRange(constraint: string): string {
  return constraint.replace(/\s*,\s*/g, " ").trim();
}

const MASTERMINDS_VERSION = /^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

/**
 * The version a tag stands for as Masterminds/semver's `NewVersion` reads it (skopeo's rule), as a
 * strict semantic version: `v1.2` → `1.2.0`, `3` → `3.0.0`; undefined when it is not one.
 */
export function mastermindsVersion(tag: string): string | undefined {
  const m = MASTERMINDS_VERSION.exec(tag);
  if (!m) return undefined;
  const num = (s: string | undefined) => (s === undefined ? "0" : BigInt(s.replace(/^\./, "")).toString());
  return `${num(m[1])}.${num(m[2])}.${num(m[3])}${m[4] ? `-${m[4]}` : ""}${m[5] ? `+${m[5]}` : ""}`;
}

/** The tags of `tags` within the Masterminds-style `constraint`, in order (selectTags' semver step on the Masterminds reading of each tag). */
export function selectBySemver(tags: readonly string[], constraint: string): string[] {
  const range = semverRange(constraint);
  return tags.filter((t) => {
    const v = mastermindsVersion(t);
    return v !== undefined && selectTags([v], { semver: range }).length > 0;
  });
}

/** The tags of `tags` a repository entry of the sync YAML chooses (before any command-line filter). */
export function selectForEntry(entry: SyncYamlRepository, tags: readonly string[]): string[] {
  if (entry.regex !== undefined) return selectTags(tags, { include: [entry.regex] });
  if (entry.semver !== undefined) return selectBySemver(tags, entry.semver);
  return [...tags];
}

/**
 * The SystemContext to read a registry's images with: `base` (the --src-* flags) with the
 * registry's `credentials`, `tls-verify` and `cert-dir` in place of the flags' values.
 */
export function registryContext(base: SystemContext, reg: SyncYamlRegistry): SystemContext {
  const docker = { ...base.docker };
  if (reg.credentials) {
    docker.credentials = reg.credentials;
    delete docker.noCreds;
    delete docker.registryToken;
  }
  if (reg.tlsVerify !== undefined) docker.tlsVerify = reg.tlsVerify;
  if (reg.certDir !== undefined) docker.certDir = reg.certDir;
  return { ...base, docker };
}
