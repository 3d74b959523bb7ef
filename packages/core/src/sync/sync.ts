/**
 * `sync`: copies many images — the tags of registry repositories, a tree of `dir:` images, the
 * images of an OCI layout — to a registry, a directory tree or an OCI layout, as `skopeo sync`
 * does, without its limits:
 *
 * - several images at once (`parallel`), at most `maxPerRegistry` at once against any one
 *   registry (source or destination);
 * - an image whose manifest digest is already under its destination name is skipped without
 *   reading a blob (see present.ts): a re-run moves nothing;
 * - `dir:` and `oci:` destinations are updated in place (skopeo refuses an existing directory);
 * - images of one registry are mounted rather than uploaded when source and destination share it;
 * - with `keepGoing`, every failure is reported and the others still sync.
 *
 * The plain-option facade is {@link syncImages}; {@link planSync} names the destinations first (so
 * a bad name fails before anything is copied), {@link runSync} runs a plan.
 */
import { setMaxListeners } from "node:events";
import { type CopyOptions, copyImage, type CopyResult, type MultiArch } from "../copy/copy.js";
import type { Digest } from "../digest.js";
import { AirlockError, isAirlockError } from "../errors.js";
import { formatPlatform, type Platform, platformMatches } from "../platform.js";
import type { ProgressListener } from "../progress.js";
import { isRetryableNetworkError, retryDelay, sleep } from "../registry/retry.js";
import { isBlobMountTarget } from "../transports/types.js";
import { DockerImageReference } from "../transports/docker/reference.js";
import type { ImageReference, SystemContext } from "../transports/types.js";
import { type SyncImage, type SyncNaming, syncDestination } from "./naming.js";
import { destinationDigest, RegistryClientPool, sourceDigest } from "./present.js";
import { runScheduled } from "./schedule.js";

/** Images copied at once when `parallel` is not given. */
export const DEFAULT_SYNC_PARALLEL = 4;

/** One image of a sync plan: what to read and where it goes. */
export interface SyncTask {
  /** 0-based position in the plan. */
  index: number;
  image: SyncImage;
  /** The destination reference (from {@link syncDestination}). */
  destination: ImageReference;
  /** Settings for writing this destination, in place of {@link SyncOptions.destinationContext} (e.g. its signature storage). */
  destinationContext?: SystemContext;
}

/** What happened to one image. `would-*` only in a dry run. */
export type SyncStatus = "copied" | "skipped" | "failed" | "would-copy" | "would-skip";

/** The outcome of one image of a sync. */
export interface SyncImageResult {
  task: SyncTask;
  status: SyncStatus;
  /** Digest of the manifest under the destination name (written, already there, or that would be written). */
  digest?: Digest;
  /** Blob bytes moved for this image (0 when skipped). */
  bytesCopied: number;
  blobsCopied: number;
  blobsSkipped: number;
  /** Attempts made (1 + retries). */
  attempts: number;
  /** Why the image failed. */
  error?: Error;
}

/** Events of a sync, for the CLI to draw (blob-level progress goes to `onProgress`). */
export type SyncEvent =
  /** The task has started: its destination is being checked. */
  | { type: "image-start"; task: SyncTask; total: number }
  /** The image is not at the destination: the copy starts (never in a dry run). */
  | { type: "image-copy"; task: SyncTask; total: number }
  | { type: "image-end"; result: SyncImageResult; total: number }
  | { type: "warning"; task?: SyncTask; message: string };

/** Options of {@link runSync} and {@link syncImages}. */
export interface SyncOptions {
  /** Settings for writing the destination (its registry credentials and TLS). */
  destinationContext?: SystemContext;
  /** `system` (default): from an index, the image for `platform`; `all`: the whole index (`--all`). */
  multiArch?: Extract<MultiArch, "system" | "all">;
  /** The platform chosen from an index in `system` mode (default: this host's). */
  platform?: Partial<Platform>;
  /**
   * In `all` mode, platforms the user asked for (`--platform` given more than once): the whole
   * index is copied — a subset would be a new index with a new digest — and a warning names any
   * listed platform an index lacks.
   */
  platforms?: readonly Platform[];
  /** Fail rather than change any digest (`--preserve-digests`). */
  preserveDigests?: boolean;
  /** Check and report, write nothing (`--dry-run`). */
  dryRun?: boolean;
  /** Go on after a failed image and report every failure (`--keep-going`). */
  keepGoing?: boolean;
  /** Images copied at once (default {@link DEFAULT_SYNC_PARALLEL}). */
  parallel?: number;
  /** Images copied at once against any one registry, source or destination (default: `parallel`). */
  maxPerRegistry?: number;
  /** Retries of an image whose copy failed with a retryable error (`--retry-times`, default 0). */
  retryTimes?: number;
  /** Fixed delay between those retries in ms (default: exponential backoff). */
  retryDelayMs?: number;
  /** Blobs copied at once within one image (copyImage's `concurrency`). */
  concurrency?: number;
  /**
   * Further copyImage options for every copy (e.g. a trust-policy check). The options sync sets
   * itself — contexts, platform, digests, concurrency, signal, progress — take precedence.
   */
  copyOptions?: Omit<CopyOptions, "sourceContext" | "destinationContext" | "multiArch" | "platform" | "preserveDigests" | "concurrency" | "signal" | "onProgress">;
  signal?: AbortSignal;
  /** Blob and manifest progress of the copies. */
  onProgress?: ProgressListener;
  /** Image-level events. */
  onEvent?: (event: SyncEvent) => void;
}

