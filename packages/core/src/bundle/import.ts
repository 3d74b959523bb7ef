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
 *
 * A dry run (`dryRun`) does all of this up to the first write: step 1 in full (manifests read and
 * checked against their digests, every blob located with its size, bundle.json against
 * index.json, the trust policy — but blob contents are not hashed: that needs every byte read,
 * which is `verifyBundle`'s job), then opens the destinations and asks them what they hold with
 * the import's own checks, made read-only (a HEAD where a real run would try a cross-repository
 * mount), walks the blobs in the import's order and reports per image and in total what the import
 * would push, reuse or re-tag. Nothing is written: no blob, manifest, tag, journal or directory.
 *
 * Counting: `blobsPushed` counts uploads; a blob this run uploaded for one image and then reused for
 * another (a mount into another repository of the registry, the same OCI layout) is counted in
 * `blobsShared`, not as already present; `blobsSkipped` ("already present") counts blobs the
 * destination held before the run. Every blob of every image is counted in exactly one of the three.
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
import { BlobLocations } from "../registry/blob-locations.js";
import { DirReference } from "../transports/dir/reference.js";
import { DockerImageDestination } from "../transports/docker/destination.js";
import { DockerImageReference } from "../transports/docker/reference.js";
import { OciReference } from "../transports/oci/reference.js";
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

/**
 * What an import does for an image: `push` its blobs, manifests and tag; `retag`: every blob and
 * manifest is there already, and only the tag is written (it was missing, or named another
 * manifest: a moved tag); `none`: the tag already names the image's manifest.
 */
export type ImportAction = "push" | "retag" | "none";

/** An image as imported (or, in a dry run, as it would be). */
export interface ImportedImage {
  name: string;
  destination: string;
  digest: Digest;
  mediaType: string;
  /**
   * `pushed`; `retagged` (only the tag was written, see {@link ImportAction}); `present` when the
   * tag already named this image (its signatures are still stored); `planned` in a dry run, whose
   * `action` says what would happen.
   */
  status: "pushed" | "retagged" | "present" | "planned";
  /** What the import did, or in a dry run would do. */
  action: ImportAction;
  /** Image signatures stored at the destination (planned, in a dry run). */
  signatures: number;
  /** Distinct blobs of the image, and their bytes. */
  blobs: number;
  bytes: number;
  /** Blobs uploaded for this image (in a dry run: to upload) and their bytes. */
  blobsPushed: number;
  bytesPushed: number;
  /** Blobs this run uploaded for another image and reused for this one (mounted, or in the same layout). */
  blobsShared: number;
  /** Blobs the destination held before this run. */
  blobsPresent: number;
}

