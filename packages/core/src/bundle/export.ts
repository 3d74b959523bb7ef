/**
 * exportBundle: images from any transport into one bundle archive (optionally in volumes).
 *
 * Every manifest is fetched first, so every blob's size is known; the archive is then planned
 * (plan.ts) and blobs are downloaded in parallel, each streamed straight into its region of the
 * output with positional writes and verified as it passes. Nothing half-done looks done: data goes
 * to `.partial` files, airlock/bundle.json and the end-of-archive marker are written last, the
 * files are synced and renamed only when everything is verified, and `OUT.journal.json` records
 * finished blobs so that a rerun of the same export resumes.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { type Digest, Digester, digestAlgorithm, digestOf } from "../digest.js";
import { AirlockError, isAirlockError } from "../errors.js";
import { writeFileAtomic } from "../fsutil.js";
import { type Descriptor, type IndexJSON, type Manifest, REF_NAME_ANNOTATION } from "../manifest.js";
import { MediaType } from "../mediatype.js";
import { formatPlatform } from "../platform.js";
import { limiter } from "../progress.js";
import type { Throttle } from "../throttle.js";
import { type BlobReader, type GetBlobOptions, type ImageReference, type ImageSource, isSignatureSource, type SystemContext } from "../transports/types.js";
import { hasUncompressedLayers } from "../convert/convert.js";
import { baseSetDigest, type DeltaBase } from "../delta/receipt.js";
import type { BundleEvent, BundleListener } from "./events.js";
import {
  BUNDLE_FORMAT_VERSION,
  BUNDLE_MEDIA_TYPE,
  BUNDLE_METADATA_PATH,
  type BundleBlob,
  type BundleImage,
  type BundleMetadata,
  type BundleSignature,
  type BundleTool,
  type BundleVolume,
  blobPath,
  checksumFileName,
  checksumLine,
  INDEX_PATH,
  journalFileName,
  MIN_SPLIT_SIZE,
  OCI_LAYOUT_CONTENT,
  OCI_LAYOUT_PATH,
  partialFileName,
  signaturePath,
  toolPath,
  volumeFileName,
} from "./format.js";
import { type BundlePlan, type LayoutItem, type PlannedEntry, padJson, planLayout, volumeDescriptionBytes } from "./plan.js";
import { convertToOci, type PlatformSelection, type ResolvedImage, resolveImage } from "./resolve.js";
import { VolumeHasher } from "./hasher.js";
import { END_OF_ARCHIVE_SIZE, paddedSize } from "./tar.js";
import { settleAll, linkedController } from "./util.js";
import { VolumeFiles } from "./volumes.js";
import { checkBlobData, Journal, type JournalData, WRITE_CHUNK_SIZE, writeBlobData } from "./writer.js";

/** One image to export. */
export interface ExportImage {
  /** Where to read it from (any transport). */
  source: ImageReference;
  /**
   * The name it gets in the bundle (index.json's `org.opencontainers.image.ref.name`), e.g.
   * `docker.io/library/busybox:1.36`. Unique within a bundle.
   */
  name: string;
  /** For an index: keep every platform (default, the digest stays), or only these (a new index). */
  platforms?: PlatformSelection;
  /** Settings for reading this image (its registry's TLS and credentials); default: `ExportOptions.ctx`. */
  ctx?: SystemContext;
  /**
   * Manifests of this image already read from `source` (its top-level manifest first, then any
   * children), e.g. while locking: the export uses them instead of fetching them again (a
   * registry such as Docker Hub counts every manifest GET against its pull limit).
   */
  manifests?: readonly Manifest[];
}

/** Options of {@link exportBundle}. */
export interface ExportOptions {
  /** Settings for reading the sources. */
  ctx?: SystemContext;
  /** Blobs downloaded at once (default 6). */
  concurrency?: number;
  /** Run-wide limits on the downloads (`--max-parallel` per registry, `--rate-limit`); see throttle.ts. */
  throttle?: Throttle;
  /**
   * `"oci"`: Docker v2s2 manifests and manifest lists are converted to OCI ones, so that every OCI
   * tool reads every image of the bundle (skopeo skips Docker media types in an OCI layout); the
   * converted images' digests change (recorded as `sourceDigest`). Default: kept as they are.
   */
  format?: "oci";
  /** Largest size of a volume in bytes; the bundle is then written as OUT.000, OUT.001, … */
  splitSize?: number;
  signal?: AbortSignal;
  onProgress?: BundleListener;
  /** Interval of blob-progress events per blob in milliseconds (default 500). */
  progressIntervalMs?: number;
  /** Resolve and plan only: report what would be written, write nothing. */
  dryRun?: boolean;
  /** Resume from OUT.journal.json when it matches this export (default true). */
  resume?: boolean;
  /** Recorded as `lock` in bundle.json (e.g. the resolved images.lock). */
  lock?: unknown;
  /** The tool version recorded in bundle.json (default: @airlock/core's). */
  toolVersion?: string;
  /**
   * A delta export: what the other side already holds. Blobs it lists, and the blobs of image
   * manifests it lists, are not stored; bundle.json records them as the bundle's `base`. Manifests
   * are always stored (they are small, and every image's tag must be writable).
   */
  since?: DeltaBase;
  /** Executables to carry beside the layout as `airlock/tool/NAME` (mode 0755), e.g. airlock itself. */
  tools?: ExportTool[];
  /**
   * A blob that cannot be read (missing at the source, refused, corrupt) fails only the images
   * that use it: the others are written, and the failed ones are listed in
   * {@link ExportResult.failures}. The blobs already downloaded are copied from the first attempt's
   * partial file into the bundle of the others, not fetched again. Failures of the run itself (the
   * disk, an interrupt) still stop the export. When every image fails, the first failure is thrown.
   */
  keepGoing?: boolean;
  /** With keepGoing: what to record as `lock` when these images (bundle names) failed; default: `lock` as given. */
  lockWithout?: (failed: string[]) => unknown;
}

/** An image that could not be exported ({@link ExportOptions.keepGoing}). */
export interface ExportFailure {
  /** Its bundle name. */
  image: string;
  error: AirlockError;
}

/** An executable for {@link ExportOptions.tools}: a local file, streamed into the bundle. */
export interface ExportTool {
  /** The local file. */
  file: string;
  /** Its name in the bundle: the entry is `airlock/tool/NAME` (letters, digits, `.`, `_`, `-`). */
  name: string;
  /** The platform it runs on, `os/arch` (e.g. `linux/amd64`), recorded in bundle.json. */
  platform: string;
}

/** An image as exported. */
export interface ExportedImage {
  name: string;
  source: string;
  /** Digest of the top-level manifest in the bundle. */
  digest: Digest;
  mediaType: string;
  /** The source's top-level digest when a platform list subset its index or `format` converted it (then ≠ `digest`). */
  sourceDigest?: Digest;
  /** Set when its Docker-typed manifests were converted to OCI (`format: "oci"`). */
  converted?: true;
}

/** A volume file written (or, in a dry run, planned). */
export interface ExportedVolume {
  volume: number;
  path: string;
  size: number;
  /** sha256 (hex) of the file; empty in a dry run. */
  sha256: string;
}

