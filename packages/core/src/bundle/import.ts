/**
 * importBundle: every image of a bundle into destinations of any transport, reading blobs straight
 * out of the archive (no extraction).
 *
 * Order, so that a tampered or damaged bundle is detected before anything wrong is pushed:
 *   1. check: every manifest is read and checked against its digest, every blob they list must be
 *      in the archive with the right size and readable (no missing volume), and bundle.json must
 *      agree with index.json — all before a destination is opened;
 *   2. blobs of every image, in parallel, each verified while it streams into the destination (a
 *      mismatch fails the stream, and the destination keeps nothing); blobs the destination
 *      already has are skipped;
 *   3. only when every blob arrived: per image, child manifests, then the top-level one, then
 *      commit (the tag).
 *
 * With `keepGoing`, a failure at the destination (opening it, the presence check, a blob or
 * manifest push, the commit — e.g. push denied for one repository) fails only the image it
 * happened for: the other images are pushed completely and the failed ones are listed in the
 * result's `failures`. The rule telling the two sides apart: an error raised while reading the
 * archive (its stream fails) or while verifying what was read (ERR_DIGEST_MISMATCH,
 * ERR_SIZE_MISMATCH) is the bundle's and still stops everything before any manifest is written;
 * so do the checks of step 1, a delta's missing base, `signatures: "require"` refusing a
 * destination, and cancellation. Everything else raised for an image in steps 2 and 3 is the
 * destination's.
 */
import type { Readable } from "node:stream";
import type { Digest } from "../digest.js";
import { AirlockError, isAirlockError } from "../errors.js";
import type { Descriptor, Manifest } from "../manifest.js";
import { putVerifiedBlob } from "../copy/blob.js";
import { limiter } from "../progress.js";
import { destinationDigest, RegistryClientPool } from "../sync/present.js";
import type { Throttle } from "../throttle.js";
import type { PolicyCheck } from "../copy/copy.js";
import { DockerImageReference } from "../transports/docker/reference.js";
import { canStoreSignatures, type ImageDestination, type ImageReference, type SystemContext } from "../transports/types.js";
import type { BundleEvent, BundleListener } from "./events.js";
import { type BundleMetadata, blobPath } from "./format.js";
import { BundleReader } from "./reader.js";
import { ImportJournal, importJournalPath } from "./upload-journal.js";
import { BundleReference, readBundleSignatures } from "./source.js";
import { linkedController, settleAll } from "./util.js";

/** Options of {@link importBundle}. */
export interface ImportOptions {
  /** Where each image goes, by its bundle name. */
  destinationFor(name: string): ImageReference;
  /** Settings for writing the destinations. */
  ctx?: SystemContext;
  /** Settings for writing one image's destination (e.g. its lookaside storage); default `ctx`. */
  ctxFor?: (name: string) => SystemContext;
  /** Blobs pushed at once (default 6). */
  concurrency?: number;
  /** Run-wide limits on the pushes (`--max-parallel` per registry, `--rate-limit`); see throttle.ts. */
  throttle?: Throttle;
  /** Only these images (bundle names); default all. */
  images?: string[];
  /** Check the bundle and report what would be pushed; push nothing. */
  dryRun?: boolean;
  /**
   * The import journal, where half-pushed chunked uploads are recorded so that a rerun continues
   * them (default: a file per bundle in the user's state directory, see {@link importJournalPath});
   * false: none.
   */
  journal?: string | false;
  signal?: AbortSignal;
  onProgress?: BundleListener;
  /** Interval of blob-progress events per blob in milliseconds (default 500). */
  progressIntervalMs?: number;
  /**
   * The trust policy: called for every image's top-level manifest and, for an index, each image it
   * lists (`instanceDigest`), with the signatures the bundle carries for it (untrusted bytes) and
   * `reference` = `bundle:PATH:NAME`. Every image is checked before any destination is opened;
   * a throw refuses the import and nothing is pushed.
   */
  checkPolicy?: (image: PolicyCheck & { name: string }) => Promise<void>;
  /**
   * What to do with the image signatures the bundle carries: `copy` (default) stores them at each
   * destination that can store signatures and warns (a `warning` event) for one that cannot;
   * `require` fails before anything is pushed when a destination cannot store an image's
   * signatures; `remove` leaves them out.
   */
  signatures?: "copy" | "require" | "remove";
  /**
   * Keep going when an image fails at its destination: the image is listed in the result's
   * `failures` instead of aborting the run (see the module comment for which failures count as the
   * destination's; the bundle's own still stop everything).
   */
  keepGoing?: boolean;
}

