/**
 * `images.lock.yaml`: every image of images.yaml pinned to digests. For each image the lock records
 * its bundle name, its source, the digest, media type and size of its top-level manifest (an index
 * or an image manifest) and, for an index, the digest, media type, size and platform of each child
 * manifest that will move. `airlock lock` writes it; `export --locked` exports exactly these digests
 * and refuses to go on when the registry has drifted (see {@link diffLock}).
 *
 * The lock holds no secrets and no absolute paths of the machine that wrote it (sources are as
 * written in images.yaml).
 */
import { readFile } from "node:fs/promises";
import {
  AirlockError,
  type Descriptor,
  type Digest,
  formatPlatform,
  isAirlockError,
  isImageManifest,
  isManifestMediaType,
  Manifest,
  type ManifestMediaType,
  type Platform,
  parseDigest,
  parsePlatform,
  platformMatches,
  writeFileAtomic,
} from "@airlock/core";
import { Document, isMap, isSeq, type Node } from "yaml";
import { VERSION } from "../version.js";
import { NAMING_MODES, type NamingMode } from "./naming.js";
import type { PlannedImage } from "./resolve.js";
import { type Entry, YamlChecker } from "./yaml-check.js";

/** The one version of the lock format this airlock reads and writes. */
export const LOCK_FILE_VERSION = 1;

/** The usual name of the lock, beside images.yaml. */
export const LOCK_FILE_NAME = "images.lock.yaml";

/** A child manifest of a locked index: one platform's image (or an attestation manifest). */
export interface LockedManifest {
  /** `os/arch[/variant]` from the index entry; absent when the entry has no platform. */
  platform?: string;
  digest: Digest;
  mediaType: ManifestMediaType;
  size: number;
}

/** One image pinned by the lock. */
export interface LockedImage {
  /** The name in the bundle (and, with the naming mode, at the destination). */
  name: string;
  /** The source: `docker://FULL-REFERENCE`, or another transport's reference as written in images.yaml. */
  source: string;
  /** The digest of the top-level manifest the source had when locked. */
  digest: Digest;
  /** Its media type (an index or an image manifest). */
  mediaType: ManifestMediaType;
  /** Its size in bytes. */
  size: number;
  /** The platform selection: "all", or the platforms asked for (`os/arch[/variant]`). */
  platforms: "all" | string[];
  /** With a platform list: true = the whole index moves (digest kept); false = a smaller index is written (its digest differs from `digest`). */
  keepIndex: boolean;
  /** For an image manifest: its platform, when known. */
  platform?: string;
  /** For an index: the child manifests that move, in index order. */
  manifests?: LockedManifest[];
}

/** The content of images.lock.yaml. */
export interface Lock {
  version: 1;
  /** When the lock was made (ISO 8601, UTC). */
  generated: string;
  /** The tool that made it, e.g. `airlock 0.1.0`. */
  tool: string;
  /** The destination naming mode of images.yaml, carried so that import names images the same way. */
  naming: NamingMode;
  /** The images, in images.yaml order. */
  images: LockedImage[];
}

/** What {@link buildLock}'s fetcher returns for one image. */
export interface FetchedImage {
  /** The top-level manifest the source has now (index or image manifest), with its exact bytes. */
  manifest: Manifest;
  /** Optionally, child manifests of an index; when given, each locked child must be among them with the same digest and size. */
  children?: readonly Manifest[];
  /** For an image manifest: its platform (from its config), when the fetcher read it. */
  platform?: Platform;
}

/** Reads the current top-level manifest (and optionally children) of a planned image. */
export type FetchTop = (image: PlannedImage) => Promise<FetchedImage>;

/** Options of {@link buildLock}. */
export interface BuildLockOptions {
  /** The naming mode of images.yaml. */
  naming: NamingMode;
  /** The time recorded as `generated` (default: now). */
  now?: Date;
  /** How many images are fetched at once (default 8). */
  concurrency?: number;
  /** Called for each image that fails, which is then left out of the lock; without it, the first failure is thrown after all were tried. */
  onError?(image: PlannedImage, error: AirlockError): void;
}

