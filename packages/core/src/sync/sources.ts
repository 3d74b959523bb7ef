/**
 * What `sync` copies: the images of a registry repository (all its tags, a selection of them, or
 * named tags and digests), of a directory tree of `dir:` images, or of an OCI layout — each with
 * skopeo's destination suffix (see naming.ts).
 */
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { isDigest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { parseLayoutIndex, refName } from "../layout/layout.js";
import { MAX_MANIFEST_SIZE } from "../manifest.js";
import { DockerReference, isValidTag } from "../reference/docker.js";
import { readSmallFile } from "../layout/files.js";
import { DirReference } from "../transports/dir/reference.js";
import { DIR_MANIFEST_FILE } from "../transports/dir/format.js";
import { listTags } from "../transports/docker/operations.js";
import { DockerImageReference } from "../transports/docker/reference.js";
import { OciReference } from "../transports/oci/reference.js";
import type { SystemContext } from "../transports/types.js";
import { goBase, goClean, type SyncImage } from "./naming.js";

/** Chooses tags of a repository: returns those of `tags` to sync (a subset, in order). */
export type TagSelectFn = (tags: string[], repository: DockerReference) => string[];

/** How the images of one registry repository are chosen (skopeo's YAML entries, or `--src docker`). */
export interface RepositorySelection {
  /**
   * Tags and digests to sync (skopeo's `images: {repo: [...]}`): an entry that parses as a digest
   * is one, anything else is a tag. Absent or empty: every tag the registry lists.
   */
  refs?: readonly string[];
  /** Chooses among the tags (listed or named); digests are never filtered. Default: all. */
  selectTags?: TagSelectFn;
  /** Settings for reaching the registry, also used to read the images. */
  context?: SystemContext;
  /** airlock's per-repository destination: the repository path under DESTINATION (see SyncImage.name). */
  destination?: string;
  signal?: AbortSignal;
}

function imageFor(ref: DockerReference, sel: RepositorySelection): SyncImage {
  const image: SyncImage = { source: new DockerImageReference(ref), suffix: ref.toString() };
  if (sel.context) image.sourceContext = sel.context;
  if (sel.destination !== undefined) image.name = sel.destination + (ref.digest !== undefined ? `@${ref.digest}` : `:${ref.tag}`);
  return image;
}

/**
 * The images of `repository` (a name without tag or digest) that `sel` chooses, in order: the
 * digests and tags of `sel.refs`, or every listed tag; tags pass through `sel.selectTags`. Throws
 * ERR_INVALID_REFERENCE for an entry that is neither a valid digest nor a valid tag.
 */
export async function repositorySyncImages(repository: DockerReference, sel: RepositorySelection = {}): Promise<SyncImage[]> {
  const repo = repository.withoutTagOrDigest();
  const explicit = sel.refs !== undefined && sel.refs.length > 0;
  let entries: readonly string[];
  if (explicit) {
    entries = sel.refs as readonly string[];
    for (const r of entries) if (!isDigest(r)) repo.withTag(r); // throws ERR_INVALID_REFERENCE for a bad tag
  } else {
    // Registries validate tags; one that is not valid cannot be named, so it is left out (skopeo logs and skips it).
    entries = (await listTags(repo, sel.context ?? {}, sel.signal ? { signal: sel.signal } : {})).filter(isValidTag);
  }
  const tags = entries.filter((e) => !isDigest(e));
  const keep = new Set(sel.selectTags ? sel.selectTags(tags, repo) : tags);
  const out: SyncImage[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e)) continue;
    seen.add(e);
    if (isDigest(e)) out.push(imageFor(repo.withDigest(e), sel));
    else if (keep.has(e)) out.push(imageFor(repo.withTag(e), sel));
  }
  return out;
}

/**
 * The images of `--src docker SOURCE`: SOURCE is a Docker reference without `docker://` (the
 * prefix is tolerated). With a tag or digest, that one image; otherwise every tag of the
 * repository that `selectTags` keeps. Throws ERR_IMAGE_NOT_FOUND when there is none ("No images
 * to sync found").
 */