/** An image that failed at its destination with {@link ImportOptions.keepGoing}. */
export interface ImportFailure {
  /** The image's bundle name. */
  name: string;
  /** Where it was going. */
  destination: string;
  /** What failed (an AirlockError with its code, or the underlying Error). */
  error: Error;
}

/** An image as imported. */
export interface ImportedImage {
  name: string;
  destination: string;
  digest: Digest;
  mediaType: string;
  /** `pushed`; `present` when the destination already had it; `planned` in a dry run. */
  status: "pushed" | "present" | "planned";
  /** Image signatures stored at the destination (planned, in a dry run). */
  signatures: number;
  blobs: number;
  bytes: number;
}

/** What {@link importBundle} did. */
export interface ImportResult {
  path: string;
  images: ImportedImage[];
  /** Images that failed at their destination ({@link ImportOptions.keepGoing}; otherwise always empty): not in `images`. */
  failures: ImportFailure[];
  blobsPushed: number;
  blobsSkipped: number;
  bytesPushed: number;
  manifestsPushed: number;
  durationMs: number;
  dryRun: boolean;
}

interface ImageWork {
  name: string;
  ref: ImageReference;
  top: Manifest;
  /** Children before the indexes that list them; `top` last. */
  manifests: Manifest[];
  /** Distinct blobs. */
  blobs: Descriptor[];
  /** A delta bundle: blobs of this image the bundle does not carry; the destination must have them. */
  base: Descriptor[];
  /** The image signatures the bundle carries, by manifest digest (only non-empty lists). */
  signatures: Map<Digest, Uint8Array[]>;
  dest?: ImageDestination;
  present?: boolean;
  /** With keepGoing: the first failure of this image at its destination; nothing more is done for it. */
  failure?: Error;
}

const DEFAULT_CONCURRENCY = 6;

/** Errors that are the bundle's, not the destination's: never kept going past (see the module comment). */
const bundleSide = new WeakSet<object>();

/** Marks `err` as the bundle's (or otherwise run-wide), so that keepGoing does not pass it; returns it. */
function fatal<T>(err: T): T {
  if (typeof err === "object" && err !== null) bundleSide.add(err);
  return err;
}

const VERIFY_CODES = ["ERR_DIGEST_MISMATCH", "ERR_SIZE_MISMATCH"] as const;

/**
 * Imports the bundle at `path` (a file, or the base name of its volumes): checks it, then pushes
 * each image to `destinationFor(name)`. Throws before opening any destination when the bundle is
 * damaged, and before writing any manifest when a blob fails verification.
 */
