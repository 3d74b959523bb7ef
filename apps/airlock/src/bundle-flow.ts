/**
 * The steps the bundle verbs share: read images.yaml, resolve it into concrete images, pin them
 * in a lock, and turn the lock into the list of images an export reads.
 */
import { dirname, join } from "node:path";
import { AirlockError, type ExportImage, listTags, type Manifest, parseImageName, parsePlatform, type SystemContext } from "@airlock/core";
import {
  buildLock,
  diffLock,
  type FetchedImage,
  type ImagesConfig,
  LOCK_FILE_NAME,
  type Lock,
  loadImagesFile,
  type PlannedImage,
  pinnedSourceName,
  readLock,
  resolveImages,
} from "./config/index.js";
import { VERSION } from "./version.js";

/** A failure of one image, kept with --keep-going. */
export interface ImageFailure {
  image: string;
  error: string;
}

/** Everything resolved from an images.yaml: the config, the planned images, their lock. */
export interface Resolved {
  config: ImagesConfig;
  planned: PlannedImage[];
  lock: Lock;
  failures: ImageFailure[];
  /** What was read from each image's source while locking, by bundle name (an export reuses it). */
  fetched: Map<string, FetchedImage>;
}

/** Where the lock of `imagesFile` lives by default: next to it. */
export function defaultLockPath(imagesFile: string): string {
  return join(dirname(imagesFile), LOCK_FILE_NAME);
}

/** Reads the current top-level manifest (and an index's children) of a planned image. */
async function fetchTop(image: PlannedImage, signal?: AbortSignal): Promise<FetchedImage> {
  const src = await image.source.newSource(image.systemContext);
  try {
    const manifest: Manifest = await src.getManifest(undefined, signal);
    if (!manifest.isIndex) return { manifest };
    const children = await Promise.all(manifest.index.manifests.map((d) => src.getManifest(d.digest, signal)));
    return { manifest, children };
  } finally {
    await src.close();
  }
}

/**
 * Reads `imagesFile`, resolves tag selections against the registries, and pins every image in a
 * fresh lock. With `keepGoing`, images that fail are left out and reported in `failures`.
 */
export async function resolveAndLock(imagesFile: string, options: { keepGoing?: boolean; signal?: AbortSignal } = {}): Promise<Resolved> {
  const config = await loadImagesFile(imagesFile);
  const failures: ImageFailure[] = [];
  const planned = await resolveImages(
    config,
    { listTags: (repo, ctx: SystemContext) => listTags(repo, ctx, options.signal ? { signal: options.signal } : {}) },
    options.keepGoing ? { onError: (f) => failures.push({ image: f.entry.at, error: f.error.message }) } : {},
  );
  const fetched = new Map<string, FetchedImage>();
  const fetchAndKeep = async (image: PlannedImage) => {
    const f = await fetchTop(image, options.signal);
    fetched.set(image.bundleName, f);
    return f;
  };
  const lock = await buildLock(planned, fetchAndKeep, {
    naming: config.destination.naming,
    ...(options.keepGoing ? { onError: (image: PlannedImage, error: Error) => failures.push({ image: image.bundleName, error: error.message }) } : {}),
  });
  lock.tool = `airlock ${VERSION}`;
  return { config, planned, lock, failures, fetched };
}

/**
 * Checks a fresh resolution against the lock on disk (`export --locked`): any drift — a tag that
 * moved, an image added or removed — is an error listing every difference.
 */
export async function checkLocked(resolved: Resolved, lockPath: string): Promise<Lock> {
  const locked = await readLock(lockPath);
  const drifts = diffLock(locked, resolved.lock);
  if (drifts.length > 0) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `${lockPath} no longer matches what ${resolved.config.file} selects (${drifts.length} difference(s)); run airlock lock to accept the changes:\n  ${drifts.map((d) => d.message).join("\n  ")}`);
  }
  return locked;
}

/**
 * The images an export reads, from a lock: registry images pinned to their locked digest (so a
 * tag moving during the export cannot mix versions), other transports as written. `fetched`
 * (what locking read) hands the export the manifests it already has, where they are the locked ones.
 */
export function exportImagesFor(lock: Lock, planned: PlannedImage[], fetched?: ReadonlyMap<string, FetchedImage>): ExportImage[] {
  const byName = new Map(planned.map((p) => [p.bundleName, p]));
  return lock.images.map((img) => {
    const plan = byName.get(img.name);
    const source = img.source.startsWith("docker://") ? parseImageName(pinnedSourceName(img)) : (plan?.source ?? parseImageName(img.source));
    const keepIndex = plan?.keepIndex ?? false;
    const platforms = img.platforms === "all" || keepIndex ? ("all" as const) : img.platforms.map(parsePlatform);
    const out: ExportImage = { source, name: img.name, platforms };
    if (plan) out.ctx = plan.systemContext;
    const f = fetched?.get(img.name);
    if (f && f.manifest.digest === img.digest) out.manifests = [f.manifest, ...(f.children ?? [])];
    return out;
  });
}