/** What {@link exportBundle} did (or, with dryRun, would do). */
export interface ExportResult {
  /** The bundle's id. */
  bundle: string;
  /** The output path as given. */
  path: string;
  /** The volume files (one, named `path`, unless split). */
  volumes: ExportedVolume[];
  /** The sidecar checksum file. */
  checksumFile: string;
  images: ExportedImage[];
  manifests: number;
  /** Distinct blobs stored (configs and layers). */
  blobs: number;
  /** Bytes of distinct blobs stored. */
  blobBytes: number;
  /** Blobs downloaded by this run (the rest were resumed from a partial bundle). */
  blobsWritten: number;
  /** Bytes downloaded by this run. */
  bytesWritten: number;
  /** Blobs found complete in the partial bundle of an earlier run. */
  blobsResumed: number;
  /** Blob references beyond the first of each digest: stored once. */
  duplicateBlobs: number;
  duplicateBytes: number;
  /** Total size of the bundle. */
  size: number;
  /** A delta export: blobs left out because the other side has them, and their bytes. */
  baseBlobs?: number;
  baseBytes?: number;
  durationMs: number;
  dryRun: boolean;
  /** The executables carried beside the layout (see {@link ExportOptions.tools}). */
  tools?: BundleTool[];
  /** Images left out because a blob of theirs could not be read ({@link ExportOptions.keepGoing}); absent when none. */
  failures?: ExportFailure[];
}

const DEFAULT_CONCURRENCY = 6;
const METADATA_SLACK = 64;