export async function importBundle(path: string | string[], options: ImportOptions): Promise<ImportResult> {
  const started = Date.now();
  const { signal, onProgress } = options;
  const reader = await BundleReader.open(path, { signal });
  const work: ImageWork[] = [];
  // Registry clients shared by the presence checks and every destination of the same registry.
  const pool = new RegistryClientPool();
  try {
    // 1. Check everything that can be checked without pushing.
    const images = await selectImages(reader, options.images);
    const metadata = await reader.metadata();
    const baseBlobs = new Set<string>(metadata?.base?.blobs ?? []);
    const isBase = (b: Descriptor) => baseBlobs.has(b.digest) && !reader.entry(blobPath(b.digest));
    for (const { name, descriptor } of images) {
      signal?.throwIfAborted();
      checkAgainstMetadata(reader, metadata, name, descriptor);
      const manifests: Manifest[] = [];
      const blobs = new Map<string, Descriptor>();
      const visit = async (desc: Descriptor): Promise<Manifest> => {
        const m = await reader.getManifest(desc);
        if (m.isIndex) {
          for (const child of m.index.manifests) {
            if (!manifests.some((x) => x.digest === child.digest)) await visit(child);
          }
        } else {
          for (const b of m.blobs()) {
            const have = blobs.get(b.digest);
            if (have && have.size !== b.size) throw new AirlockError("ERR_MANIFEST_INVALID", `image ${name} in bundle ${reader.path} lists blob ${b.digest} with sizes ${have.size} and ${b.size}`);
            blobs.set(b.digest, b);
          }
        }
        manifests.push(m);
        return m;
      };
      let top: Manifest;
      try {
        top = await visit(descriptor);
        for (const b of blobs.values()) {
          if (isBase(b)) continue; // a delta's base: checked at the destination before pushing
          reader.locateBlob(b); // present, of the right size, no part in a missing or truncated volume
        }
      } catch (err) {
        throw refuse(reader, name, err);
      }
      const signatures = new Map<Digest, Uint8Array[]>();
      for (const m of manifests) {
        let sigs: Uint8Array[];
        try {
          sigs = await readBundleSignatures(reader, m.digest);
        } catch (err) {
          throw refuse(reader, name, err);
        }
        if (sigs.length > 0 && options.signatures !== "remove") signatures.set(m.digest, sigs);
        // The policy sees the top-level manifest and the images an index lists, as copy --all does.
        if (options.checkPolicy && (m === top || (top.isIndex && top.index.manifests.some((d) => d.digest === m.digest)))) {
          const check: PolicyCheck & { name: string } = { name, reference: new BundleReference(reader.path, name), manifest: m, signatures: sigs };
          if (m !== top) check.instanceDigest = m.digest;
          await options.checkPolicy(check);
        }
      }
      const all = [...blobs.values()];
      work.push({ name, ref: options.destinationFor(name), top, manifests, blobs: all.filter((b) => !isBase(b)), base: all.filter(isBase), signatures });
    }
    onProgress?.(importPlan(work, reader));
    const result: ImportResult = { path: reader.path, images: [], failures: [], blobsPushed: 0, blobsSkipped: 0, bytesPushed: 0, manifestsPushed: 0, durationMs: 0, dryRun: options.dryRun ?? false };
    if (options.dryRun) {
      result.images = work.map((w) => ({ name: w.name, destination: w.ref.toString(), digest: w.top.digest, mediaType: w.top.mediaType, status: "planned", blobs: w.blobs.length, bytes: sum(w.blobs), signatures: countSignatures(w) }));
      result.durationMs = Date.now() - started;
      return result;
    }
    const journal = options.journal === false ? undefined : ImportJournal.open(options.journal ?? importJournalPath(reader.path), reader.path);
    // With keepGoing: a destination-side failure of one image fails that image only (the first one kept).
    const keep = (w: ImageWork, err: unknown): void => {
      if (!options.keepGoing || bundleSide.has(err as object) || signal?.aborted) throw err;
      w.failure ??= err instanceof Error ? err : new Error(String(err));
    };
    const guarded = async (w: ImageWork, fn: () => Promise<void>): Promise<void> => {
      if (w.failure) return;
      try {
        await fn();
      } catch (err) {
        keep(w, err);
      }
    };

    // 2. Destinations and what they already hold (all images at once: these are small requests), then every blob.
    // An image whose top-level manifest is already under its destination name is complete there
    // (destinations store a manifest after its blobs and children): one HEAD, nothing opened.
    const open = limiter(16);
    await settleAll(
      work.map((w) =>
        open(() => guarded(w, async () => {
          signal?.throwIfAborted();
          const ctx = options.ctxFor?.(w.name) ?? options.ctx;
          if (w.signatures.size === 0 && (await alreadyThere(w, ctx, pool, signal))) {
            w.present = true;
            onProgress?.({ type: "image-start", image: w.name, digest: w.top.digest, blobs: w.blobs.length, bytes: sum(w.blobs) });
            return;
          }
          const dest = await w.ref.newDestination(ctx);
          w.dest = dest;
          for (const m of w.manifests) {
            if (!dest.capabilities.manifestMediaTypes.includes(m.mediaType)) {
              throw new AirlockError("ERR_UNSUPPORTED", `${w.ref} does not accept ${m.mediaType} manifests (image ${w.name}), and airlock does not convert manifest formats; import into another destination`);
            }
          }
          if (w.top.isIndex && !dest.capabilities.indexes) {
            throw new AirlockError("ERR_UNSUPPORTED", `${w.ref} cannot store a multi-arch index (image ${w.name}); import into a registry or an oci: layout`);
          }
          if (w.signatures.size > 0 && !canStoreSignatures(dest)) {
            const why = `${w.ref} cannot store signatures (image ${w.name} carries ${countSignatures(w)})${dest.reference.transport.name === "docker" ? "; a registry keeps them in lookaside storage: configure a lookaside-staging: file:///… location for it in registries.d" : ""}`;
            if (options.signatures === "require") throw fatal(new AirlockError("ERR_UNSUPPORTED", `${why}; nothing was pushed — import into a destination that stores signatures, or without requiring them`));
            onProgress?.({ type: "warning", image: w.name, message: `${why}; importing the image without its signatures` });
            w.signatures.clear();
          }
          w.present = (await Promise.all(w.manifests.map((m) => dest.hasManifest(m.digest, signal)))).every(Boolean);
          onProgress?.({ type: "image-start", image: w.name, digest: w.top.digest, blobs: w.blobs.length, bytes: sum(w.blobs) });
        })),
      ),
    );
    await checkBase(work, reader, metadata, open, guarded, signal);
    for (const w of work) {
      if (w.failure) continue;
      if (!w.dest) {
        result.blobsSkipped += w.base.length + w.blobs.length;
        for (const b of [...w.base, ...w.blobs]) onProgress?.({ type: "blob-skipped", image: w.name, digest: b.digest, size: b.size, reason: "image already present" });
        continue;
      }
      result.blobsSkipped += w.base.length;
      for (const b of w.base) onProgress?.({ type: "blob-skipped", image: w.name, digest: b.digest, size: b.size, reason: "in the delta's base" });
    }
    const { controller: inner, release } = linkedController(signal);
    const run = limiter(Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY));
    const serial = new Map<ImageDestination, <T>(fn: () => Promise<T>) => Promise<T>>();
    const byDigest = new Map<string, Promise<void>>();
    let firstError: unknown;
    try {
      const jobs: { w: ImageWork; dest: ImageDestination; b: Descriptor }[] = [];
      for (const w of work) {
        const dest = w.dest;
        if (!dest || w.failure) continue; // already present under its name, or failed
        if (!dest.capabilities.concurrentWrites) serial.set(dest, limiter(1));
        for (const b of w.blobs) {
          if (w.present) {
            result.blobsSkipped++;
            onProgress?.({ type: "blob-skipped", image: w.name, digest: b.digest, size: b.size, reason: "image already present" });
            continue;
          }
          jobs.push({ w, dest, b });
        }
      }
      // Largest first, across images: the longest pushes start early and the small ones fill in
      // around them, instead of a large blob of the last image running alone at the end.
      jobs.sort((x, y) => y.b.size - x.b.size);
      const tasks: Promise<void>[] = [];
      for (const { w, dest, b } of jobs) {
        // The same blob for two images waits for the first push, so the second can reuse it.
        const before = byDigest.get(b.digest) ?? Promise.resolve();
        const task = before
          .catch(() => {})
          .then(() =>
            run(() => {
              if (w.failure) return Promise.resolve(); // keepGoing: this image already failed
              return (serial.get(dest) ?? ((fn) => fn()))(() => throttled(options.throttle, dest, () => pushBlob(reader, w, dest, b, inner.signal, options, result, journal)));
            }),
          )
          .catch((err) => keep(w, err))
          .catch((err) => {
            if (firstError === undefined) firstError = err;
            inner.abort(err);
          });
        byDigest.set(b.digest, task);
        tasks.push(task);
      }
      await Promise.all(tasks);
    } finally {
      release();
    }
    if (firstError !== undefined) throw firstError;
    signal?.throwIfAborted();

    // 3. Manifests, children first, the top-level one last; then the tag. Images in parallel. A
    // child manifest that several images of one repository share (an index and a platform subset
    // of it) is pushed once, the others waiting for that push: the same manifest written twice at
    // once races in distribution's filesystem storage, where an index being checked then reads
    // its child's half-written link ("DIGEST_INVALID … MANIFEST_BLOB_UNKNOWN").
    const childPushes = new Map<string, Promise<void>>();
    const pushManifests = async (w: ImageWork): Promise<ImportedImage> => {
      const dest = w.dest;
      if (!dest) {
        onProgress?.({ type: "image-done", image: w.name, digest: w.top.digest });
        return { name: w.name, destination: w.ref.toString(), digest: w.top.digest, mediaType: w.top.mediaType, status: "present", blobs: w.blobs.length, bytes: sum(w.blobs), signatures: 0 };
      }
      const push = async (m: Manifest, topLevel: boolean) => {
        await dest.putManifest(m, { topLevel, signal });
        result.manifestsPushed++;
        onProgress?.({ type: "manifest", image: w.name, digest: m.digest, mediaType: m.mediaType, topLevel });
      };
      for (const m of w.manifests) {
        if (m === w.top) {
          await push(m, true);
          continue;
        }
        if (w.present) continue;
        const key = `${repositoryOf(w.ref)}\n${m.digest}`;
        let child = childPushes.get(key);
        if (!child) {
          child = (async () => {
            if (!(await dest.hasManifest(m.digest, signal))) await push(m, false);
          })();
          childPushes.set(key, child);
        }
        await child;
      }
      // Signatures after the manifests they sign, before the commit (the transport contract's order).
      if (w.signatures.size > 0 && canStoreSignatures(dest)) {
        for (const [digest, sigs] of w.signatures) await dest.putSignatures(sigs, digest === w.top.digest ? { signal } : { instanceDigest: digest, signal });
      }
      await dest.commit(signal);
      onProgress?.({ type: "image-done", image: w.name, digest: w.top.digest });
      return { name: w.name, destination: w.ref.toString(), digest: w.top.digest, mediaType: w.top.mediaType, status: w.present ? "present" : "pushed", blobs: w.blobs.length, bytes: sum(w.blobs), signatures: countSignatures(w) };
    };
    const done = await settleAll(
      work.map((w) =>
        open(async (): Promise<ImportedImage | undefined> => {
          if (w.failure) return undefined;
          let imported: ImportedImage | undefined;
          await guarded(w, async () => {
            imported = await pushManifests(w);
          });
          return imported;
        }),
      ),
    );
    result.images = done.filter((i): i is ImportedImage => i !== undefined);
    for (const w of work) if (w.failure) result.failures.push({ name: w.name, destination: w.ref.toString(), error: w.failure });
    // A failed image's half-pushed uploads stay in the journal, for a rerun to continue.
    if (result.failures.length === 0) await journal?.remove();
    result.durationMs = Date.now() - started;
    return result;
  } finally {
    await Promise.all(work.map((w) => w.dest?.close().catch(() => {})));
    await pool.close();
    await reader.close();
  }
}

