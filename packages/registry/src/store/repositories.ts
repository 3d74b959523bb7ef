/**
 * The repository view of an OCI layout: which repositories, tags, manifests and blobs there are.
 *
 * - Tags are index.json entries named `REPOSITORY:TAG` (a bare `REPOSITORY` means `latest`).
 * - A repository holds every manifest and blob reachable from its tags (so a layout written by
 *   `airlock copy`, skopeo or umoci is servable as it is), plus the manifests and blobs recorded
 *   for it in airlock's repository records (content pushed by digest, uploaded blobs, mounts).
 *
 * The view is rebuilt when index.json changes; parsed manifests are cached by digest (their
 * content cannot change).
 */
import { type Descriptor, type Digest, type IndexJSON, isDigest, MAX_MANIFEST_SIZE, MediaType, refName } from "@airlock/core";
import { parseRefName, type RefNameParser } from "../names.js";
import type { LayoutContent } from "./content.js";

/** What airlock records for one repository beyond its tags: manifests (digest → media type) and blobs. */
export interface RepositoryRecord {
  manifests: Record<string, string>;
  blobs: Set<string>;
}

/** Where repository records come from (an OCI layout directory has them; a bundle has none). */
export interface RepositoryRecords {
  /** Names of the repositories that have a record. */
  list(): Promise<string[]>;
  /** The record of a repository, or undefined. */
  get(repository: string): Promise<RepositoryRecord | undefined>;
}

/** The parts of a manifest the view needs, read leniently from its JSON. */
interface ManifestInfo {
  size: number;
  mediaType: string | undefined;
  artifactType: string | undefined;
  configMediaType: string | undefined;
  annotations: Record<string, string> | undefined;
  subject: string | undefined;
  /** Index: the manifests it lists. */
  children: Descriptor[];
  /** Image manifest: config and layers. */
  blobs: string[];
}

/** Manifests and blobs reachable from a repository's tags. */
interface Closure {
  manifests: Map<string, string>;
  blobs: Set<string>;
}

interface Snapshot {
  version: string;
  /** repository → tag → descriptor of the tagged manifest. */
  tags: Map<string, Map<string, Descriptor>>;
  /** repository → manifests named by digest only (held, but under no tag). */
  untagged: Map<string, Descriptor[]>;
  closures: Map<string, Promise<Closure>>;
}

/** Indexes nest at most this deep when walking a repository's content. */
const MAX_DEPTH = 8;
/** Parsed manifests kept in memory. */
const MAX_CACHED_MANIFESTS = 50_000;

/** The repositories of one OCI layout (see the file comment for the model). */
export class RepositoryIndex {
  private readonly content: LayoutContent;
  private readonly records: RepositoryRecords | undefined;
  private snapshot: Promise<Snapshot> | undefined;
  private readonly manifests = new Map<string, Promise<ManifestInfo | undefined>>();
  private readonly parseName: RefNameParser;

  /** `parseName` reads index.json entry names (default {@link parseRefName}: `REPOSITORY:TAG`). */
  constructor(content: LayoutContent, records?: RepositoryRecords, parseName: RefNameParser = parseRefName) {
    this.content = content;
    this.records = records;
    this.parseName = parseName;
  }

  /** Forgets the cached view of index.json (call after changing it). */
  invalidate(): void {
    this.snapshot = undefined;
  }

  private async current(): Promise<Snapshot> {
    const version = await this.content.indexVersion();
    const cached = this.snapshot;
    if (cached) {
      const snap = await cached.catch(() => undefined);
      if (snap && snap.version === version) return snap;
      if (this.snapshot !== cached) return this.current();
    }
    const next = (async (): Promise<Snapshot> => {
      const index: IndexJSON = version === "none" ? { schemaVersion: 2, manifests: [] } : await this.content.readIndex();
      return { version, ...tagsOf(index, this.parseName), closures: new Map() };
    })();
    this.snapshot = next;
    next.catch(() => {
      if (this.snapshot === next) this.snapshot = undefined;
    });
    return next;
  }