export async function dockerSyncImages(source: string, options: Omit<RepositorySelection, "refs"> = {}): Promise<SyncImage[]> {
  const ref = DockerReference.parse(source.replace(/^docker:\/\//, ""));
  if (ref.tag !== undefined && ref.digest !== undefined) {
    throw new AirlockError("ERR_INVALID_REFERENCE", `sync source ${JSON.stringify(source)} has both a tag and a digest; give one of them, or neither to sync every tag`);
  }
  const refs = ref.digest !== undefined ? [ref.digest] : ref.tag !== undefined ? [ref.tag] : undefined;
  const images = await repositorySyncImages(ref, refs ? { ...options, refs } : options);
  if (images.length === 0) {
    const why = refs ? "the tag filters exclude it" : options.selectTags ? "no tag matches the filters" : "the repository has no tags";
    throw new AirlockError("ERR_IMAGE_NOT_FOUND", `No images to sync found in ${JSON.stringify(source)}: ${why}`);
  }
  return images;
}

/**
 * The images of `--src dir SOURCE`: every directory under SOURCE (SOURCE included) that holds a
 * `manifest.json` file, found as skopeo's `filepath.WalkDir` finds them — entries in lexical
 * order, a directory not descended further once its `manifest.json` is seen. The suffix is the
 * image directory with SOURCE stripped (`/busybox:1.0`), or SOURCE's base name when SOURCE itself
 * is the image. Throws ERR_IMAGE_NOT_FOUND when there is none.
 */
export async function dirSyncImages(root: string): Promise<SyncImage[]> {
  try {
    await fs.stat(root);
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `Invalid source directory specified: ${root} (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}); give a directory of dir: images`, { cause });
  }
  const dirs: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (cause) {
      throw new AirlockError("ERR_IO", `Error walking the path ${JSON.stringify(root)}: cannot list ${dir}: ${(cause as Error).message}`, { cause });
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.isDirectory()) await walk(goClean(`${dir}/${e.name}`));
      else if (e.name === DIR_MANIFEST_FILE) {
        dirs.push(dir);
        return; // filepath.SkipDir from a file: the rest of this directory is skipped
      }
    }
  };
  await walk(goClean(root));
  if (dirs.length === 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `No images to sync found in ${JSON.stringify(root)}: no directory under it holds a ${DIR_MANIFEST_FILE}`);
  return dirs.map((d) => {
    let suffix = d.startsWith(root) ? d.slice(root.length) : d;
    if (suffix === "") suffix = goBase(root);
    return { source: DirReference.parse(d), suffix };
  });
}

/**
 * The images of `--src oci SOURCE`: every named entry (`org.opencontainers.image.ref.name`) of the
 * layout's index.json, as skopeo (main) enumerates them; the suffix is the name. Throws
 * ERR_INVALID_LAYOUT for a directory that is not a layout, ERR_IMAGE_NOT_FOUND when no entry is named.
 */
export async function ociSyncImages(layout: string): Promise<SyncImage[]> {
  if (layout.includes(":")) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `the OCI layout path ${JSON.stringify(layout)} contains a ":", which oci: references cannot express; choose a path without one`);
  }
  const path = join(layout, "index.json");
  const bytes = await readSmallFile(path, MAX_MANIFEST_SIZE, () => new AirlockError("ERR_INVALID_LAYOUT", `${layout} is not an OCI image layout: it has no index.json; check the path`));
  const index = parseLayoutIndex(bytes, path);
  const names = [...new Set(index.manifests.map(refName).filter((n): n is string => n !== undefined))];
  if (names.length === 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `No images to sync found in ${JSON.stringify(layout)}: no index.json entry has an org.opencontainers.image.ref.name`);
  return names.map((n) => ({ source: OciReference.parse(`${layout}:${n}`), suffix: n }));
}