/** The import's `bundle-plan` event: what the checked images carry, a blob shared by several images counted once. */
function importPlan(work: ImageWork[], reader: BundleReader): BundleEvent {
  const blobs = new Map<string, number>();
  const manifests = new Set<string>();
  let duplicateBlobs = 0;
  let duplicateBytes = 0;
  for (const w of work) {
    for (const m of w.manifests) manifests.add(m.digest);
    for (const b of w.blobs) {
      if (blobs.has(b.digest)) {
        duplicateBlobs++;
        duplicateBytes += b.size;
      } else blobs.set(b.digest, b.size);
    }
  }
  return {
    type: "bundle-plan",
    operation: "import",
    images: work.length,
    manifests: manifests.size,
    blobs: blobs.size,
    bytes: [...blobs.values()].reduce((a, n) => a + n, 0),
    duplicateBlobs,
    duplicateBytes,
    volumes: reader.volumes.length,
    size: reader.volumes.reduce((a, v) => a + v.size, 0),
    resumed: false,
  };
}

/** The repository an image is written to (for a registry: host and path, without the tag). */
function repositoryOf(ref: ImageReference): string {
  return ref instanceof DockerImageReference ? `docker://${ref.ref.name}` : ref.toString();
}

/** `stream` under the run's rate limit, when there is one (re-read bytes of a retried chunk count too: they are sent again). */
function throttledStream(throttle: Throttle | undefined, stream: Readable, signal: AbortSignal): Readable {
  return throttle ? throttle.stream(stream, signal) : stream;
}