const q = (s: string): string => JSON.stringify(s);

/** The annotation BuildKit puts on attestation manifests, naming the image manifest they describe. */
const ATTESTATION_REF_ANNOTATION = "vnd.docker.reference.digest";

/**
 * Pins planned images to digests: for each, calls `fetchTop`, selects the child manifests that will
 * move (every child for `platforms: all` or `keepIndex: true`, else those matching a requested
 * platform plus the attestation manifests that describe them) and records them. A requested
 * platform the index does not have is an ERR_NO_MATCHING_PLATFORM naming the ones it has.
 */
export async function buildLock(planned: readonly PlannedImage[], fetchTop: FetchTop, options: BuildLockOptions): Promise<Lock> {
  const results: (LockedImage | undefined)[] = new Array(planned.length);
  const errors: { image: PlannedImage; error: AirlockError }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < planned.length) {
      const i = next++;
      const image = planned[i] as PlannedImage;
      try {
        results[i] = lockImage(image, await fetchTop(image));
      } catch (err) {
        // Named by the images.yaml entry it comes from (a tag of a list that does not exist, say).
        const error = isAirlockError(err)
          ? err.message.includes(image.origin)
            ? err
            : new AirlockError(err.code, `${image.origin}: ${err.message}`, { cause: err, retryable: err.retryable })
          : new AirlockError("ERR_REGISTRY", `${image.origin}: ${image.sourceName}: ${(err as Error).message}`, { cause: err });
        errors.push({ image, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 8, planned.length)) }, worker));
  if (errors.length > 0) {
    if (options.onError === undefined) throw (errors.sort((a, b) => planned.indexOf(a.image) - planned.indexOf(b.image))[0] as (typeof errors)[number]).error;
    for (const e of errors) options.onError(e.image, e.error);
  }
  return {
    version: LOCK_FILE_VERSION,
    generated: (options.now ?? new Date()).toISOString(),
    tool: `airlock ${VERSION}`,
    naming: options.naming,
    images: results.filter((x): x is LockedImage => x !== undefined),
  };
}

/** Pins one image: see {@link buildLock}. */
export function lockImage(image: PlannedImage, fetched: FetchedImage): LockedImage {
  const m = fetched.manifest;
  const locked: LockedImage = {
    name: image.bundleName,
    source: image.sourceName,
    digest: m.digest,
    mediaType: m.mediaType,
    size: m.bytes.length,
    platforms: image.platforms === "all" ? "all" : image.platforms.map(formatPlatform),
    keepIndex: image.keepIndex,
  };
  if (!m.isIndex) {
    if (fetched.platform !== undefined) {
      locked.platform = formatPlatform(fetched.platform);
      if (image.platforms !== "all" && !image.platforms.some((want) => platformMatches(want, fetched.platform))) {
        throw new AirlockError(
          "ERR_NO_MATCHING_PLATFORM",
          `${image.origin}: ${image.sourceName} is a single-platform image for ${locked.platform}, not ${(locked.platforms as string[]).join(", ")}; change platforms: or remove it`,
        );
      }
    }
    return locked;
  }
  const entries = m.index.manifests;
  let selected: Descriptor[];
  if (image.platforms === "all") {
    selected = [...entries];
  } else {
    const missing = image.platforms.filter((want) => !entries.some((d) => platformMatches(want, d.platform)));
    if (missing.length > 0) {
      const have = entries.filter((d) => d.platform !== undefined && !isAttestation(d)).map((d) => formatPlatform(d.platform as Platform));
      throw new AirlockError(
        "ERR_NO_MATCHING_PLATFORM",
        `${image.origin}: ${image.sourceName} has no ${missing.map(formatPlatform).join(", ")} image; its index has ${have.length > 0 ? [...new Set(have)].join(", ") : "no platforms"}; change platforms:`,
      );
    }
    if (image.keepIndex) {
      selected = [...entries];
    } else {
      const wanted = (d: Descriptor) => !isAttestation(d) && (image.platforms as readonly Platform[]).some((want) => platformMatches(want, d.platform));
      const kept = new Set(entries.filter(wanted).map((d) => d.digest as string));
      selected = entries.filter((d) => kept.has(d.digest) || (isAttestation(d) && kept.has(d.annotations?.[ATTESTATION_REF_ANNOTATION] ?? "")));
    }
  }
  locked.manifests = selected.map((d) => {
    if (!isManifestMediaType(d.mediaType)) {
      throw new AirlockError("ERR_UNSUPPORTED_MEDIA_TYPE", `${image.origin}: ${image.sourceName}: index entry ${d.digest} has unsupported media type ${q(d.mediaType)}`);
    }
    if (fetched.children !== undefined) {
      const child = fetched.children.find((c) => c.digest === d.digest);
      if (child === undefined) {
        throw new AirlockError("ERR_MANIFEST_INVALID", `${image.origin}: ${image.sourceName}: child manifest ${d.digest} was not fetched`);
      }
      if (child.bytes.length !== d.size) {
        throw new AirlockError("ERR_SIZE_MISMATCH", `${image.origin}: ${image.sourceName}: child manifest ${d.digest} has ${child.bytes.length} bytes, the index says ${d.size}`);
      }
    }
    const lm: LockedManifest = { digest: d.digest, mediaType: d.mediaType, size: d.size };
    if (d.platform !== undefined) lm.platform = formatPlatform(d.platform);
    return lm;
  });
  return locked;
}