// The OCI ref.name grammar as containers/image checks it, so skopeo can address every image.
const REF_NAME_RE = /^(?:[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)(?:\/(?:[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*))*$/;

/** Reports whether `name` is a valid `org.opencontainers.image.ref.name` (as skopeo checks it). */
export function isValidBundleName(name: string): boolean {
  return REF_NAME_RE.test(name);
}

interface BlobTask {
  desc: Descriptor;
  src: ImageSource;
  image: string;
  entry: PlannedEntry;
}

/**
 * Exports `images` into the bundle `out`: one tar holding a valid OCI image layout plus
 * airlock's metadata (see FORMAT.md). With `splitSize`, the tar is written as volumes
 * `out.000`, `out.001`, … Returns a summary; throws on the first failure, keeping the
 * `.partial` files and the journal so that rerunning the same export resumes.
 */
export async function exportBundle(images: ExportImage[], out: string, options: ExportOptions = {}): Promise<ExportResult> {
  if (options.dryRun) return exportUnlocked(images, out, options);
  return withExportLock(out, async () => {
    await removeSuperseded(out);
    return exportUnlocked(images, out, options);
  });
}

/** {@link exportBundle} without the lock on OUT (the caller holds it, or writes nothing). */
async function exportUnlocked(images: ExportImage[], out: string, options: ExportOptions): Promise<ExportResult> {
  const started = Date.now();
  const { signal, onProgress } = options;
  validateExport(images, options);
  signal?.throwIfAborted();
  const sources: ImageSource[] = [];
  try {
    // 1. Every manifest, before any blob.
    const resolveLimit = limiter(16);
    const resolved = await settleAll(
      images.map((img) =>
        resolveLimit(async () => {
          signal?.throwIfAborted();
          const src = await img.source.newSource(img.ctx ?? options.ctx);
          sources.push(src);
          if (hasUncompressedLayers(src)) {
            // A bundle stores blobs exactly as their descriptors say; these would be uncompressed
            // tars under gzip media types. `copy` compresses them (as containers/image does).
            throw new AirlockError(
              "ERR_UNSUPPORTED",
              `${img.name}: ${img.source.toString()} keeps its layers uncompressed under their original compressed media types, which a bundle cannot carry as they are; copy it into an OCI layout first (airlock copy ${img.source.toString()} oci:DIR:NAME compresses them) and export oci:DIR:NAME instead`,
            );
          }
          onProgress?.({ type: "image-start", image: img.name });
          const resolvedAsIs = await resolveImage(src, img.name, img.platforms ?? "all", signal, img.manifests);
          const r = options.format === "oci" ? convertToOci(resolvedAsIs) : resolvedAsIs;
          if (isDockerTyped(r.top)) {
            onProgress?.({
              type: "warning",
              image: img.name,
              message: `${img.name} has a Docker-typed ${r.top.isIndex ? "manifest list" : "manifest"} (${r.top.mediaType}), which the bundle keeps as it is: airlock and containerd (ctr images import) read it, but skopeo 1.9 and umoci do not take it from an OCI layout; export with --format oci to convert it (its digest changes)`,
            });
          }
          if (r.sourceTop) {
            // The platforms kept, when a platform list subset the index (a conversion alone keeps them all).
            const platforms = resolvedAsIs.sourceTop ? (r.platforms ?? []).map((p) => (p.platform ? formatPlatform(p.platform) : p.digest)) : [];
            onProgress?.({ type: "index-rewritten", image: img.name, sourceDigest: r.sourceTop.digest, digest: r.top.digest, platforms, ...(r.converted ? { converted: true as const } : {}) });
          }
          const signatures = await readSignatures(src, r, resolvedAsIs, signal, (digest, n) =>
            onProgress?.({ type: "warning", image: img.name, message: `${n} signature(s) of ${digest} (${img.source.toString()}) are left out: --format oci converted that manifest, so they no longer sign what the bundle holds` }),
          );
          return { r, src, signatures };
        }),
      ),
    );

    // 2. What the bundle holds: manifests and blobs, each once.
    const manifests = new Map<string, Manifest>();
    const blobs = new Map<string, { desc: Descriptor; src: ImageSource; image: string }>();
    let duplicateBlobs = 0;
    let duplicateBytes = 0;
    for (const { r, src } of resolved) {
      for (const m of r.manifests) if (!manifests.has(m.digest)) manifests.set(m.digest, m);
      for (const d of r.blobs) {
        const have = blobs.get(d.digest);
        if (!have) {
          blobs.set(d.digest, { desc: d, src, image: r.name });
        } else if (have.desc.size !== d.size) {
          throw new AirlockError("ERR_MANIFEST_INVALID", `blob ${d.digest} is listed with size ${have.desc.size} by ${have.image} and ${d.size} by ${r.name}; one of the manifests is wrong`);
        } else {
          duplicateBlobs++;
          duplicateBytes += d.size;
        }
      }
    }
    for (const d of manifests.keys()) {
      if (blobs.has(d)) throw new AirlockError("ERR_MANIFEST_INVALID", `${d} is both a manifest and a layer or config; airlock cannot export such images`);
    }
    // A delta: leave out what the other side has (listed blobs, and blobs of listed image manifests).
    const omitted = new Map<string, number>();
    if (options.since) {
      const have = new Set(options.since.blobs);
      for (const m of manifests.values()) if (!m.isIndex && options.since.manifests.has(m.digest)) for (const b of m.blobs()) have.add(b.digest);
      for (const [d, b] of blobs) {
        if (have.has(d)) {
          omitted.set(d, b.desc.size);
          blobs.delete(d);
        }
      }
    }
    // Image signatures found at the sources, each manifest's once (deduplicated across images).
    const signatureEntries = bundleSignatures(resolved.map(({ signatures }) => signatures));
    const tools = await describeTools(options.tools ?? [], signal);
    const indexBytes = buildIndexJson(resolved.map(({ r }) => r));
    const items: LayoutItem[] = [
      { path: OCI_LAYOUT_PATH, size: OCI_LAYOUT_CONTENT.length, kind: "file", digest: digestOf(OCI_LAYOUT_CONTENT) },
      { path: INDEX_PATH, size: indexBytes.length, kind: "file", digest: digestOf(indexBytes) },
      ...[...manifests.values()].map((m): LayoutItem => ({ path: blobPath(m.digest), size: m.bytes.length, kind: "manifest", digest: m.digest })),
      ...signatureEntries.map(({ meta }): LayoutItem => ({ path: meta.path, size: meta.size, kind: "file", digest: meta.digest })),
      ...tools.map(({ meta }): LayoutItem => ({ path: meta.path, size: meta.size, kind: "file", digest: meta.digest, mode: 0o755 })),
      // Largest first, the order they are downloaded in, so the volume checksums can follow the downloads.
      ...[...blobs.values()].sort((a, b) => b.desc.size - a.desc.size).map(({ desc }): LayoutItem => ({ path: blobPath(desc.digest), size: desc.size, kind: "blob", digest: desc.digest })),
    ];

    // 3. The plan, and whether a partial bundle of the same plan can be resumed.
    const split = options.splitSize !== undefined;
    const finalPaths = (plan: BundlePlan) => (split ? plan.volumes.map((v) => volumeFileName(out, v.number)) : [out]);
    const journalPath = journalFileName(out);
    let bundleId: string = randomUUID();
    let created = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString();
    const toolVersion = options.toolVersion ?? (await coreVersion());
    const metaBase = (): Omit<BundleMetadata, "manifests" | "blobs" | "volumes"> => {
      const m: Omit<BundleMetadata, "manifests" | "blobs" | "volumes"> = {
        mediaType: BUNDLE_MEDIA_TYPE,
        formatVersion: BUNDLE_FORMAT_VERSION,
        bundle: bundleId,
        tool: { name: "airlock", version: toolVersion },
        created,
        images: resolved.map(({ r }) => bundleImage(r)),
      };
      if (signatureEntries.length > 0) m.signatures = signatureEntries.map(({ meta }) => meta);
      if (tools.length > 0) m.tools = tools.map(({ meta }) => meta);
      if (options.since) {
        const list = [...omitted.keys()].sort() as Digest[];
        m.base = { source: options.since.source, count: list.length, digest: baseSetDigest(list), blobs: list };
      }
      if (options.lock !== undefined) m.lock = options.lock;
      return m;
    };
    const makePlan = () => planWithMetadata(items, metaBase(), manifests, blobs, out, split, options.splitSize, Date.parse(created) / 1000);
    let { plan, metadataReserve } = makePlan();
    const planKey = digestOf(JSON.stringify({ v: 1, split: options.splitSize ?? null, volumes: plan.volumes.map((v) => v.size), entries: plan.entries.map((e) => [e.path, e.size, e.headerOffset]) }));
    const previous = options.dryRun || options.resume === false ? undefined : await Journal.load(journalPath);
    let resumed = false;
    if (previous && previous.plan === planKey && (await allExist(finalPaths(plan).map(partialFileName)))) {
      bundleId = previous.bundle;
      created = previous.created;
      ({ plan, metadataReserve } = makePlan());
      resumed = true;
    }
    const bytes = [...blobs.values()].reduce((n, b) => n + b.desc.size, 0);
    onProgress?.({ type: "bundle-plan", images: images.length, manifests: manifests.size, blobs: blobs.size, bytes, duplicateBlobs, duplicateBytes, volumes: plan.volumes.length, size: plan.size, resumed });

    const result: ExportResult = {
      bundle: bundleId,
      path: out,
      volumes: [],
      checksumFile: checksumFileName(out),
      images: resolved.map(({ r }) => exportedImage(r)),
      manifests: manifests.size,
      blobs: blobs.size,
      blobBytes: bytes,
      blobsWritten: 0,
      bytesWritten: 0,
      blobsResumed: 0,
      duplicateBlobs,
      duplicateBytes,
      size: plan.size,
      durationMs: 0,
      dryRun: options.dryRun ?? false,
    };
    if (tools.length > 0) result.tools = tools.map(({ meta }) => meta);
    if (options.since) {
      result.baseBlobs = omitted.size;
      result.baseBytes = [...omitted.values()].reduce((n, x) => n + x, 0);
    }
    if (options.dryRun) {
      result.volumes = finalPaths(plan).map((path, i) => ({ volume: i, path, size: plan.volumes[i]?.size ?? 0, sha256: "" }));
      result.durationMs = Date.now() - started;
      return result;
    }

    // 4. Write.
    const paths = finalPaths(plan);
    const partials = paths.map(partialFileName);
    await fs.mkdir(dirname(resolve(out)), { recursive: true });
    if (!resumed) await fs.rm(journalPath, { force: true });
    await checkFreeSpace(out, plan.size, resumed ? partials : []);
    const files = await VolumeFiles.open(plan.volumes, partials, resumed ? "r+" : "w+");
    const journal = new Journal(journalPath, resumed && previous ? { ...previous, done: [] } : ({ version: 1, plan: planKey, bundle: bundleId, created, done: [] } satisfies JournalData));
    const doneBefore = new Set<string>(resumed && previous ? previous.done : []);
    let sums: string[] = [];
    let failures: ExportFailure[] = [];
    let local = new Map<string, PlannedEntry>();
    const hasher = new VolumeHasher(plan, files);
    const background = new BackgroundSync(files);
    let entryByPath = new Map<string, PlannedEntry>();
    // A failed run keeps its partial files and journal for a rerun.
    const abandon = async (err: unknown): Promise<never> => {
      hasher.close();
      await background.idle();
      await files.close();
      journal.save(); // the latest download progress, which saves at most every 250 ms
      await journal.flush();
      throw explainFailure(err, out, partials, journalPath, signal?.aborted ? signal.reason : undefined);
    };
    try {
      journal.save();
      await writeSmallEntries(files, plan, bundleId, indexBytes, manifests, new Map(signatureEntries.map(({ meta, bytes }) => [meta.path, bytes])));
      await writeTools(files, plan, tools, signal);
      for (const e of plan.entries) if (e.kind !== "blob" && e.kind !== "metadata") hasher.written(e);
      for (const { r } of resolved) for (const m of r.manifests) onProgress?.({ type: "manifest", image: r.name, digest: m.digest, mediaType: m.mediaType, topLevel: m === r.top });

      entryByPath = new Map(plan.entries.map((e) => [e.path, e]));
      const tasks: BlobTask[] = [...blobs.values()].map((b) => ({ ...b, entry: entryByPath.get(blobPath(b.desc.digest)) as PlannedEntry }));
      // Largest first (as in the archive): the longest downloads start early, the small ones fill in around them.
      tasks.sort((a, b) => a.entry.headerOffset - b.entry.headerOffset);
      const remainingPerImage = new Map<string, number>();
      for (const { r } of resolved) remainingPerImage.set(r.name, new Set(r.blobs.map((d) => d.digest).filter((d) => blobs.has(d))).size);
      const imagesOf = new Map<string, string[]>();
      for (const { r } of resolved) for (const d of new Set(r.blobs.map((x) => x.digest))) imagesOf.set(d, [...(imagesOf.get(d) ?? []), r.name]);
      const blobDone = (d: Digest) => {
        for (const name of imagesOf.get(d) ?? []) {
          const left = (remainingPerImage.get(name) ?? 1) - 1;
          remainingPerImage.set(name, left);
          const img = resolved.find(({ r }) => r.name === name)?.r;
          if (left === 0 && img) onProgress?.({ type: "image-done", image: name, digest: img.top.digest });
        }
      };
      for (const [name, left] of remainingPerImage) {
        if (left === 0) onProgress?.({ type: "image-done", image: name, digest: resolved.find(({ r }) => r.name === name)?.r.top.digest as Digest });
      }

      const { controller: inner, release } = linkedController(signal);
      const run = limiter(Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY));
      let firstError: unknown;
      // keepGoing: the blobs that could not be read, and why; and the blobs complete in the partial file.
      const failedBlobs = new Map<string, AirlockError>();
      const stored = new Set<string>();
      try {
        await Promise.all(
          tasks.map((t) =>
            run(async () => {
              if (inner.signal.aborted) return;
              const d = t.desc.digest;
              // The journal is saved asynchronously, so a kill can lose its last entries: on a resumed run every
              // blob's header is looked at (cheap), and a blob with its header in place is re-verified and kept.
              if ((doneBefore.has(d) || resumed) && (await checkBlobData(files, t.entry, d))) {
                result.blobsResumed++;
                hasher.written(t.entry);
                journal.markDone(d);
                stored.add(d);
                onProgress?.({ type: "blob-skipped", image: t.image, digest: d, size: t.desc.size, reason: "already in the partial bundle" });
                blobDone(d);
                return;
              }
              // Bytes of its data an earlier run wrote: only the rest is fetched.
              const kept = resumed ? journal.written(d) : 0;
              const download = () => downloadBlob(files, t, inner.signal, options, hasher, background, journal, kept);
              const fetched = await (options.throttle ? options.throttle.transfer([t.src.reference], download) : download());
              await files.write(t.entry.header, 0, t.entry.header.length, t.entry.headerOffset);
              hasher.written(t.entry);
              journal.markDone(d);
              stored.add(d);
              result.blobsWritten++;
              result.bytesWritten += fetched;
              onProgress?.({ type: "blob-done", image: t.image, digest: d, size: t.desc.size });
              blobDone(d);
            }).catch((err) => {
              const failure = blobFailure(err, t);
              if (options.keepGoing && !inner.signal.aborted && isImageFailure(failure)) {
                failedBlobs.set(t.desc.digest, failure);
                return;
              }
              // The first failure is the one reported; it stops the other downloads, and every one of
              // them settles (its stream destroyed) before the files are closed.
              if (firstError === undefined) firstError = failure;
              inner.abort(err);
            }),
          ),
        );
      } finally {
        release();
      }
      if (firstError !== undefined) throw firstError;
      signal?.throwIfAborted();
      if (failedBlobs.size > 0) {
        failures = imageFailures(resolved.map(({ r }) => r), failedBlobs);
        // Nothing left to write: the first failure is the export's (the partial file stays for a rerun).
        if (failures.length === resolved.length) throw (failures[0] as ExportFailure).error;
        hasher.close();
        await background.idle();
        local = new Map([...stored].map((d) => [d, entryByPath.get(blobPath(d as Digest)) as PlannedEntry]));
      }
    } catch (err) {
      await abandon(err);
    }
    if (failures.length > 0) {
      await journal.flush();
      const opened = new Map(resolved.map(({ r, src }) => [r.name, src]));
      return await exportSurvivors(images, out, options, { failures, files, partials, journalPath, local, opened, started });
    }
    try {
      // 5. Finish: checksums of the volumes before bundle.json, bundle.json, end of archive, the rest.
      const meta = plan.entries.find((e) => e.kind === "metadata") as PlannedEntry;
      await hasher.reach(meta.headerOffset);
      const before = plan.volumes.filter((v) => v.offset + v.size <= meta.headerOffset);
      sums = hasher.valid ? before.map((v) => hasher.sums[v.number] as string) : await Promise.all(before.map((v) => sha256File(partials[v.number] as string, signal)));
      const metadata = buildMetadata(metaBase(), manifests, blobs, plan, paths, sums);
      const metaBytes = padJson(JSON.stringify(metadata, null, 2), metadataReserve, BUNDLE_METADATA_PATH);
      await files.write(entryBytes(meta, metaBytes), 0, meta.header.length + paddedSize(meta.size), meta.headerOffset);
      hasher.written(meta);
      await files.write(Buffer.alloc(END_OF_ARCHIVE_SIZE), 0, END_OF_ARCHIVE_SIZE, plan.endOffset);
      hasher.endWritten();
      await hasher.reach(plan.size); // also awaits the sums from the hash worker, if it runs one
      hasher.close();
      for (let i = sums.length; i < plan.volumes.length; i++) sums.push(hasher.valid ? (hasher.sums[i] as string) : await sha256File(partials[i] as string, signal));
      await background.idle();
      await checkSizes(plan, partials);
      await files.sync();
    } catch (err) {
      await abandon(err);
    }
    await files.close();
    await journal.flush();

    // 6. Only now do the files get their final names; the sidecar comes last.
    result.volumes = [];
    for (const [i, p] of partials.entries()) {
      await fs.rename(p, paths[i] as string);
    }
    for (const [i, p] of paths.entries()) {
      const v = { volume: i, path: p, size: plan.volumes[i]?.size ?? 0, sha256: sums[i] as string };
      result.volumes.push(v);
      onProgress?.({ type: "volume-done", ...v });
    }
    await writeFileAtomic(checksumFileName(out), paths.map((p, i) => checksumLine(sums[i] as string, p)).join(""));
    await journal.remove();
    await removeStale(out, split, paths.length);
    await syncDir(dirname(resolve(out)));
    result.durationMs = Date.now() - started;
    return result;
  } finally {
    await Promise.all(sources.map((s) => s.close().catch(() => {})));
  }
}

function validateExport(images: ExportImage[], options: ExportOptions): void {
  if (images.length === 0) throw new AirlockError("ERR_INVALID_ARGUMENT", "nothing to export: the image list is empty");
  const names = new Set<string>();
  for (const img of images) {
    if (!isValidBundleName(img.name)) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid bundle name ${JSON.stringify(img.name)} for ${img.source}: use letters, digits and . _ - : @ + / (e.g. docker.io/library/busybox:1.36), as an OCI layout's ref.name`);
    }
    if (names.has(img.name)) throw new AirlockError("ERR_INVALID_ARGUMENT", `the bundle name ${img.name} is given to more than one image; names must be unique`);
    names.add(img.name);
  }
  if (options.splitSize !== undefined && (!Number.isSafeInteger(options.splitSize) || options.splitSize < MIN_SPLIT_SIZE)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `split size ${options.splitSize} is too small: volumes must be at least ${MIN_SPLIT_SIZE} bytes`);
  }
  if (options.concurrency !== undefined && (!Number.isInteger(options.concurrency) || options.concurrency < 1)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `concurrency must be a positive integer, got ${options.concurrency}`);
  }
}

