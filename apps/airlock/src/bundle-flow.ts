/**
 * The steps the bundle verbs share: read images.yaml, resolve it into concrete images, pin them
 * in a lock, and turn the lock into the list of images an export reads.
 */
import { dirname, join } from "node:path";
import {
  AirlockError,
  type DockerContext,
  type Digest,
  type ErrorCode,
  type ExportImage,
  isNotFound,
  listTags,
  type Manifest,
  parseImageName,
  parsePlatform,
  type SystemContext,
} from "@airlock/core";
import {
  buildLock,
  diffLock,
  type FetchedImage,
  type ImagesConfig,
  LOCK_FILE_NAME,
  type Lock,
  type LockedImage,
  loadImagesFile,
  type PlannedImage,
  pinnedSourceName,
  readLock,
  resolveImages,
} from "./config/index.js";
import { bundleIndexOf } from "./config/lock.js";
import { VERSION } from "./version.js";

/** A failure of one image, kept with --keep-going. */
export interface ImageFailure {
  /** The bundle name of the image, or `FILE:LINE:COL` of an images.yaml entry that could not be resolved into images. */
  image: string;
  /** What went wrong, for the user. */
  error: string;
  /** The stable code of the error. */
  code: ErrorCode;
  /**
   * For an entry that could not be resolved: the source of its images as the lock records them —
   * `docker://REPOSITORY` (with any tag or digest), or another transport's reference as written.
   */
  source?: string;
  /** The error itself (kept to decide the exit code; not written to reports). */
  cause: AirlockError;
}

/** A failure as a report lists it: without the error object. */
export function failureReport(f: ImageFailure): Omit<ImageFailure, "cause"> {
  const { cause: _, ...rest } = f;
  return rest;
}

/**
 * The error that ends a run whose images failed (`export --keep-going`): ERR_IMAGE_NOT_FOUND
 * (skopeo's exit status 2) only when every failure is an image that does not exist, else the code
 * of the first other failure (exit status 1).
 */
export function failuresError(failures: readonly ImageFailure[], message: string): AirlockError {
  const other = failures.find((f) => !isNotFound(f.cause));
  const code: ErrorCode = other === undefined ? "ERR_IMAGE_NOT_FOUND" : other.code;
  return new AirlockError(code, message, { cause: (other ?? failures[0])?.cause });
}

/** The registry settings of the command line for every image: `--retry-times`, `--retry-delay` and the global flags (user agent, registries.conf, TLS details). */
export type CommandRegistrySettings = Pick<DockerContext, "retryTimes" | "retryDelayMs" | "userAgent" | "registriesConf" | "tlsDetails" | "baseTls">;

/** `ctx` with the command line's registry settings applied (unchanged when they set nothing). */
export function withCommandSettings(ctx: SystemContext, settings: CommandRegistrySettings | undefined): SystemContext {
  if (settings === undefined || Object.values(settings).every((v) => v === undefined)) return ctx;
  return { ...ctx, docker: { ...ctx.docker, ...settings } };
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

/**
 * One line saying that an image's index is rewritten for its platform list, so that its digest
 * changes from the source's to the bundle's, and how to keep the source's index instead.
 */
export function indexRewriteNote(platforms: readonly string[], sourceDigest: Digest, bundleDigest: Digest): string {
  return (
    `index rewritten for ${platforms.join(", ")}, so the digest changes: ${sourceDigest} (source) → ${bundleDigest} (bundle); ` +
    "to keep the source's index and digest, set keepIndex: true (every platform moves) or platforms: all"
  );
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
export async function resolveAndLock(imagesFile: string, options: { keepGoing?: boolean; registry?: CommandRegistrySettings; signal?: AbortSignal } = {}): Promise<Resolved> {
  const config = await loadImagesFile(imagesFile);
  const failures: ImageFailure[] = [];
  const resolvedImages = await resolveImages(
    config,
    { listTags: (repo, ctx: SystemContext) => listTags(repo, withCommandSettings(ctx, options.registry), options.signal ? { signal: options.signal } : {}) },
    options.keepGoing
      ? {
          onError: (f) =>
            failures.push({
              image: f.entry.at,
              error: f.error.message,
              code: f.error.code,
              source: f.entry.kind === "registry" ? `docker://${f.entry.repository.name}` : f.entry.sourceAsWritten,
              cause: f.error,
            }),
        }
      : {},
  );
  const planned = resolvedImages.map((p) => ({ ...p, systemContext: withCommandSettings(p.systemContext, options.registry) }));
  const fetched = new Map<string, FetchedImage>();
  const fetchAndKeep = async (image: PlannedImage) => {
    const f = await fetchTop(image, options.signal);
    fetched.set(image.bundleName, f);
    return f;
  };
  const lock = await buildLock(planned, fetchAndKeep, {
    naming: config.destination.naming,
    ...(options.keepGoing ? { onError: (image: PlannedImage, error: AirlockError) => failures.push({ image: image.bundleName, error: error.message, code: error.code, cause: error }) } : {}),
  });
  lock.tool = `airlock ${VERSION}`;
  return { config, planned, lock, failures, fetched };
}

/**
 * Checks a fresh resolution against the lock on disk (`export --locked`): any drift — a tag that
 * moved, an image added or removed — is an error listing every difference. A locked image that
 * failed to resolve now (`--keep-going`: it is in `resolved.failures`) is not a drift: it is left
 * out of the returned lock, and stays a failure with its own reason.
 */
export async function checkLocked(resolved: Resolved, lockPath: string): Promise<Lock> {
  const all = await readLock(lockPath);
  const fresh = new Set(resolved.lock.images.map((i) => i.name));
  const failed = (l: LockedImage) => !fresh.has(l.name) && resolved.failures.some((f) => f.image === l.name || (f.source !== undefined && isSourceOf(f.source, l.source)));
  const locked: Lock = { ...all, images: all.images.filter((l) => !failed(l)) };
  const drifts = diffLock(locked, resolved.lock);
  if (drifts.length > 0) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `${lockPath} no longer matches what ${resolved.config.file} selects (${drifts.length} difference(s)); run airlock lock to accept the changes:\n  ${drifts.map((d) => d.message).join("\n  ")}`);
  }
  return locked;
}

/** Whether a locked source (`docker://REPO:TAG`, `docker://REPO@DIGEST`, or a transport reference) comes from `source` (`docker://REPO`, or the same transport reference). */
function isSourceOf(source: string, lockedSource: string): boolean {
  if (lockedSource === source) return true;
  return source.startsWith("docker://") && (lockedSource.startsWith(`${source}:`) || lockedSource.startsWith(`${source}@`));
}

/**
 * The lines `airlock lock` prints: each locked image's name and digest, and for an image whose
 * platform list subsets its index, that the bundle's index (and digest) will differ from the
 * source's (see {@link indexRewriteNote}).
 */
export function lockedImageLines(lock: Lock, fetched: ReadonlyMap<string, FetchedImage>): string[] {
  return lock.images.map((img) => {
    const source = fetched.get(img.name)?.manifest;
    const bundleIndex = source === undefined ? undefined : bundleIndexOf(img, source);
    return bundleIndex === undefined ? `${img.name} ${img.digest}` : `${img.name} ${img.digest} (${indexRewriteNote(img.platforms as string[], img.digest, bundleIndex.digest)})`;
  });
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