function isAttestation(d: Descriptor): boolean {
  return d.annotations?.["vnd.docker.reference.type"] === "attestation-manifest";
}

/**
 * The index a bundle holds for a locked image whose platform list subsets the source's index
 * (`keepIndex: false`): the source's index with only the child manifests the lock keeps, every
 * other field as it was, so its digest differs from the source's. Undefined when the source's
 * index moves as it is (`platforms: all`, `keepIndex: true`, an image manifest, or a list that
 * keeps every child). `source` is the locked top-level manifest.
 */
export function bundleIndexOf(locked: LockedImage, source: Manifest): Manifest | undefined {
  if (!source.isIndex || locked.platforms === "all" || locked.keepIndex || locked.manifests === undefined || source.digest !== locked.digest) return undefined;
  const kept = new Set<string>(locked.manifests.map((m) => m.digest));
  const entries = source.index.manifests.filter((d) => kept.has(d.digest));
  if (entries.length === source.index.manifests.length) return undefined;
  return Manifest.fromJSON({ ...source.index, manifests: entries }, source.mediaType);
}

/** The source to read a locked image from: a registry image by digest (`docker://REPO@DIGEST`), any other source as locked. */
export function pinnedSourceName(image: LockedImage): string {
  if (!image.source.startsWith("docker://")) return image.source;
  const ref = image.source.slice("docker://".length);
  const at = ref.indexOf("@");
  const noDigest = at < 0 ? ref : ref.slice(0, at);
  // Drop the tag: the last ":" after the last "/" (a ":" before it belongs to a host:port).
  const colon = noDigest.lastIndexOf(":");
  const repo = colon > noDigest.lastIndexOf("/") ? noDigest.slice(0, colon) : noDigest;
  return `docker://${repo}@${image.digest}`;
}

/** A difference between the lock and what images.yaml resolves to now. */
export interface LockDrift {
  /**
   * `added`: selected now, not in the lock; `removed`: in the lock, not selected now; `digest`:
   * the source now has another manifest (a tag was moved); `source`: the name now comes from
   * another source; `platforms`: the platform selection or keepIndex changed.
   */
  kind: "added" | "removed" | "digest" | "source" | "platforms";
  /** The bundle name. */
  name: string;
  /** One line for the user. */
  message: string;
}