/** What a sync did. */
export interface SyncReport {
  /** One result per task, in plan order (tasks never started after a failure without keepGoing are absent). */
  results: SyncImageResult[];
  /** Images copied (or, in a dry run, that would be). */
  copied: number;
  /** Images already at the destination. */
  skipped: number;
  failed: number;
  /** Blob bytes moved. */
  bytesCopied: number;
  durationMs: number;
}

/**
 * Names the destination of every image and returns the plan. The same source to the same
 * destination twice (an image listed in two YAML sections) is kept once; two different sources
 * to one destination are refused — skopeo would let the last copy win — with ERR_INVALID_ARGUMENT
 * that suggests `--scoped` or a per-repository destination.
 */
export function planSync(images: readonly SyncImage[], naming: SyncNaming): SyncTask[] {
  const tasks: SyncTask[] = [];
  const byDestination = new Map<string, SyncTask>();
  for (const image of images) {
    const destination = syncDestination(image, naming);
    const key = destination.toString();
    const other = byDestination.get(key);
    if (other) {
      if (other.image.source.toString() === image.source.toString()) continue;
      throw new AirlockError(
        "ERR_INVALID_ARGUMENT",
        `${other.image.source} and ${image.source} would both be written to ${key}; keep their paths apart with --scoped, or give the repositories their own destination: in the sync YAML`,
      );
    }
    const task: SyncTask = { index: tasks.length, image, destination };
    byDestination.set(key, task);
    tasks.push(task);
  }
  return tasks;
}

/** Names the destinations ({@link planSync}) and syncs every image ({@link runSync}). */
export async function syncImages(images: readonly SyncImage[], naming: SyncNaming, options: SyncOptions = {}): Promise<SyncReport> {
  return runSync(planSync(images, naming), options);
}

/** The registries a task talks to (its source's and its destination's), the keys of the per-registry limit. */
export function taskRegistries(task: SyncTask): string[] {
  const out: string[] = [];
  if (task.image.source instanceof DockerImageReference) out.push(task.image.source.ref.domain);
  if (task.destination instanceof DockerImageReference) out.push(task.destination.ref.domain);
  return out;
}

/**
 * Runs a plan: for each image, checks whether its manifest is already under the destination name
 * (skipped if so), else copies it (unless `dryRun`), with the limits, retries and failure policy
 * of `options`. Without `keepGoing`, the first failure stops the sync: running copies are aborted
 * (leaving their destinations as they were) and that failure is thrown, with the image named.
 */
export async function runSync(tasks: readonly SyncTask[], options: SyncOptions = {}): Promise<SyncReport> {
  const started = Date.now();
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  setMaxListeners(0, signal); // every running copy listens to it
  const pool = new RegistryClientPool();
  const results: SyncImageResult[] = [];
  const total = tasks.length;
  let firstFailure: SyncImageResult | undefined;
  try {
    await runScheduled(
      tasks,
      async (task) => {
        options.onEvent?.({ type: "image-start", task, total });
        const result = await syncOne(task, options, pool, signal, total);
        results.push(result);
        if (result.status === "failed" && !options.keepGoing && !firstFailure) {
          firstFailure = result;
          stop.abort(new AirlockError("ERR_ABORTED", `stopped: ${task.image.source} failed`));
        }
        options.onEvent?.({ type: "image-end", result, total });
      },
      {
        parallel: options.parallel ?? DEFAULT_SYNC_PARALLEL,
        ...(options.maxPerRegistry === undefined ? {} : { perKey: options.maxPerRegistry }),
        keysOf: taskRegistries,
        stopped: () => signal.aborted,
      },
    );
  } finally {
    await pool.close();
  }
  options.signal?.throwIfAborted();
  if (firstFailure) {
    const err = firstFailure.error as Error;
    const code = err instanceof AirlockError ? err.code : "ERR_DESTINATION";
    throw new AirlockError(code, `Error copying ref ${firstFailure.task.image.source} to ${firstFailure.task.destination}: ${err.message}`, { cause: err });
  }
  results.sort((a, b) => a.task.index - b.task.index);
  const report: SyncReport = { results, copied: 0, skipped: 0, failed: 0, bytesCopied: 0, durationMs: 0 };
  for (const r of results) {
    if (r.status === "copied" || r.status === "would-copy") report.copied++;
    else if (r.status === "skipped" || r.status === "would-skip") report.skipped++;
    else report.failed++;
    report.bytesCopied += r.bytesCopied;
  }
  report.durationMs = Date.now() - started;
  return report;
}