/** Runs one push within the run's per-registry cap, when there is one. */
function throttled<T>(throttle: Throttle | undefined, dest: ImageDestination, fn: () => Promise<T>): Promise<T> {
  return throttle ? throttle.transfer([dest.reference], fn) : fn();
}

/**
 * Whether the destination already holds the image's top-level manifest under the image's name (a
 * HEAD by tag for a registry, index.json for a layout). A destination that will not say (no pull
 * access to a repository that does not exist yet) is taken as not holding it.
 */
async function alreadyThere(w: ImageWork, ctx: SystemContext | undefined, pool: RegistryClientPool, signal: AbortSignal | undefined): Promise<boolean> {
  try {
    return (await destinationDigest(w.ref, ctx, pool, signal)) === w.top.digest;
  } catch (err) {
    if (isAirlockError(err, "ERR_DENIED") || isAirlockError(err, "ERR_UNAUTHORIZED")) return false;
    throw err;
  }
}

async function pushBlob(reader: BundleReader, w: ImageWork, dest: ImageDestination, b: Descriptor, signal: AbortSignal, options: ImportOptions, result: ImportResult, journal: ImportJournal | undefined): Promise<void> {
  const { onProgress } = options;
  signal.throwIfAborted();
  if (await dest.tryReuseBlob(b, signal)) {
    result.blobsSkipped++;
    onProgress?.({ type: "blob-skipped", image: w.name, digest: b.digest, size: b.size, reason: "already exists" });
    return;
  }
  // Errors of the archive's streams and of verification are the bundle's (see the module comment).
  const archive = (offset?: number): Readable => {
    let stream: Readable;
    try {
      stream = reader.openBlob(b, offset === undefined ? {} : { offset });
    } catch (err) {
      throw fatal(err);
    }
    stream.once("error", (err) => fatal(err));
    return throttledStream(options.throttle, stream, signal);
  };
  try {
    await pushVerified(reader, w, dest, b, signal, options, journal, archive);
  } catch (err) {
    if (VERIFY_CODES.some((c) => isAirlockError(err, c))) fatal(err);
    throw err;
  }
  result.blobsPushed++;
  result.bytesPushed += b.size;
}