  /** Names of every repository (tagged or recorded), sorted. */
  async repositories(): Promise<string[]> {
    const snap = await this.current();
    const names = new Set([...snap.tags.keys(), ...snap.untagged.keys()]);
    for (const n of (await this.records?.list()) ?? []) names.add(n);
    return [...names].sort();
  }

  /** Reports whether the repository has a tag or a record. */
  async hasRepository(repository: string): Promise<boolean> {
    const snap = await this.current();
    if (snap.tags.has(repository) || snap.untagged.has(repository)) return true;
    return (await this.records?.get(repository)) !== undefined;
  }

  /** The repository's tags, sorted; undefined when the repository does not exist. */
  async tags(repository: string): Promise<string[] | undefined> {
    const snap = await this.current();
    const tags = snap.tags.get(repository);
    if (tags) return [...tags.keys()].sort();
    return snap.untagged.has(repository) || (await this.records?.get(repository)) !== undefined ? [] : undefined;
  }

  /** The descriptor of the manifest `repository:tag` points to. */
  async resolveTag(repository: string, tag: string): Promise<Descriptor | undefined> {
    return (await this.current()).tags.get(repository)?.get(tag);
  }

  /** The media type of manifest `digest` if the repository holds it. */
  async manifestMediaType(repository: string, digest: Digest): Promise<string | undefined> {
    const record = await this.records?.get(repository);
    const recorded = record?.manifests[digest];
    if (recorded !== undefined) return recorded;
    return (await this.closure(repository)).manifests.get(digest);
  }

  /** Reports whether the repository holds `digest` as a blob (or as a manifest, which is a blob too). */
  async holdsBlob(repository: string, digest: Digest): Promise<boolean> {
    const record = await this.records?.get(repository);
    if (record && (record.blobs.has(digest) || record.manifests[digest] !== undefined)) return true;
    const closure = await this.closure(repository);
    return closure.blobs.has(digest) || closure.manifests.has(digest);
  }

  /** The referrers of `digest` in the repository, as the referrers API lists them, sorted by digest. */
  async referrers(repository: string, digest: Digest): Promise<Descriptor[]> {
    const all = new Map((await this.closure(repository)).manifests);
    const record = await this.records?.get(repository);
    for (const [d, mt] of Object.entries(record?.manifests ?? {})) all.set(d, mt);
    const out: Descriptor[] = [];
    for (const [d, mediaType] of all) {
      const info = await this.manifestInfo(d);
      if (!info || info.subject !== digest) continue;
      const desc: Descriptor = { mediaType, digest: d as Digest, size: info.size };
      const artifactType = info.artifactType ?? info.configMediaType;
      if (artifactType !== undefined) desc.artifactType = artifactType;
      if (info.annotations && Object.keys(info.annotations).length > 0) desc.annotations = { ...info.annotations };
      out.push(desc);
    }
    return out.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  }

  private async closure(repository: string): Promise<Closure> {
    const snap = await this.current();
    let c = snap.closures.get(repository);
    if (!c) {
      c = this.walk([...(snap.tags.get(repository)?.values() ?? []), ...(snap.untagged.get(repository) ?? [])]);
      snap.closures.set(repository, c);
    }
    return c;
  }

  private async walk(roots: Descriptor[]): Promise<Closure> {
    const closure: Closure = { manifests: new Map(), blobs: new Set() };
    const visit = async (desc: Descriptor, depth: number): Promise<void> => {
      if (closure.manifests.has(desc.digest) || depth > MAX_DEPTH) return;
      closure.manifests.set(desc.digest, desc.mediaType);
      const info = await this.manifestInfo(desc.digest);
      if (!info) return;
      for (const b of info.blobs) closure.blobs.add(b);
      for (const child of info.children) await visit(child, depth + 1);
    };
    for (const desc of roots) await visit(desc, 0);
    return closure;
  }