function bundleImage(r: ResolvedImage): BundleImage {
  const b: BundleImage = { name: r.name, source: r.source.toString(), digest: r.top.digest, mediaType: r.top.mediaType, size: r.top.bytes.length };
  if (r.sourceTop) b.sourceDigest = r.sourceTop.digest;
  if (r.platforms) b.platforms = r.platforms;
  return b;
}

function exportedImage(r: ResolvedImage): ExportedImage {
  const e: ExportedImage = { name: r.name, source: r.source.toString(), digest: r.top.digest, mediaType: r.top.mediaType };
  if (r.sourceTop) e.sourceDigest = r.sourceTop.digest;
  if (r.converted) e.converted = true;
  return e;
}

/**
 * The signatures a source stores for the manifests of `r` that the bundle keeps as they are: the
 * top-level manifest (unless a platform list rewrote the index: the source's signatures name the
 * source's digest) and, for an index, each image it lists. By manifest digest; [] entries left out.
 * `asIs` is the image before `--format oci` (manifest for manifest, in the same order): the
 * signatures of a manifest it converted sign the original's digest, so they are left out and
 * reported to `dropped`.
 */
async function readSignatures(src: ImageSource, r: ResolvedImage, asIs: ResolvedImage, signal: AbortSignal | undefined, dropped: (digest: Digest, n: number) => void): Promise<Map<Digest, Uint8Array[]>> {
  const out = new Map<Digest, Uint8Array[]>();
  if (!isSignatureSource(src)) return out;
  const lookup = (m: Manifest, top: boolean) => (top ? src.getSignatures(signal ? { signal } : {}) : src.getSignatures(signal ? { instanceDigest: m.digest, signal } : { instanceDigest: m.digest }));
  for (const [i, m] of r.manifests.entries()) {
    signal?.throwIfAborted();
    const original = asIs.manifests[i] ?? m;
    // An index a platform list rewrote: the source never signed it.
    if (original === asIs.top && asIs.sourceTop) continue;
    const sigs = await lookup(original, original === asIs.top);
    // --format oci converted it: the source's signatures name the original digest, not this one.
    if (original.digest !== m.digest) {
      if (sigs.length > 0) dropped(original.digest, sigs.length);
      continue;
    }
    if (sigs.length > 0) out.set(m.digest, sigs);
  }
  return out;
}