async function pushVerified(reader: BundleReader, w: ImageWork, dest: ImageDestination, b: Descriptor, signal: AbortSignal, options: ImportOptions, journal: ImportJournal | undefined, archive: (offset?: number) => Readable): Promise<void> {
  const { onProgress } = options;
  await putVerifiedBlob(dest, b, archive(), {
    what: `blob ${b.digest} of ${w.name} in bundle ${reader.path}`,
    image: w.name,
    signal,
    onProgress,
    progressIntervalMs: options.progressIntervalMs,
    // The archive can be read again at any offset: a retried chunk is re-read, not kept in memory.
    put: { reopen: (offset) => archive(offset), ...(journal ? { session: journal.store(dest.reference.toString(), b.digest) } : {}) },
  });
}

/** A delta: every base blob must already be at the destination, before a single byte is pushed. */
async function checkBase(
  work: ImageWork[],
  reader: BundleReader,
  metadata: BundleMetadata | undefined,
  open: <T>(fn: () => Promise<T>) => Promise<T>,
  guarded: (w: ImageWork, fn: () => Promise<void>) => Promise<void>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const missing: string[] = [];
  await settleAll(
    work.map((w) =>
      open(() =>
        guarded(w, async () => {
          const dest = w.dest;
          if (!dest) return; // already present under its name
          for (const b of w.base) {
            if (await dest.tryReuseBlob(b, signal)) continue;
            if (!(await mountFromAnother(work, w, b, signal))) missing.push(`${b.digest} (${w.name} → ${w.ref})`);
          }
        }),
      ),
    ),
  );
  if (missing.length > 0) {
    throw new AirlockError(
      "ERR_BLOB_NOT_FOUND",
      `bundle ${reader.path} is a delta against ${metadata?.base?.source ?? "an earlier bundle"}, and the destination lacks ${missing.length} of the blobs it relies on: ${missing.slice(0, 20).join(", ")}${missing.length > 20 ? ", …" : ""}; nothing was pushed — import the base first, or export again with --since a fresh receipt (airlock inventory)`,
    );
  }
}