/**
 * Compares a lock with a fresh one (built from images.yaml and the registries now) and lists every
 * drift, in the order of `fresh` then `locked`. Empty when `export --locked` may go on. The
 * `generated` time and the tool version are not compared.
 */
export function diffLock(locked: Lock, fresh: Lock): LockDrift[] {
  const out: LockDrift[] = [];
  const old = new Map(locked.images.map((i) => [i.name, i]));
  const now = new Map(fresh.images.map((i) => [i.name, i]));
  for (const f of fresh.images) {
    const l = old.get(f.name);
    if (l === undefined) {
      out.push({ kind: "added", name: f.name, message: `${f.name}: selected by images.yaml (${f.source}) but not in the lock; run airlock lock to add it` });
      continue;
    }
    if (l.source !== f.source) {
      out.push({ kind: "source", name: f.name, message: `${f.name}: the source changed from ${l.source} to ${f.source}` });
    }
    if (l.digest !== f.digest) {
      const what = f.source.startsWith("docker://") && !f.source.includes("@") ? "the tag now points to" : "the source now has";
      out.push({ kind: "digest", name: f.name, message: `${f.name}: ${what} ${f.digest}, locked ${l.digest}` });
    }
    const sel = (i: LockedImage) => `${i.platforms === "all" ? "all" : i.platforms.join(", ")}${i.platforms !== "all" && i.keepIndex ? " (keepIndex)" : ""}`;
    if (sel(l) !== sel(f)) {
      out.push({ kind: "platforms", name: f.name, message: `${f.name}: platforms changed from ${sel(l)} to ${sel(f)}` });
    }
  }
  for (const l of locked.images) {
    if (!now.has(l.name)) {
      out.push({ kind: "removed", name: l.name, message: `${l.name}: in the lock but no longer selected by images.yaml; run airlock lock to remove it` });
    }
  }
  if (locked.naming !== fresh.naming) {
    out.push({ kind: "source", name: "", message: `destination naming changed from ${locked.naming} to ${fresh.naming}` });
  }
  return out;
}

/** Serialises a lock as YAML (stable key order, platforms lists on one line). */
export function formatLock(lock: Lock): string {
  const ordered = {
    version: lock.version,
    generated: lock.generated,
    tool: lock.tool,
    naming: lock.naming,
    images: lock.images.map((i) => {
      const o: Record<string, unknown> = { name: i.name, source: i.source, digest: i.digest, mediaType: i.mediaType, size: i.size, platforms: i.platforms, keepIndex: i.keepIndex };
      if (i.platform !== undefined) o.platform = i.platform;
      if (i.manifests !== undefined) {
        o.manifests = i.manifests.map((m) => {
          const c: Record<string, unknown> = {};
          if (m.platform !== undefined) c.platform = m.platform;
          return Object.assign(c, { digest: m.digest, mediaType: m.mediaType, size: m.size });
        });
      }
      return o;
    }),
  };
  const doc = new Document(ordered);
  doc.commentBefore = " images.lock.yaml: every image of images.yaml pinned to digests by `airlock lock`.\n Do not edit; run `airlock lock` again to update it. `airlock export --locked` exports exactly this.";
  const images = doc.get("images");
  for (const item of isSeq(images) ? images.items : []) {
    const platforms = isMap(item) ? item.get("platforms", true) : undefined;
    if (isSeq(platforms)) platforms.flow = true;
  }
  return doc.toString({ lineWidth: 0 });
}

/**
 * Writes a lock atomically (a reader sees the old file or the new one, never a mix). Returns false,
 * writing nothing, when the file already pins exactly the same (only its `generated` time and
 * `tool` would change).
 */
export async function writeLock(path: string, lock: Lock): Promise<boolean> {
  // A lock that pins the same images is left as it is, so that relocking changes no file (and
  // shows no diff in version control) until something moved.
  const old = await readLock(path).catch(() => undefined);
  if (old !== undefined && formatLock({ ...old, generated: lock.generated, tool: lock.tool }) === formatLock(lock)) return false;
  await writeFileAtomic(path, formatLock(lock));
  return true;
}