  /** Reads and parses manifest `digest` (cached); undefined when it is missing or not a manifest. */
  private manifestInfo(digest: string): Promise<ManifestInfo | undefined> {
    let p = this.manifests.get(digest);
    if (!p) {
      if (this.manifests.size >= MAX_CACHED_MANIFESTS) this.manifests.clear();
      p = this.readManifestInfo(digest);
      this.manifests.set(digest, p);
      // A missing manifest may be pushed later: do not cache its absence.
      p.then((info) => {
        if (!info) this.manifests.delete(digest);
      }, () => this.manifests.delete(digest));
    }
    return p;
  }

  private async readManifestInfo(digest: string): Promise<ManifestInfo | undefined> {
    if (!isDigest(digest)) return undefined;
    let bytes: Buffer;
    try {
      bytes = await this.content.readBlobBytes(digest, MAX_MANIFEST_SIZE);
    } catch {
      return undefined;
    }
    return parseManifestInfo(bytes);
  }
}

/**
 * The tags of every repository in `index`, and the manifests named by digest only: explicit
 * `REPOSITORY:TAG` names win over bare names, and the first of two entries with one name wins.
 */
function tagsOf(index: IndexJSON, parseName: RefNameParser): Pick<Snapshot, "tags" | "untagged"> {
  const repos = new Map<string, Map<string, Descriptor>>();
  const untagged = new Map<string, Descriptor[]>();
  const explicit = new Set<string>();
  for (const desc of index.manifests) {
    const name = refName(desc);
    const rt = name === undefined ? undefined : parseName(name);
    if (!rt) continue;
    if (rt.tag === undefined) {
      untagged.set(rt.repository, [...(untagged.get(rt.repository) ?? []), desc]);
      continue;
    }
    let tags = repos.get(rt.repository);
    if (!tags) {
      tags = new Map();
      repos.set(rt.repository, tags);
    }
    const key = `${rt.repository}:${rt.tag}`;
    if (explicit.has(key)) continue;
    if (rt.implicit && tags.has(rt.tag)) continue;
    tags.set(rt.tag, desc);
    if (!rt.implicit) explicit.add(key);
  }
  return { tags: repos, untagged };
}

function stringRecord(v: unknown): Record<string, string> | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, s] of Object.entries(v)) if (typeof s === "string") out[k] = s;
  return out;
}

function descriptorOf(v: unknown): Descriptor | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.digest !== "string" || !isDigest(o.digest) || typeof o.mediaType !== "string") return undefined;
  return { mediaType: o.mediaType, digest: o.digest, size: typeof o.size === "number" ? o.size : -1 };
}

/** Reads what the view needs from a manifest's JSON, tolerating anything it does not need. */
function parseManifestInfo(bytes: Buffer): ManifestInfo | undefined {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const o = json as Record<string, unknown>;
  const config = descriptorOf(o.config);
  const layers = Array.isArray(o.layers) ? o.layers.map(descriptorOf).filter((d): d is Descriptor => d !== undefined) : [];
  const children = Array.isArray(o.manifests) ? o.manifests.map(descriptorOf).filter((d): d is Descriptor => d !== undefined) : [];
  const subject = descriptorOf(o.subject);
  const mediaType = typeof o.mediaType === "string" ? o.mediaType : undefined;
  const isIndex = mediaType === MediaType.OCIIndex || mediaType === MediaType.DockerManifestList || (mediaType === undefined && Array.isArray(o.manifests));
  return {
    size: bytes.length,
    mediaType,
    artifactType: typeof o.artifactType === "string" && o.artifactType !== "" ? o.artifactType : undefined,
    configMediaType: isIndex ? undefined : config?.mediaType,
    annotations: stringRecord(o.annotations),
    subject: subject?.digest,
    children: isIndex ? children : [],
    blobs: isIndex ? [] : [...(config ? [config.digest] : []), ...layers.map((l) => l.digest)],
  };
}