/**
 * A base blob the destination repository of `w` lacks may be in the repository of another image of
 * the bundle (a receipt lists blobs registry-wide, e.g. a new image sharing a layer with an old
 * one): mounts it from there when the destination can mount (the `setMountSource` feature).
 */
async function mountFromAnother(work: ImageWork[], w: ImageWork, b: Descriptor, signal: AbortSignal | undefined): Promise<boolean> {
  const dest = w.dest as ImageDestination & { setMountSource?: (source: ImageReference) => void };
  if (typeof dest.setMountSource !== "function") return false;
  for (const o of work) {
    if (o === w || o.ref.toString() === w.ref.toString() || ![...o.base, ...o.blobs].some((x) => x.digest === b.digest)) continue;
    // An image already present under its name (no destination opened) has its blobs in its repository.
    if (o.dest && !(await o.dest.tryReuseBlob(b, signal))) continue;
    dest.setMountSource(o.ref);
    if (await dest.tryReuseBlob(b, signal)) return true;
  }
  return false;
}

async function selectImages(reader: BundleReader, wanted: string[] | undefined): Promise<{ name: string; descriptor: Descriptor }[]> {
  const all = await reader.images();
  const named = all.filter((i): i is { name: string; descriptor: Descriptor } => i.name !== undefined);
  if (!wanted) {
    if (named.length === 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `bundle ${reader.path} names no images (index.json has no org.opencontainers.image.ref.name annotations)`);
    return named;
  }
  return wanted.map((name) => {
    const found = named.find((i) => i.name === name);
    if (!found) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image named ${name} in bundle ${reader.path} (it holds: ${named.map((i) => i.name).join(", ")})`);
    return found;
  });
}

/** bundle.json and index.json must agree about an image: a mismatch means the archive was altered. */
function checkAgainstMetadata(reader: BundleReader, metadata: BundleMetadata | undefined, name: string, desc: Descriptor): void {
  if (!metadata) {
    if (reader.bundleId) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `bundle ${reader.path} has no airlock/bundle.json: it was not finished${reader.missingVolumes().length ? `, or its last volume is missing (missing: ${reader.missingVolumes().join(", ")})` : ""}; run airlock verify`);
    }
    return;
  }
  const img = metadata.images.find((i) => i.name === name);
  if (!img) throw new AirlockError("ERR_INVALID_LAYOUT", `image ${name} is in index.json but not in airlock/bundle.json of ${reader.path}: the bundle was altered; run airlock verify`);
  if (img.digest !== desc.digest || img.size !== desc.size) {
    throw new AirlockError("ERR_DIGEST_MISMATCH", `image ${name}: index.json of ${reader.path} names ${desc.digest}, airlock/bundle.json names ${img.digest}: the bundle was altered; nothing was imported`);
  }
}

function refuse(reader: BundleReader, name: string, err: unknown): AirlockError {
  const e = err instanceof AirlockError ? err : new AirlockError("ERR_IO", String((err as Error)?.message ?? err), { cause: err });
  const missing = reader.missingVolumes();
  const hint = missing.length > 0 ? ` (missing volume${missing.length > 1 ? "s" : ""}: ${missing.join(", ")})` : "";
  return new AirlockError(e.code, `bundle ${reader.path}, image ${name}: ${e.message}${hint}; nothing was imported — run airlock verify for the full list of faults`, { cause: err });
}

function countSignatures(w: ImageWork): number {
  let n = 0;
  for (const s of w.signatures.values()) n += s.length;
  return n;
}

function sum(blobs: Descriptor[]): number {
  return blobs.reduce((n, b) => n + b.size, 0);
}