/** Reads and checks a lock file. Throws ERR_IO when it cannot be read, ConfigFileError when invalid. */
export async function readLock(path: string): Promise<Lock> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file; run airlock lock first" : (err as Error).message;
    throw new AirlockError("ERR_IO", `cannot read lock file ${path}: ${why}`, { cause: err });
  }
  return parseLock(text, path);
}

const LOCK_KEYS = ["version", "generated", "tool", "naming", "images"] as const;
const LOCKED_IMAGE_KEYS = ["name", "source", "digest", "mediaType", "size", "platforms", "keepIndex", "platform", "manifests"] as const;
const LOCKED_MANIFEST_KEYS = ["platform", "digest", "mediaType", "size"] as const;

/** Parses and checks the text of a lock file; every problem is reported as `FILE:LINE:COL: message`. */
export function parseLock(text: string, fileName: string): Lock {
  const c = new YamlChecker(text, fileName);
  const lock: Lock = { version: 1, generated: "", tool: "", naming: "keep-path", images: [] };
  if (c.root === null) {
    if (c.issues.length === 0) c.error(null, "the lock file is empty; run airlock lock to write it");
    c.throwIfIssues("lock file");
    return lock;
  }
  const top = c.mapping(c.root, "the lock", LOCK_KEYS);
  if (top !== undefined) {
    const v = c.require(top, "version", c.root, "the lock");
    if (v !== undefined && !c.isScalarValue(v.value, LOCK_FILE_VERSION)) c.error(v.value ?? v.key, `version must be ${LOCK_FILE_VERSION}; this lock was written by another airlock: run airlock lock again`);
    const g = c.require(top, "generated", c.root, "the lock");
    if (g !== undefined) {
      const s = c.string(g.value, "generated");
      if (s !== undefined && Number.isNaN(Date.parse(s))) c.error(g.value, `generated must be an ISO 8601 time, found ${q(s)}`);
      else if (s !== undefined) lock.generated = s;
    }
    const t = c.require(top, "tool", c.root, "the lock");
    if (t !== undefined) lock.tool = c.string(t.value, "tool") ?? "";
    const n = c.require(top, "naming", c.root, "the lock");
    if (n !== undefined) {
      const s = c.string(n.value, "naming");
      if (s !== undefined && !(NAMING_MODES as readonly string[]).includes(s)) c.error(n.value, `naming must be one of ${NAMING_MODES.join(", ")}, found ${q(s)}`);
      else if (s !== undefined) lock.naming = s as NamingMode;
    }
    const im = c.require(top, "images", c.root, "the lock");
    const items = im === undefined ? undefined : c.list(im.value, "images");
    const seen = new Map<string, number>();
    (items ?? []).forEach((node, i) => {
      const img = readLockedImage(c, node, `images[${i}]`);
      if (img === undefined) return;
      const first = seen.get(img.name);
      if (first !== undefined) c.error(node, `images[${i}]: ${q(img.name)} is already locked by images[${first}]`);
      else seen.set(img.name, i);
      lock.images.push(img);
    });
  }
  c.throwIfIssues("lock file");
  return lock;
}

function readDigest(c: YamlChecker, node: Node | null, path: string): Digest | undefined {
  const s = c.string(node, path);
  if (s === undefined) return undefined;
  try {
    return parseDigest(s);
  } catch (err) {
    c.error(node, `${path}: ${(err as Error).message}`);
    return undefined;
  }
}

function readMediaType(c: YamlChecker, node: Node | null, path: string): ManifestMediaType | undefined {
  const s = c.string(node, path);
  if (s !== undefined && !isManifestMediaType(s)) {
    c.error(node, `${path}: ${q(s)} is not a manifest media type airlock supports`);
    return undefined;
  }
  return s as ManifestMediaType | undefined;
}