/** What {@link importBundle} did. */
export interface ImportResult {
  path: string;
  images: ImportedImage[];
  /** Images that failed at their destination ({@link ImportOptions.keepGoing}; otherwise always empty): not in `images`. */
  failures: ImportFailure[];
  /** Blob uploads (in a dry run: to do), and their bytes. */
  blobsPushed: number;
  bytesPushed: number;
  /** Blobs reused for an image from an upload of this run for another image ("shared, pushed once"). */
  blobsShared: number;
  /** Blobs the destination held before this run ("already present"), a delta's base blobs included. */
  blobsSkipped: number;
  /** Manifests written (in a dry run: to write), each top-level one counted once with its tag. */
  manifestsPushed: number;
  /** Tags written or moved (in a dry run: to write): images pushed or re-tagged. */
  tagsWritten: number;
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
  /** Every manifest of the image is at the destination (by digest). */
  present?: boolean;
  /** The destination's tag already names `top`; undefined when not asked (see phase 2) or it cannot say. */
  tagged?: boolean | undefined;
  /**
   * The question behind `tagged`, asked as soon as the image's local checks passed (phase 1), so
   * that the destination answers while the next images are checked; awaited in phase 2.
   */
  tagCheck?: Promise<boolean | undefined>;
  /** The image's manifests (digests) the destination holds. */
  have: Set<string>;
  /** What happened to this image's blobs. */
  counts: { pushed: number; bytes: number; shared: number; present: number };
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
 * Imports a bundle — the one at a path (a file, or the base name of its volumes), or one already
 * open, which the caller keeps and closes: checks it, then pushes each image to
 * `destinationFor(name)`. Throws before opening any destination when the bundle is damaged, and
 * before writing any manifest when a blob fails verification.
 */
export async function importBundle(bundle: string | string[] | BundleReader, options: ImportOptions): Promise<ImportResult> {
  const started = Date.now();
  const { signal, onProgress } = options;
  const opened = bundle instanceof BundleReader ? undefined : await BundleReader.open(bundle, { signal });
  const reader = opened ?? (bundle as BundleReader);
  const path = opened ? (bundle as string | string[]) : reader.path;
  const work: ImageWork[] = [];
  // Registry clients shared by the presence checks and every destination of the same registry.
  const pool = new RegistryClientPool();
  // The presence checks of phase 2, started during phase 1 (a few at a time).
  const checks = limiter(16);
  try {
    // 1. Check everything that can be checked without pushing. An altered archive (a path stored
    //    twice, an entry appended after the export) is refused whole, even where no image reads it.
    const altered = reader.problems.filter((p) => p.kind === "entry-duplicate" || p.kind === "entry-unlisted");
    if (altered.length > 0) {
      throw fatal(new AirlockError("ERR_INVALID_LAYOUT", `bundle ${path} is not as it was exported: ${altered.map((p) => p.message).join("; ")}; nothing was imported (airlock verify ${path} lists every fault)`));
    }
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
      const w: ImageWork = { name, ref: options.destinationFor(name), top, manifests, blobs: all.filter((b) => !isBase(b)), base: all.filter(isBase), signatures, have: new Set(), counts: { pushed: 0, bytes: 0, shared: 0, present: 0 } };
      if (signatures.size === 0) {
        w.tagCheck = checks(() => alreadyThere(w, options.ctxFor?.(w.name) ?? options.ctx, pool, signal));
        w.tagCheck.catch(() => {}); // heard in phase 2; unheard only if a later image is refused first
      }
      work.push(w);
    }
    onProgress?.(importPlan(work, reader));
    const dryRun = options.dryRun ?? false;
    const result: ImportResult = { path: reader.path, images: [], failures: [], blobsPushed: 0, bytesPushed: 0, blobsShared: 0, blobsSkipped: 0, manifestsPushed: 0, tagsWritten: 0, durationMs: 0, dryRun };
    // A dry run writes nothing, not even the journal.
    const journal = dryRun || options.journal === false ? undefined : ImportJournal.open(options.journal ?? importJournalPath(reader.path), reader.path);
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
    // Opening a destination writes nothing (oci:, dir: and a registry write from the first blob on);
    // a dry run goes this far and then asks only read-only questions.
    const open = limiter(16);
    await settleAll(
      work.map((w) =>
        open(() => guarded(w, async () => {
          signal?.throwIfAborted();
          const ctx = options.ctxFor?.(w.name) ?? options.ctx;
          if (w.tagCheck) {
            w.tagged = await w.tagCheck;
            if (w.tagged === true) {
              w.present = true;
              onProgress?.({ type: "image-start", image: w.name, digest: w.top.digest, blobs: w.blobs.length, bytes: sum(w.blobs) });
              return;
            }
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
          const have = await Promise.all(w.manifests.map((m) => dest.hasManifest(m.digest, signal)));
          w.manifests.forEach((m, i) => {
            if (have[i]) w.have.add(m.digest);
          });
          w.present = have.every(Boolean);
          // Complete by digest: only the tag is written, unless it names the image already (asked
          // here for a signed image, whose signatures are stored either way).
          if (w.present && w.signatures.size > 0) w.tagged = await alreadyThere(w, ctx, pool, signal);
          onProgress?.({ type: "image-start", image: w.name, digest: w.top.digest, blobs: w.blobs.length, bytes: sum(w.blobs) });
        })),
      ),
    );
    await checkBase(work, reader, metadata, open, guarded, signal, dryRun);
    for (const w of work) {
      if (w.failure) continue;
      if (!w.dest) {
        w.counts.present += w.base.length + w.blobs.length;
        for (const b of [...w.base, ...w.blobs]) onProgress?.({ type: "blob-skipped", image: w.name, digest: b.digest, size: b.size, reason: "image already present" });
        continue;
      }
      w.counts.present += w.base.length;
      for (const b of w.base) onProgress?.({ type: "blob-skipped", image: w.name, digest: b.digest, size: b.size, reason: "in the delta's base" });
    }
    // Blob uploads of this run by reuse scope (see reuseScope), to tell a blob shared with an
    // earlier image of this run from one the destination had before.
    const uploaded = new Set<string>();
    // A dry run: the blobs a real run would have found or uploaded by now, by where it could reuse them from.
    const reachable = new Set<string>();
    const tally = (w: ImageWork, dest: ImageDestination, b: Descriptor, reused: boolean): void => {
      const key = `${reuseScope(dest)}\n${b.digest}`;
      if (!reused) {
        uploaded.add(key);
        w.counts.pushed++;
        w.counts.bytes += b.size;
        return;
      }
      const shared = uploaded.has(key);
      if (shared) w.counts.shared++;
      else w.counts.present++;
      if (!dryRun) onProgress?.({ type: "blob-skipped", image: w.name, digest: b.digest, size: b.size, reason: shared ? SHARED_REASON : "already exists" });
    };
    /** A dry run's answer to "would the import reuse this blob": the destination's, read-only, or one found or to be uploaded earlier in the run. */
    const plan = async (dest: ImageDestination, b: Descriptor, s: AbortSignal): Promise<boolean> => {
      const key = `${reuseScope(dest)}\n${b.digest}`;
      const reused = reachable.has(key) || (await wouldReuse(dest, b, s));
      reachable.add(key);
      return reused;
    };
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
            w.counts.present++;
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
        // The same blob for two images waits for the first push, so the second can reuse it (and
        // is counted as shared with it).
        const before = byDigest.get(b.digest) ?? Promise.resolve();
        const task = before
          .catch(() => {})
          .then(() =>
            run(async () => {
              if (w.failure) return; // keepGoing: this image already failed
              const reused = await (serial.get(dest) ?? ((fn) => fn()))(() =>
                throttled(options.throttle, dest, () => (dryRun ? plan(dest, b, inner.signal) : pushBlob(reader, w, dest, b, inner.signal, options, journal))),
              );
              tally(w, dest, b, reused);
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
    const imported = (w: ImageWork): ImportedImage => {
      // A destination that cannot be asked for its tags: a complete image is taken as tagged (its tag is written again).
      const action: ImportAction = !w.dest || (w.present && w.tagged !== false) ? "none" : w.present ? "retag" : "push";
      if (action !== "none") result.tagsWritten++;
      const status = dryRun ? "planned" : action === "push" ? "pushed" : action === "retag" ? "retagged" : "present";
      const { counts } = w;
      return {
        name: w.name,
        destination: w.ref.toString(),
        digest: w.top.digest,
        mediaType: w.top.mediaType,
        status,
        action,
        blobs: w.blobs.length,
        bytes: sum(w.blobs),
        signatures: w.dest ? countSignatures(w) : 0,
        blobsPushed: counts.pushed,
        bytesPushed: counts.bytes,
        blobsShared: counts.shared,
        blobsPresent: counts.present,
      };
    };
    /** A dry run's step 3: the manifests the import would write, counted as it writes them. */
    const planManifests = (w: ImageWork): ImportedImage => {
      if (w.dest) {
        result.manifestsPushed++; // the top-level one, with the tag
        if (!w.present) {
          for (const m of w.manifests) {
            const key = `${repositoryOf(w.ref)}\n${m.digest}`;
            if (m === w.top || w.have.has(m.digest) || childPushes.has(key)) continue;
            childPushes.set(key, Promise.resolve());
            result.manifestsPushed++;
          }
        }
      }
      return imported(w);
    };
    const pushManifests = async (w: ImageWork): Promise<ImportedImage> => {
      const dest = w.dest;
      if (!dest) {
        onProgress?.({ type: "image-done", image: w.name, digest: w.top.digest });
        return imported(w);
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
      return imported(w);
    };
    const done = dryRun
      ? work.map((w) => (w.failure ? undefined : planManifests(w)))
      : await settleAll(
          work.map((w) =>
            open(async (): Promise<ImportedImage | undefined> => {
              if (w.failure) return undefined;
              let image: ImportedImage | undefined;
              await guarded(w, async () => {
                image = await pushManifests(w);
              });
              return image;
            }),
          ),
        );
    result.images = done.filter((i): i is ImportedImage => i !== undefined);
    // Every blob counted once per image, the failed images' included (what they uploaded was uploaded).
    for (const { counts } of work) {
      result.blobsPushed += counts.pushed;
      result.bytesPushed += counts.bytes;
      result.blobsShared += counts.shared;
      result.blobsSkipped += counts.present;
    }
    for (const w of work) if (w.failure) result.failures.push({ name: w.name, destination: w.ref.toString(), error: w.failure });
    // A failed image's half-pushed uploads stay in the journal, for a rerun to continue.
    if (result.failures.length === 0) await journal?.remove();
    result.durationMs = Date.now() - started;
    return result;
  } finally {
    await Promise.all(work.map((w) => w.dest?.close().catch(() => {})));
    await pool.close();
    await opened?.close();
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

/**
 * Where an image's manifests are stored, shared with the other images written there: for a
 * registry the repository (host and path, without the tag), for an OCI layout the layout.
 */
function repositoryOf(ref: ImageReference): string {
  if (ref instanceof DockerImageReference) return `docker://${ref.ref.name}`;
  if (ref instanceof OciReference) return `oci:${ref.path}`;
  return ref.toString();
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
 * HEAD by tag for a registry, index.json for a layout, manifest.json for `dir:`); undefined for a
 * transport that cannot be asked. A destination that will not say (no pull access to a repository
 * that does not exist yet) is taken as not holding it.
 */
async function alreadyThere(w: ImageWork, ctx: SystemContext | undefined, pool: RegistryClientPool, signal: AbortSignal | undefined): Promise<boolean | undefined> {
  if (!(w.ref instanceof DockerImageReference || w.ref instanceof OciReference || w.ref instanceof DirReference)) return undefined;
  try {
    return (await destinationDigest(w.ref, ctx, pool, signal)) === w.top.digest;
  } catch (err) {
    if (isAirlockError(err, "ERR_DENIED") || isAirlockError(err, "ERR_UNAUTHORIZED")) return false;
    throw err;
  }
}

/**
 * One blob into its destination: reused when the destination has it (or mounts it), else streamed
 * out of the archive and verified on the way. Returns whether it was reused.
 */
async function pushBlob(reader: BundleReader, w: ImageWork, dest: ImageDestination, b: Descriptor, signal: AbortSignal, options: ImportOptions, journal: ImportJournal | undefined): Promise<boolean> {
  signal.throwIfAborted();
  if (await dest.tryReuseBlob(b, signal)) return true;
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
  const what = `blob ${b.digest} of ${w.name} in bundle ${reader.path}`;
  try {
    await pushVerified(what, w, dest, b, signal, options, journal, archive);
  } catch (err) {
    if (VERIFY_CODES.some((c) => isAirlockError(err, c))) throw fatal(damaged(reader, w, b, what, err as AirlockError));
    throw err;
  }
  return false;
}

/**
 * The error for a blob whose bytes in the archive do not match its digest (or size) while they
 * stream: names the volume file(s) holding it, and says what to do — as verify does.
 */
function damaged(reader: BundleReader, w: ImageWork, b: Descriptor, what: string, err: AirlockError): AirlockError {
  // Only the verifier's own finding is the volume's (its message starts with `what`).
  if (!err.message.startsWith(`${what}: `)) return err;
  const detail = err.message.slice(what.length + 2).replace(/; the source .*$/, "");
  let files: string[] = [];
  let where: string;
  try {
    const volumes = [...new Set(reader.locateBlob(b).map((seg) => seg.volume))];
    files = volumes.map((v) => reader.volumes[v]?.path ?? `${reader.path}.${String(v).padStart(3, "0")}`);
    where = reader.volumes.length === 1 ? `bundle file ${files[0]}` : volumes.map((v, i) => `volume ${v} (${files[i]})`).join(" and ");
  } catch {
    where = `bundle ${reader.path}`;
  }
  const those = files.length > 1 ? "those volumes are" : reader.volumes.length === 1 ? "the bundle file is" : "that volume is";
  const copy = files.length > 0 ? files.join(" and ") : reader.path;
  return new AirlockError(
    err.code,
    `blob ${b.digest} of image ${w.name} in ${where} does not match its ${err.code === "ERR_SIZE_MISMATCH" ? "size" : "digest"} (${detail}): ${those} damaged; no manifest was written — copy ${copy} again from the source media, or run airlock verify ${reader.path} to list every damaged volume`,
    { cause: err },
  );
}

/** The reason of a `blob-skipped` event for a blob this run uploaded for another image. */
const SHARED_REASON = "shared: uploaded by this run for another image";

/**
 * Where a blob, once at a destination, can be reused for every image of the run: the registry,
 * when its destinations mount blobs between repositories where they saw them (the blob-locations
 * cache, on by default), else the repository; the OCI layout; the `dir:` directory. Tells a blob
 * shared with an earlier image of the run from one the destination had before, and lets a dry
 * run reuse what an earlier image would have uploaded.
 */
function reuseScope(dest: ImageDestination): string {
  const ref = dest.reference;
  if (dest instanceof DockerImageDestination) return `docker://${BlobLocations.shared() ? dest.repository.registry.domain : dest.repository.name}`;
  if (ref instanceof OciReference) return `oci:${ref.path}`;
  if (ref instanceof DirReference) return `dir:${ref.path}`;
  return ref.toString();
}

/**
 * Whether `dest.tryReuseBlob(b)` would answer true, asked without writing: for a registry, HEADs
 * of the blob in the repository and in the repositories it would mount from (its mount source and
 * the blob-locations cache's first two, as tryReuseBlob tries them) instead of the mounts; every
 * other destination only looks already (oci: and dir: check their files).
 */
async function wouldReuse(dest: ImageDestination, b: Descriptor, signal: AbortSignal | undefined): Promise<boolean> {
  if (!(dest instanceof DockerImageDestination)) return dest.tryReuseBlob(b, signal);
  const fits = (size: number | undefined) => size !== undefined && (size < 0 || b.size < 0 || size === b.size);
  const { repository } = dest;
  if (fits(await repository.headBlob(b.digest, signal))) return true;
  const mountSource = dest.mountSource;
  const others = BlobLocations.shared()?.candidates(repository.registry.domain, b.digest, repository.path).filter((r) => r !== mountSource).slice(0, 2) ?? [];
  for (const from of mountSource === undefined ? others : [mountSource, ...others]) {
    try {
      if (fits(await repository.registry.repository(from, "pull").headBlob(b.digest, signal))) return true;
    } catch (err) {
      if (signal?.aborted) throw err; // a repository we may not read: no mount from it either
    }
  }
  return false;
}

async function pushVerified(what: string, w: ImageWork, dest: ImageDestination, b: Descriptor, signal: AbortSignal, options: ImportOptions, journal: ImportJournal | undefined, archive: (offset?: number) => Readable): Promise<void> {
  const { onProgress } = options;
  await putVerifiedBlob(dest, b, archive(), {
    what,
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
  dryRun: boolean,
): Promise<void> {
  const missing: string[] = [];
  await settleAll(
    work.map((w) =>
      open(() =>
        guarded(w, async () => {
          const dest = w.dest;
          if (!dest) return; // already present under its name
          for (const b of w.base) {
            if (await (dryRun ? wouldReuse(dest, b, signal) : dest.tryReuseBlob(b, signal))) continue;
            if (!(await mountFromAnother(work, w, b, signal, dryRun))) missing.push(`${b.digest} (${w.name} → ${w.ref})`);
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
 * one): mounts it from there when the destination can mount (the `setMountSource` feature). A dry
 * run only asks whether the other repository has it.
 */
async function mountFromAnother(work: ImageWork[], w: ImageWork, b: Descriptor, signal: AbortSignal | undefined, dryRun: boolean): Promise<boolean> {
  const dest = w.dest as ImageDestination & { setMountSource?: (source: ImageReference) => void };
  if (typeof dest.setMountSource !== "function") return false;
  for (const o of work) {
    if (o === w || o.ref.toString() === w.ref.toString() || ![...o.base, ...o.blobs].some((x) => x.digest === b.digest)) continue;
    // An image already present under its name (no destination opened) has its blobs in its repository.
    if (o.dest && !(await (dryRun ? wouldReuse(o.dest, b, signal) : o.dest.tryReuseBlob(b, signal)))) continue;
    if (dryRun) return true;
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
