/**
 * Repository names and tags as the distribution spec defines them, and how they map onto an OCI
 * layout's `org.opencontainers.image.ref.name`: an image `REPOSITORY:TAG` is the index.json entry
 * named `REPOSITORY:TAG` (what `airlock copy … oci:STORE:REPOSITORY:TAG` writes). An entry named by
 * a bare repository name (`oci:STORE:NAME`, as skopeo writes) is served as `NAME:latest`.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
 */

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

/** The index.json entry name of `repository:tag`. */
export function refNameOf(repository: string, tag: string): string {
  return `${repository}:${tag}`;
}

/** The entry names that mean `repository:tag`: `REPOSITORY:TAG`, and the bare `REPOSITORY` for `latest`. */
export function refNamesOf(repository: string, tag: string): string[] {
  return tag === DEFAULT_TAG ? [refNameOf(repository, tag), repository] : [refNameOf(repository, tag)];
}