/** The signature entries of the bundle: per manifest, the distinct signatures of every image, numbered from 1. */
function bundleSignatures(perImage: Map<Digest, Uint8Array[]>[]): { meta: BundleSignature; bytes: Uint8Array }[] {
  const byManifest = new Map<Digest, Uint8Array[]>();
  for (const sigs of perImage) {
    for (const [digest, list] of sigs) {
      const have = byManifest.get(digest) ?? [];
      for (const sig of list) if (!have.some((h) => Buffer.compare(h, sig) === 0)) have.push(sig);
      byManifest.set(digest, have);
    }
  }
  const out: { meta: BundleSignature; bytes: Uint8Array }[] = [];
  for (const [manifest, list] of byManifest) {
    for (const [i, bytes] of list.entries()) out.push({ meta: { manifest, index: i + 1, path: signaturePath(manifest, i + 1), digest: digestOf(bytes), size: bytes.length }, bytes });
  }
  return out;
}

/** index.json: one entry per image, named by ref.name. */
function buildIndexJson(images: ResolvedImage[]): Buffer {
  const index: IndexJSON = {
    schemaVersion: 2,
    mediaType: MediaType.OCIIndex,
    manifests: images.map((r) => r.top.descriptor({ annotations: { [REF_NAME_ANNOTATION]: r.name } })),
  };
  return Buffer.from(JSON.stringify(index));
}

type MetaBase = Omit<BundleMetadata, "manifests" | "blobs" | "volumes">;
type BlobMap = Map<string, { desc: Descriptor }>;

function buildMetadata(base: MetaBase, manifests: Map<string, Manifest>, blobs: BlobMap, plan: BundlePlan | undefined, paths: string[] | undefined, sums: (string | null)[], placeholderVolumes = 0): BundleMetadata {
  const volumeOf = new Map<string, number>();
  if (plan) for (const e of plan.entries) volumeOf.set(e.path, e.volume);
  const vol = (d: Digest) => volumeOf.get(blobPath(d)) ?? 999_999;
  const mlist: BundleBlob[] = [...manifests.values()].map((m) => ({ digest: m.digest, size: m.bytes.length, mediaType: m.mediaType, volume: vol(m.digest) }));
  const blist: BundleBlob[] = [...blobs.values()].map(({ desc }) => ({ digest: desc.digest, size: desc.size, mediaType: desc.mediaType, volume: vol(desc.digest) }));
  let volumes: BundleVolume[];
  if (plan && paths) {
    volumes = plan.volumes.map((v, i) => ({ volume: v.number, name: basename(paths[i] as string), size: v.size, sha256: sums[i] ?? null }));
  } else {
    volumes = Array.from({ length: placeholderVolumes }, () => ({ volume: 999_999, name: "", size: Number.MAX_SAFE_INTEGER, sha256: "0".repeat(64) }));
  }
  // Key order as in the BundleMetadata interface, lock last.
  const { lock, base: delta, ...rest } = base;
  const m: BundleMetadata = { ...rest, manifests: mlist, blobs: blist, volumes };
  if (delta !== undefined) m.base = delta;
  if (lock !== undefined) m.lock = lock;
  return m;
}

/**
 * Plans the layout with a bundle.json of reserved size. Its size depends on the number of volumes
 * (one line each), which depends on the plan: reserve for a guess, plan, and plan again with a
 * larger guess until the reservation covers the plan's volume count.
 */
function planWithMetadata(items: LayoutItem[], base: MetaBase, manifests: Map<string, Manifest>, blobs: BlobMap, out: string, split: boolean, splitSize: number | undefined, mtime: number): { plan: BundlePlan; metadataReserve: number } {
  const nameWidth = basename(out).length + 8;
  let guess = 1;
  for (;;) {
    const placeholder = buildMetadata(base, manifests, blobs, undefined, undefined, [], guess);
    for (const v of placeholder.volumes) v.name = "x".repeat(split ? nameWidth : basename(out).length);
    const reserve = Buffer.byteLength(JSON.stringify(placeholder, null, 2)) + METADATA_SLACK;
    const plan = planLayout([...items, { path: BUNDLE_METADATA_PATH, size: reserve, kind: "metadata" }], { splitSize, mtime });
    if (plan.volumes.length <= guess) return { plan, metadataReserve: reserve };
    guess = plan.volumes.length;
  }
}

/** Header, data and zero padding of a small entry, as one buffer. */
function entryBytes(e: PlannedEntry, data: Uint8Array): Buffer {
  const out = Buffer.alloc(e.header.length + paddedSize(e.size));
  e.header.copy(out, 0);
  out.set(data, e.header.length);
  return out;
}