async function syncOne(task: SyncTask, options: SyncOptions, pool: RegistryClientPool, signal: AbortSignal, total: number): Promise<SyncImageResult> {
  const result: SyncImageResult = { task, status: "failed", bytesCopied: 0, blobsCopied: 0, blobsSkipped: 0, attempts: 0 };
  const retries = options.retryTimes ?? 0;
  for (;;) {
    result.attempts++;
    try {
      await attempt(task, options, pool, signal, result, total);
      return result;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (signal.aborted || !isRetryableNetworkError(error) || result.attempts > retries) {
        result.status = "failed";
        result.error = error;
        return result;
      }
      options.onEvent?.({ type: "warning", task, message: `${task.image.source}: attempt ${result.attempts} failed (${error.message}); retrying` });
      try {
        await sleep(retryDelay(result.attempts - 1, { retries, delayMs: options.retryDelayMs }), signal);
      } catch (abort) {
        result.error = abort as Error;
        return result;
      }
    }
  }
}

async function attempt(task: SyncTask, options: SyncOptions, pool: RegistryClientPool, signal: AbortSignal, result: SyncImageResult, total: number): Promise<void> {
  const { source, sourceContext } = task.image;
  const multiArch = options.multiArch ?? "system";
  const choice = { multiArch, ...(options.platform ? { platform: options.platform } : {}), ...(options.platforms ? { platforms: options.platforms } : {}) };
  const destinationContext = task.destinationContext ?? options.destinationContext;
  // Both sides are asked at once (one HEAD each for registries).
  const holding = destinationDigest(task.destination, destinationContext, pool, signal).catch((err: unknown) => {
    // Some registries refuse to show a repository that does not exist yet, or give push access
    // without pull: the check is an optimisation, so the copy goes ahead (and fails on its own
    // if the destination really is closed).
    if (isAirlockError(err, "ERR_DENIED") || isAirlockError(err, "ERR_UNAUTHORIZED")) return undefined;
    throw err;
  });
  holding.catch(() => {}); // awaited below, unless the source fails first
  const want = await sourceDigest(source, sourceContext, choice, pool, signal);
  if (want.top?.isIndex && multiArch === "all" && options.platforms?.length) {
    const missing = options.platforms.filter((p) => !want.top?.index.manifests.some((d) => platformMatches(p, d.platform)));
    if (missing.length > 0) {
      options.onEvent?.({ type: "warning", task, message: `${source} has no image for ${missing.map(formatPlatform).join(", ")}; its whole index is copied` });
    }
  }
  if (want.digest !== undefined) result.digest = want.digest;
  const have: Digest | undefined = await holding;
  if (want.digest !== undefined && have === want.digest) {
    result.status = options.dryRun ? "would-skip" : "skipped";
    return;
  }
  if (options.dryRun) {
    result.status = "would-copy";
    return;
  }
  options.onEvent?.({ type: "image-copy", task, total });
  const copied: CopyResult = await copyImage(source, mountingFrom(task.destination, source), {
    ...options.copyOptions,
    ...(sourceContext ? { sourceContext } : {}),
    ...(destinationContext ? { destinationContext } : {}),
    multiArch,
    ...(options.platform ? { platform: options.platform } : {}),
    ...(options.preserveDigests ? { preserveDigests: true } : {}),
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
    signal,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  result.status = "copied";
  result.digest = copied.digest;
  result.bytesCopied = copied.bytesCopied;
  result.blobsCopied = copied.blobsCopied;
  result.blobsSkipped = copied.blobsSkipped;
}

/**
 * `destination`, whose registry destinations mount blobs from `source` when both are in one
 * registry (a cross-repository mount instead of an upload).
 */
function mountingFrom(destination: ImageReference, source: ImageReference): ImageReference {
  if (!(destination instanceof DockerImageReference) || !(source instanceof DockerImageReference)) return destination;
  if (destination.ref.domain !== source.ref.domain) return destination;
  return {
    transport: destination.transport,
    toString: () => destination.toString(),
    dockerReference: () => destination.dockerReference(),
    newSource: (ctx) => destination.newSource(ctx),
    newDestination: async (ctx) => {
      const d = await destination.newDestination(ctx);
      if (isBlobMountTarget(d)) d.setMountSource(source);
      return d;
    },
  };
}