function readPlatformString(c: YamlChecker, node: Node | null, path: string): string | undefined {
  const s = c.string(node, path);
  if (s === undefined) return undefined;
  try {
    parsePlatform(s);
    return s;
  } catch (err) {
    c.error(node, `${path}: ${(err as Error).message}`);
    return undefined;
  }
}

/** Reads the required key `k` of a mapping with `read`; records an issue when it is missing. */
function required<T>(c: YamlChecker, entries: Map<string, Entry>, node: Node | null, path: string, k: string, read: (n: Node | null, p: string) => T | undefined): T | undefined {
  const entry = c.require(entries, k, node, path);
  return entry === undefined ? undefined : read(entry.value, `${path}.${k}`);
}

function readLockedManifest(c: YamlChecker, node: Node | null, path: string): LockedManifest | undefined {
  const m = c.mapping(node, path, LOCKED_MANIFEST_KEYS);
  if (m === undefined) return undefined;
  const digest = required(c, m, node, path, "digest", (n, p) => readDigest(c, n, p));
  const mediaType = required(c, m, node, path, "mediaType", (n, p) => readMediaType(c, n, p));
  const size = required(c, m, node, path, "size", (n, p) => c.integer(n, p, 0));
  const platform = m.has("platform") ? readPlatformString(c, m.get("platform")!.value, `${path}.platform`) : undefined;
  if (digest === undefined || mediaType === undefined || size === undefined) return undefined;
  const out: LockedManifest = { digest, mediaType, size };
  if (platform !== undefined) out.platform = platform;
  return out;
}

function readLockedImage(c: YamlChecker, node: Node | null, path: string): LockedImage | undefined {
  const e = c.mapping(node, path, LOCKED_IMAGE_KEYS);
  if (e === undefined) return undefined;
  const before = c.issues.length;
  const name = required(c, e, node, path, "name", (n, p) => c.string(n, p));
  const source = required(c, e, node, path, "source", (n, p) => c.string(n, p));
  const digest = required(c, e, node, path, "digest", (n, p) => readDigest(c, n, p));
  const mediaType = required(c, e, node, path, "mediaType", (n, p) => readMediaType(c, n, p));
  const size = required(c, e, node, path, "size", (n, p) => c.integer(n, p, 0));
  const keepIndex = required(c, e, node, path, "keepIndex", (n, p) => c.boolean(n, p));
  const platforms = required(c, e, node, path, "platforms", (n, p): "all" | string[] | undefined => {
    if (c.isScalarValue(n, "all")) return "all";
    return c.list(n, p)?.map((item, i) => readPlatformString(c, item, `${p}[${i}]`) ?? "");
  });
  const platform = e.has("platform") ? readPlatformString(c, e.get("platform")!.value, `${path}.platform`) : undefined;
  const manifestsEntry = e.get("manifests");
  const manifests = manifestsEntry === undefined ? undefined : (c.list(manifestsEntry.value, `${path}.manifests`) ?? []).map((n, i) => readLockedManifest(c, n, `${path}.manifests[${i}]`));
  if (mediaType !== undefined) {
    if (isImageManifest(mediaType) && manifestsEntry !== undefined) c.error(manifestsEntry.key, `${path}: an image manifest has no child manifests; remove manifests:`);
    if (!isImageManifest(mediaType) && manifestsEntry === undefined) c.error(node, `${path}: an index needs manifests: (its child manifests)`);
    if (!isImageManifest(mediaType) && e.has("platform")) c.error(e.get("platform")!.key, `${path}: platform: is for an image manifest; an index lists platforms under manifests:`);
  }
  if (c.issues.length > before) return undefined;
  const out: LockedImage = {
    name: name as string,
    source: source as string,
    digest: digest as Digest,
    mediaType: mediaType as ManifestMediaType,
    size: size as number,
    platforms: platforms as "all" | string[],
    keepIndex: keepIndex as boolean,
  };
  if (platform !== undefined) out.platform = platform;
  if (manifests !== undefined) out.manifests = manifests as LockedManifest[];
  return out;
}