/** Writes the volume descriptions, oci-layout, index.json and manifests, merging neighbours into large writes. */
async function writeSmallEntries(files: VolumeFiles, plan: BundlePlan, bundleId: string, indexBytes: Buffer, manifests: Map<string, Manifest>, smallFiles: Map<string, Uint8Array>): Promise<void> {
  const writes: { at: number; bytes: Buffer }[] = [];
  for (const v of plan.volumes) {
    if (v.description) writes.push({ at: v.description.headerOffset, bytes: entryBytes(v.description, volumeDescriptionBytes(plan, v, bundleId)) });
  }
  for (const e of plan.entries) {
    let data: Uint8Array | undefined;
    if (e.path === OCI_LAYOUT_PATH) data = Buffer.from(OCI_LAYOUT_CONTENT);
    else if (e.path === INDEX_PATH) data = indexBytes;
    else if (e.kind === "manifest" && e.digest) data = manifests.get(e.digest)?.bytes;
    else if (e.kind === "file") data = smallFiles.get(e.path);
    if (data) writes.push({ at: e.headerOffset, bytes: entryBytes(e, data) });
  }
  writes.sort((a, b) => a.at - b.at);
  let batch: Buffer[] = [];
  let batchAt = 0;
  let batchLen = 0;
  const flush = async () => {
    if (batch.length > 0) {
      const b = Buffer.concat(batch);
      await files.write(b, 0, b.length, batchAt);
    }
    batch = [];
    batchLen = 0;
  };
  for (const w of writes) {
    if (batch.length > 0 && (w.at !== batchAt + batchLen || batchLen + w.bytes.length > WRITE_CHUNK_SIZE)) await flush();
    if (batch.length === 0) batchAt = w.at;
    batch.push(w.bytes);
    batchLen += w.bytes.length;
  }
  await flush();
}

/**
 * Downloads blob `t` into its region, verified; returns the bytes fetched. `kept` bytes of its
 * data written by an earlier run are hashed again from disk and the rest is fetched with a Range
 * request; a source that cannot start there sends the whole blob, written from the start. The
 * whole blob's digest is checked at the end either way; a mismatch after a kept prefix is retried
 * from the start. Each completed write is recorded in the journal, for the next rerun.
 */
async function downloadBlob(files: VolumeFiles, t: BlobTask, signal: AbortSignal, options: ExportOptions, hasher: VolumeHasher, background: BackgroundSync, journal: Journal, kept: number): Promise<number> {
  const { onProgress } = options;
  const d = t.desc.digest;
  const interval = options.progressIntervalMs ?? 500;
  for (let attempt = 1; ; attempt++) {
    if (attempt > 1) {
      hasher.blobRestart(t.entry);
      kept = 0;
    }
    onProgress?.({ type: "blob-start", image: t.image, digest: d, size: t.desc.size, mediaType: t.desc.mediaType });
    let last = 0;
    let startAt = 0;
    try {
      let digester: Digester | undefined;
      let opened: BlobReader | undefined;
      if (kept > 0) {
        digester = await hashKept(files, t.entry, d, kept, signal);
        if (digester) {
          try {
            opened = await t.src.getBlob(t.desc, { signal, offset: kept, wholeIfUnseekable: true });
            startAt = opened.offset ?? kept;
          } catch (err) {
            if (!isAirlockError(err, "ERR_UNSUPPORTED")) throw err;
          }
          if (startAt > 0) hasher.blobResumed(t.entry, startAt);
          else digester = undefined;
        }
      }
      opened ??= await t.src.getBlob(t.desc, { signal });
      const { stream } = opened;
      await writeBlobData(files, t.entry, d, options.throttle?.stream(stream, signal) ?? stream, {
        signal,
        what: `blob ${d} of ${t.src.reference}`,
        startAt,
        digester,
        onWritten: (pos, buf, n) => {
          hasher.blobWrite(t.entry, pos, buf, n);
          background.add(n);
          journal.markProgress(d, Math.min(pos + n - t.entry.dataOffset, t.desc.size));
        },
        onBytes: (bytes) => {
          const now = Date.now();
          if (onProgress && now - last >= interval) {
            last = now;
            onProgress({ type: "blob-progress", image: t.image, digest: d, bytes, size: t.desc.size });
          }
        },
      });
      return t.desc.size - startAt;
    } catch (err) {
      // A kept prefix may be what is wrong (a digest mismatch): once more, from the start.
      const keptWrong = startAt > 0 && isAirlockError(err, "ERR_DIGEST_MISMATCH");
      if (!((isAirlockError(err) && err.retryable) || keptWrong) || attempt >= 3 || signal.aborted) throw err;
      onProgress?.({ type: "warning", image: t.image, message: `blob ${d}: ${(err as Error).message}; retrying${keptWrong ? " from its start" : ""} (${attempt}/2)` });
    }
  }
}

/**
 * Runs `fn` holding `OUT.lock` (created exclusively, holding this process's id and a random token),
 * so that two exports never write the same bundle at once: the second fails at once, naming the
 * first. A lock whose process no longer runs (a killed export), or that names this very process
 * (a container's PID 1 after a restart), is taken over: renamed away first, which only one taker
 * can win. Only the lock holding this run's token is removed at the end. Processes on other
 * machines sharing the file system are not seen.
 */
async function withExportLock<T>(out: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${out}.lock`;
  const token = randomUUID();
  await fs.mkdir(dirname(resolve(out)), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.writeFile(lock, `${process.pid} ${token}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new AirlockError("ERR_IO", `cannot create the lock ${lock}: ${(err as Error).message}`, { cause: err });
      const text = await fs.readFile(lock, "utf8").catch(() => "");
      const owner = Number.parseInt(text, 10);
      // No id in it: a process died between creating and writing it, unless that is happening now.
      const blank = !(owner > 0) && Date.now() - ((await fs.stat(lock).catch(() => undefined))?.mtimeMs ?? 0) > 10_000;
      // This process's id: a lock of an export running in this process (a library caller), or one
      // left by an earlier process that had the same id (a container's PID 1).
      const ownId = owner === process.pid;
      const stale = blank || (ownId ? !heldLocks.has(text.split(" ")[1]?.trim() ?? "") : !isRunning(owner));
      if (attempt < 3 && stale) {
        // Left by an export that was killed: take it over. Of several takers only one renames it.
        const away = `${lock}.${token}.stale`;
        const won = await fs.rename(lock, away).then(
          () => true,
          () => false,
        );
        if (won) {
          const moved = await fs.readFile(away, "utf8").catch(() => "");
          await fs.rm(away, { force: true });
          // Someone else's fresh lock was renamed instead of the stale one: give it back.
          if (moved !== text) await fs.writeFile(lock, moved, { flag: "wx" }).catch(() => {});
        }
        continue;
      }
      const who = Number.isInteger(owner) && owner > 0 ? `process ${owner}` : "another process";
      throw new AirlockError(
        "ERR_IO",
        `another airlock export (${who}) is writing ${out}: wait for it to finish, or write this bundle elsewhere with -o; if no export is running, remove ${lock}`,
      );
    }
  }
  heldLocks.add(token);
  try {
    return await fn();
  } finally {
    heldLocks.delete(token);
    // Only our own lock: one taken over by another process (ours looked stale to it) stays.
    if ((await fs.readFile(lock, "utf8").catch(() => "")).includes(token)) await fs.rm(lock, { force: true });
  }
}

/** The tokens of the export locks this process holds now. */
const heldLocks = new Set<string>();

/** Whether process `pid` runs on this machine (an unreadable lock counts as held). */
function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** Whether a top-level manifest has a Docker media type (v2s2 manifest or manifest list), which OCI-only readers skip in index.json. */
function isDockerTyped(m: Manifest): boolean {
  return m.mediaType === MediaType.DockerManifest || m.mediaType === MediaType.DockerManifestList;
}

