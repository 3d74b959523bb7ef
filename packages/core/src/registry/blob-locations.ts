/**
 * Where blobs were last seen in registries, kept across runs — airlock's counterpart of
 * containers/image's blob-info cache. A push looks here when a blob is not in its repository yet:
 * if another repository of the same registry had it, the blob is mounted from there (one request)
 * instead of uploaded. A script that pushes a family of images one `airlock copy` at a time then
 * uploads their shared base layers once, as skopeo does.
 *
 * The cache is a hint, never trusted: a mount that the registry refuses (the blob is gone, or the
 * credentials may not read that repository) just falls back to the upload. It holds repository
 * names and digests only, in `$XDG_CACHE_HOME/airlock/blob-locations.json` (default
 * `~/.cache/…`); `$AIRLOCK_BLOB_LOCATIONS` names another file, or `off` turns the cache off.
 * Bounded: {@link MAX_REGISTRIES} registries, the newest {@link MAX_DIGESTS} digests of each,
 * {@link MAX_REPOS} repositories per digest.
 */
import { readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../fsutil.js";

/** Registries remembered (the least recently used are dropped). */
export const MAX_REGISTRIES = 64;
/** Digests remembered per registry (the oldest are dropped). */
export const MAX_DIGESTS = 4096;
/** Repositories remembered per digest (the most recent first). */
export const MAX_REPOS = 4;
/** Environment variable naming the cache file, or `off`. */
export const BLOB_LOCATIONS_ENV = "AIRLOCK_BLOB_LOCATIONS";

interface CacheFile {
  version: 1;
  /** registry domain → digest → its repositories, most recent first; digests oldest first. */
  registries: Record<string, Record<string, string[]>>;
}

/** Blob locations by registry, loaded from and merged back into one JSON file. */
export class BlobLocations {
  /** The file, or undefined for a cache that lives in memory only. */
  readonly path: string | undefined;
  private readonly known = new Map<string, Map<string, string[]>>();
  /** What this process saw, to merge into the file on {@link flush}. */
  private readonly seen = new Map<string, Map<string, string[]>>();

  constructor(path: string | undefined) {
    this.path = path;
    if (path) merge(this.known, readCache(path));
  }

  private static instance: BlobLocations | null | undefined;

  /** The process's cache (from the environment), or undefined when it is turned off. */
  static shared(): BlobLocations | undefined {
    if (BlobLocations.instance === undefined) {
      const env = globalThis.process?.env?.[BLOB_LOCATIONS_ENV];
      const cacheHome = globalThis.process?.env?.XDG_CACHE_HOME || join(homedir(), ".cache");
      BlobLocations.instance = env === "off" || env === "0" ? null : new BlobLocations(env || join(cacheHome, "airlock", "blob-locations.json"));
    }
    return BlobLocations.instance ?? undefined;
  }

  /** Repositories of `domain` other than `exclude` that held `digest`, most recent first. */
  candidates(domain: string, digest: string, exclude: string): string[] {
    return (this.known.get(domain)?.get(digest) ?? []).filter((r) => r !== exclude);
  }

  /** Records that repository `repo` of `domain` holds `digest`. */
  record(domain: string, repo: string, digest: string): void {
    for (const m of [this.known, this.seen]) add(m, domain, digest, [repo]);
  }

  /** Records that `repo` of `domain` does not hold `digest` (a mount from it failed). */
  forget(domain: string, repo: string, digest: string): void {
    const repos = this.known.get(domain)?.get(digest);
    if (repos) this.known.get(domain)?.set(digest, repos.filter((r) => r !== repo));
  }

  /**
   * Merges what this process saw into the file (re-read first: other airlock processes may have
   * written it meanwhile) and writes it atomically. Never fails: the cache is only a hint.
   */
  async flush(): Promise<void> {
    if (!this.path || this.seen.size === 0) return;
    const onDisk = new Map<string, Map<string, string[]>>();
    merge(onDisk, readCache(this.path));
    for (const [domain, digests] of this.seen) for (const [digest, repos] of digests) add(onDisk, domain, digest, repos);
    this.seen.clear();
    const file: CacheFile = { version: 1, registries: {} };
    for (const [domain, digests] of onDisk) file.registries[domain] = Object.fromEntries(digests);
    try {
      await mkdir(dirname(this.path), { recursive: true });
      await writeFileAtomic(this.path, JSON.stringify(file));
    } catch {
      // A read-only home or a full disk: the next run uploads what it could have mounted.
    }
  }
}

/** Adds `repos` (most recent first) to `digest`'s locations in `domain`, within the bounds. */
function add(m: Map<string, Map<string, string[]>>, domain: string, digest: string, repos: string[]): void {
  const digests = m.get(domain) ?? new Map<string, string[]>();
  m.delete(domain); // re-inserted last: the most recently used
  m.set(domain, digests);
  while (m.size > MAX_REGISTRIES) m.delete(m.keys().next().value as string);
  const before = digests.get(digest) ?? [];
  digests.delete(digest); // re-inserted last: the newest
  digests.set(digest, [...new Set([...repos, ...before])].slice(0, MAX_REPOS));
  while (digests.size > MAX_DIGESTS) digests.delete(digests.keys().next().value as string);
}

function merge(into: Map<string, Map<string, string[]>>, file: CacheFile | undefined): void {
  for (const [domain, digests] of Object.entries(file?.registries ?? {})) {
    if (typeof digests !== "object" || digests === null) continue;
    for (const [digest, repos] of Object.entries(digests)) {
      if (Array.isArray(repos)) add(into, domain, digest, repos.filter((r): r is string => typeof r === "string"));
    }
  }
}

function readCache(path: string): CacheFile | undefined {
  try {
    const data = JSON.parse(readFileSync(path, "utf8")) as CacheFile;
    return data?.version === 1 && typeof data.registries === "object" && data.registries !== null ? data : undefined;
  } catch {
    return undefined;
  }
}
