/**
 * Repository names and tags as the distribution spec defines them, and how they map onto an OCI
 * layout's `org.opencontainers.image.ref.name`: an image `REPOSITORY:TAG` is the index.json entry
 * named `REPOSITORY:TAG` (what `airlock copy … oci:STORE:REPOSITORY:TAG` writes). An entry named by
 * a bare repository name (`oci:STORE:NAME`, as skopeo writes) is served as `NAME:latest`.
 *
 * A bundle's images are named by their source (`127.0.0.1:5000/team/app:1`), and a `:PORT` cannot
 * appear in a repository name: {@link bundleRefNameParser} maps them as `airlock import --to HOST`
 * would name them in a registry (keep-path: `127.0.0.1_5000/team/app:1`; strip-registry:
 * `team/app:1`).
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
 */

import { registryPathComponent, splitBundleName } from "@airlock/core";

/** The spec's repository name grammar: lowercase components joined by `.`, `_`, `__` or dashes, separated by `/`. */
export const REPOSITORY_NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;

/** The spec's tag grammar. */
export const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** The longest repository name accepted (the spec: "less than 256 characters" including slashes). */
export const MAX_REPOSITORY_NAME_LENGTH = 255;

/** The tag an index.json entry named by a bare repository name is served as. */
export const DEFAULT_TAG = "latest";

/** Reports whether `name` is a valid repository name. */
export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_REPOSITORY_NAME_LENGTH && REPOSITORY_NAME_RE.test(name);
}

/** Reports whether `tag` is a valid tag. */
export function isTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** A repository and tag, as read from an index.json entry's name. */
export interface RepositoryTag {
  repository: string;
  tag: string;
  /** True when the entry was named by the repository alone (served as `latest`). */
  implicit: boolean;
}

/**
 * Reads an `org.opencontainers.image.ref.name` as `REPOSITORY:TAG` (or a bare `REPOSITORY`, meaning
 * `latest`). Returns undefined for names that are not a valid repository and tag: such entries are
 * not served.
 */
export function parseRefName(name: string): RepositoryTag | undefined {
  const colon = name.lastIndexOf(":");
  if (colon < 0) return isRepositoryName(name) ? { repository: name, tag: DEFAULT_TAG, implicit: true } : undefined;
  const repository = name.slice(0, colon);
  const tag = name.slice(colon + 1);
  if (!isRepositoryName(repository) || !isTag(tag)) return undefined;
  return { repository, tag, implicit: false };
}

/**
 * Where an index.json entry is served: a repository, and the tag that names it there — or no tag,
 * for an entry named by digest only (`REPOSITORY@DIGEST`), which is pulled by its digest.
 */
export interface ServedName {
  repository: string;
  tag: string | undefined;
  /** True when the entry was named by the repository alone (served as `latest`). */
  implicit: boolean;
}

/** Reads an index.json entry's name as where it is served; undefined for an entry not served. */
export type RefNameParser = (name: string) => ServedName | undefined;

/**
 * How a bundle's image names become repository names, as `airlock import --to HOST` names them:
 * `keep-path` keeps the source registry as the first path component (`:` before a port as `_`),
 * `strip-registry` drops it.
 */
export type BundleNaming = "keep-path" | "strip-registry";

/** The bundle naming modes. */
export const BUNDLE_NAMINGS: readonly BundleNaming[] = ["keep-path", "strip-registry"];

/**
 * The repository name a bundle image name (`HOST[:PORT]/PATH[:TAG][@DIGEST]`, or an `as:` name
 * without a host) is served under, with its tag and digest: with `keep-path`,
 * `127.0.0.1:5000/team/app:1` → `127.0.0.1_5000/team/app:1` (the host lowercased, `:` as `_`, as
 * import's keep-path names it); with `strip-registry`, → `team/app:1`. Names without a host are
 * kept. Undefined when the result is not a valid repository and tag.
 */
export function servedBundleName(name: string, naming: BundleNaming): { repository: string; tag: string | undefined; digest: string | undefined } | undefined {
  const at = name.indexOf("@");
  const digest = at < 0 ? undefined : name.slice(at + 1);
  const ref = at < 0 ? name : name.slice(0, at);
  const { registry, rest: path } = splitBundleName(ref);
  const mapped = registry === undefined || naming === "strip-registry" ? path : `${registryPathComponent(registry)}/${path}`;
  const slash = mapped.lastIndexOf("/");
  const colon = mapped.lastIndexOf(":");
  const repository = colon > slash ? mapped.slice(0, colon) : mapped;
  const tag = colon > slash ? mapped.slice(colon + 1) : undefined;
  if (!isRepositoryName(repository) || (tag !== undefined && !isTag(tag))) return undefined;
  if (digest !== undefined && !/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) return undefined;
  return { repository, tag, digest };
}

/**
 * The parser of a bundle's index.json names under `naming` (see {@link servedBundleName}): a name
 * with a tag is served by that tag, a name pinned by digest only (`REPOSITORY@DIGEST`) by its
 * digest, a bare repository name as `latest`.
 */
export function bundleRefNameParser(naming: BundleNaming): RefNameParser {
  return (name) => {
    const served = servedBundleName(name, naming);
    if (!served) return undefined;
    if (served.tag !== undefined) return { repository: served.repository, tag: served.tag, implicit: false };
    if (served.digest !== undefined) return { repository: served.repository, tag: undefined, implicit: false };
    return { repository: served.repository, tag: DEFAULT_TAG, implicit: true };
  };
}

/** The index.json entry name of `repository:tag`. */
export function refNameOf(repository: string, tag: string): string {
  return `${repository}:${tag}`;
}

/** The entry names that mean `repository:tag`: `REPOSITORY:TAG`, and the bare `REPOSITORY` for `latest`. */
export function refNamesOf(repository: string, tag: string): string[] {
  return tag === DEFAULT_TAG ? [refNameOf(repository, tag), repository] : [refNameOf(repository, tag)];
}