/** Failures of the run itself, which keepGoing does not pass over: the disk, an interrupt. */
const RUN_FAILURES = new Set(["ERR_IO", "ERR_ABORTED"]);

/** Whether a blob's failure concerns only the images using it (keepGoing goes on without them). */
function isImageFailure(err: unknown): err is AirlockError {
  return err instanceof AirlockError && !RUN_FAILURES.has(err.code);
}

/** The images (in export order) that use a blob of `failed`, each with the failure of its first such blob. */
function imageFailures(images: ResolvedImage[], failed: Map<string, AirlockError>): ExportFailure[] {
  const out: ExportFailure[] = [];
  for (const r of images) {
    const bad = r.blobs.find((b) => failed.has(b.digest));
    if (!bad) continue;
    const err = failed.get(bad.digest) as AirlockError;
    // The message names the image that first asked for the blob; another image sharing it is named too.
    const error = err.message.includes(r.name) ? err : new AirlockError(err.code, `${r.name}: ${err.message}`, { cause: err });
    out.push({ image: r.name, error });
  }
  return out;
}

/**
 * keepGoing, after some images failed: writes the bundle of the others under the same name. The
 * first attempt's partial files and journal are set aside (the files still open), every blob they
 * hold complete is read from them instead of its source (never throttled: it is a local copy),
 * and every source already open is used again. Once the bundle is written the set-aside files
 * go; if writing it fails, they are put back, so that rerunning the same export resumes the first
 * attempt, and the error names the images that had failed.
 */
async function exportSurvivors(
  images: ExportImage[],
  out: string,
  options: ExportOptions,
  first: { failures: ExportFailure[]; files: VolumeFiles; partials: string[]; journalPath: string; local: Map<string, PlannedEntry>; opened: Map<string, ImageSource>; started: number },
): Promise<ExportResult> {
  const failed = new Set(first.failures.map((f) => f.image));
  const aside = [...first.partials, first.journalPath].map((p) => [p, `${p}.superseded`] as const);
  let result: ExportResult;
  try {
    for (const [p, away] of aside) await fs.rename(p, away);
    const survivors = images.filter((img) => !failed.has(img.name)).map((img) => ({ ...img, source: withLocalBlobs(img.source, first.files, first.local, first.opened.get(img.name)) }));
    const { throttle: _local, onProgress, ...rest } = options;
    result = await exportUnlocked(survivors, out, {
      ...rest,
      resume: false,
      lock: options.lockWithout ? options.lockWithout([...failed]) : options.lock,
      // The survivors' blobs were reported as they arrived; what follows is a local copy.
      ...(onProgress ? { onProgress: (e: BundleEvent) => (e.type === "volume-done" || e.type === "warning" ? onProgress(e) : undefined) } : {}),
    });
  } catch (err) {
    await first.files.close();
    // The first attempt comes back in place of whatever the second left.
    for (const [p, away] of aside) {
      if (await fs.stat(away).then(() => true, () => false)) {
        await fs.rm(p, { force: true });
        await fs.rename(away, p).catch(() => {});
      }
    }
    const names = first.failures.map((f) => f.image).join(", ");
    const why = (first.failures[0] as ExportFailure).error.message;
    const code = isAirlockError(err) ? err.code : "ERR_IO";
    throw new AirlockError(code, `${first.failures.length} image(s) could not be exported (${names}: ${why}); then writing the bundle of the others failed: ${(err as Error).message}`, { cause: err });
  }
  await first.files.close();
  await Promise.all(aside.map(([, away]) => fs.rm(away, { force: true })));
  return { ...result, failures: [...first.failures, ...(result.failures ?? [])], durationMs: Date.now() - first.started };
}

/** Removes the set-aside files (`*.partial.superseded`, the journal's) a killed keepGoing export left beside OUT. */
async function removeSuperseded(out: string): Promise<void> {
  const dir = dirname(resolve(out));
  const base = basename(out);
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const n of names) {
    const rest = n.slice(base.length);
    if (n.startsWith(base) && /^(\.\d{3,})?\.(partial|journal\.json)\.superseded$/.test(rest)) await fs.rm(join(dir, n), { force: true });
  }
}

/**
 * `ref`, whose sources read the blobs of `local` from the set-aside partial files (any other blob
 * from the source). With `opened`, that source is used again instead of a new one (and stays open:
 * its first user closes it).
 */
function withLocalBlobs(ref: ImageReference, files: VolumeFiles, local: Map<string, PlannedEntry>, opened?: ImageSource): ImageReference {
  const bound = <T extends object>(target: T, prop: string | symbol) => {
    const v = Reflect.get(target, prop, target);
    return typeof v === "function" ? v.bind(target) : v;
  };
  const wrapSource = (src: ImageSource, owned: boolean): ImageSource =>
    new Proxy(src, {
      get(target, prop) {
        if (prop === "close" && !owned) return async () => {};
        if (prop !== "getBlob") return bound(target, prop);
        return async (desc: Descriptor, opts?: GetBlobOptions): Promise<BlobReader> => {
          const e = local.get(desc.digest);
          if (!e || e.size !== desc.size || (opts?.offset ?? 0) > 0) return target.getBlob(desc, opts);
          return { stream: readRange(files, e.dataOffset, e.size), size: e.size };
        };
      },
    });
  return new Proxy(ref, {
    get(target, prop) {
      if (prop !== "newSource") return bound(target, prop);
      return async (ctx?: SystemContext) => (opened ? wrapSource(opened, false) : wrapSource(await target.newSource(ctx), true));
    },
  });
}

/** A stream of `size` bytes of `files` from logical position `pos`. */
function readRange(files: VolumeFiles, pos: number, size: number): Readable {
  let at = pos;
  const end = pos + size;
  return new Readable({
    highWaterMark: WRITE_CHUNK_SIZE,
    read() {
      if (at >= end) {
        this.push(null);
        return;
      }
      const n = Math.min(WRITE_CHUNK_SIZE, end - at);
      const buf = Buffer.allocUnsafe(n);
      files.read(buf, 0, n, at).then(
        (got) => {
          if (got !== n) {
            this.destroy(new AirlockError("ERR_IO", `reading the set-aside partial bundle at offset ${at}: got ${got} of ${n} bytes`));
            return;
          }
          at += n;
          this.push(buf);
        },
        (err) => this.destroy(err),
      );
    },
  });
}

/**
 * The error an export reports for blob task `t`: a blob its source lacks means that the image
 * cannot be exported — ERR_IMAGE_NOT_FOUND (exit status 2, as for an image that cannot be
 * resolved), naming the image and its source beside the source's own message.
 */
function blobFailure(err: unknown, t: BlobTask): unknown {
  if (!isAirlockError(err, "ERR_BLOB_NOT_FOUND")) return err;
  // A file-based source's message says how to repair it; a registry's only what it answered.
  const hint = t.src.reference.transport.name === "docker" ? `; push ${t.image} to the registry again, or leave it out of the images file` : "";
  return new AirlockError("ERR_IMAGE_NOT_FOUND", `${t.image} (${t.src.reference}) cannot be exported: ${err.message}${hint}`, { cause: err });
}

/** Hashes the first `n` bytes of `entry`'s data as written by an earlier run; undefined when they cannot be read. */
async function hashKept(files: VolumeFiles, entry: PlannedEntry, digest: Digest, n: number, signal: AbortSignal): Promise<Digester | undefined> {
  if (n <= 0 || n >= entry.size) return undefined;
  const digester = new Digester(digestAlgorithm(digest));
  const buf = Buffer.allocUnsafe(Math.min(WRITE_CHUNK_SIZE, n));
  for (let pos = 0; pos < n; ) {
    signal.throwIfAborted();
    const got = await files.read(buf, 0, Math.min(buf.length, n - pos), entry.dataOffset + pos);
    if (got === 0) return undefined;
    digester.update(buf.subarray(0, got));
    pos += got;
  }
  return digester;
}

/**
 * Flushes the volume files to disk in the background every so many bytes written, so that the
 * final fsync has little left to do (the disk works while the network does).
 */
class BackgroundSync {
  private readonly files: VolumeFiles;
  private readonly every: number;
  private since = 0;
  private running: Promise<void> | undefined;

  constructor(files: VolumeFiles, every = 128 * 1024 * 1024) {
    this.files = files;
    this.every = every;
  }

  /** Counts `n` bytes written; starts a sync when enough accumulated and none is running. */
  add(n: number): void {
    this.since += n;
    if (this.since < this.every || this.running) return;
    this.since = 0;
    this.running = this.files
      .sync()
      .catch(() => {}) // the final sync reports errors
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Waits for a running sync. */
  async idle(): Promise<void> {
    await this.running;
  }
}

const TOOL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The executables of {@link ExportOptions.tools}, each with its size and sha256 (read once). */
async function describeTools(tools: ExportTool[], signal?: AbortSignal): Promise<{ file: string; meta: BundleTool }[]> {
  const out: { file: string; meta: BundleTool }[] = [];
  for (const t of tools) {
    if (!TOOL_NAME_RE.test(t.name)) throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid tool name ${JSON.stringify(t.name)} for ${t.file}: use letters, digits, . _ - (e.g. airlock-linux-x64)`);
    if (out.some((o) => o.meta.path === toolPath(t.name))) throw new AirlockError("ERR_INVALID_ARGUMENT", `the tool name ${t.name} is given to more than one file; names must be unique`);
    let size: number;
    try {
      const st = await fs.stat(t.file);
      if (!st.isFile()) throw new Error("not a regular file");
      size = st.size;
    } catch (cause) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot include the tool ${t.file}: ${(cause as Error).message}`, { cause });
    }
    const digest = `sha256:${await sha256File(t.file, signal)}` as Digest;
    out.push({ file: t.file, meta: { path: toolPath(t.name), platform: t.platform, digest, size } });
  }
  return out;
}

/** Streams each tool file into its entry, verified against the size and sha256 taken before, then its header. */
async function writeTools(files: VolumeFiles, plan: BundlePlan, tools: { file: string; meta: BundleTool }[], signal?: AbortSignal): Promise<void> {
  for (const { file, meta } of tools) {
    const entry = plan.entries.find((e) => e.path === meta.path) as PlannedEntry;
    await writeBlobData(files, entry, meta.digest, createReadStream(file), { signal, what: `the tool ${file} (${meta.path})` });
    await files.write(entry.header, 0, entry.header.length, entry.headerOffset);
  }
}

/** sha256 (hex) of a file, read with one reused buffer (no garbage per chunk). */
async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  const fh = await fs.open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(WRITE_CHUNK_SIZE);
    for (let pos = 0; ; ) {
      signal?.throwIfAborted();
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return hash.digest("hex");
}

async function checkSizes(plan: BundlePlan, partials: string[]): Promise<void> {
  for (const v of plan.volumes) {
    const st = await fs.stat(partials[v.number] as string);
    if (st.size !== v.size) {
      throw new AirlockError("ERR_IO", `internal error: ${partials[v.number]} is ${st.size} bytes, the plan says ${v.size}`);
    }
  }
}

async function allExist(paths: string[]): Promise<boolean> {
  for (const p of paths) {
    try {
      await fs.access(p);
    } catch {
      return false;
    }
  }
  return true;
}

/** Refuses to start when the file system visibly lacks the space (when it can tell). */
async function checkFreeSpace(out: string, size: number, existing: string[]): Promise<void> {
  let available: number;
  try {
    const st = await fs.statfs(dirname(resolve(out)));
    available = Number(st.bavail) * Number(st.bsize);
  } catch {
    return;
  }
  let have = 0;
  for (const p of existing) {
    try {
      const st = await fs.stat(p);
      have += st.blocks * 512;
    } catch {}
  }
  const need = size - have;
  if (need > available) {
    throw new AirlockError("ERR_IO", `not enough space for bundle ${out}: it needs ${need} more bytes, ${dirname(resolve(out))} has ${available} available; free space or write the bundle elsewhere`);
  }
}

/**
 * The error of an export that failed while writing: what went wrong, and that the partial files
 * are kept for a rerun to resume. `abortReason`: the run was stopped (SIGINT, SIGTERM,
 * --command-timeout); the message then starts with the reason's own ("interrupted: …").
 */
function explainFailure(err: unknown, out: string, partials: string[], journal: string, abortReason?: unknown): unknown {
  const kept = `the unfinished bundle is kept as ${partials.join(", ")} (see ${journal}); rerun the same export to resume, or delete those files`;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new AirlockError("ERR_IO", `disk full while writing bundle ${out}; ${kept} after freeing space`, { cause: err });
  }
  if (abortReason !== undefined || isAirlockError(err, "ERR_ABORTED") || (err as Error)?.name === "AbortError") {
    const why = abortReason instanceof Error ? abortReason.message : "interrupted";
    return new AirlockError("ERR_ABORTED", `${why}: ${kept}`, { cause: err });
  }
  if (isAirlockError(err)) {
    return new AirlockError(err.code, `${err.message}; ${kept}`, { cause: err, retryable: err.retryable });
  }
  return new AirlockError("ERR_IO", `writing bundle ${out} failed: ${(err as Error)?.message ?? String(err)}; ${kept}`, { cause: err });
}

/** Removes files of an earlier bundle at the same name that this one does not replace. */
async function removeStale(out: string, split: boolean, count: number): Promise<void> {
  const dir = dirname(resolve(out));
  const base = basename(out);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\.(\d{3,})$/.exec(n.slice(base.length));
    if (!n.startsWith(base) || !m) continue;
    if (!split || Number.parseInt(m[1] as string, 10) >= count) await fs.rm(join(dir, n), { force: true });
  }
  if (split) {
    const st = await fs.lstat(out).catch(() => undefined);
    if (st?.isFile()) await fs.rm(out, { force: true });
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const h = await fs.open(dir, "r");
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // Not every platform can sync a directory (Windows); the files themselves are synced.
  }
}

let cachedVersion: string | undefined;

/** @airlock/core's version, from its package.json (src/ and dist/ are both one level below it). */
async function coreVersion(): Promise<string> {
  if (cachedVersion) return cachedVersion;
  try {
    const pkg = JSON.parse(await fs.readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string };
    cachedVersion = pkg.version ?? "unknown";
  } catch {
    cachedVersion = "unknown";
  }
  return cachedVersion;
}
