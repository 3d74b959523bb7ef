/**
 * The copy pipeline: the only place that decides what moves from an ImageSource to an
 * ImageDestination. It verifies every blob and manifest against the digest it asked for while
 * streaming, skips what the destination already has, and calls the destination in the order the
 * contract requires (blobs, then child manifests, then the index, then commit), so that at no
 * moment does the destination point at content it lacks.
 */
import { pipeline } from "node:stream";
import { type Digest, VerifyingStream } from "../digest.js";
import { AirlockError } from "../errors.js";
import type { Descriptor, Manifest } from "../manifest.js";
import { isManifestMediaType } from "../mediatype.js";
import { formatPlatform, hostPlatform, type Platform, platformMatches } from "../platform.js";
import { limiter, type ProgressListener } from "../progress.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext } from "../transports/types.js";

/** How an index (multi-arch image) is copied, as skopeo's `--multi-arch`. */
export type MultiArch = "system" | "all" | "index-only";

/** Options of {@link copyImage}. */
export interface CopyOptions {
  /** Settings for reading the source. */
  sourceContext?: SystemContext;
  /** Settings for writing the destination. */
  destinationContext?: SystemContext;
  /** `system` (default): the one image for `platform`; `all`: the index and every image; `index-only`: the index alone. */
  multiArch?: MultiArch;
  /** The platform chosen from an index in `system` mode (default: this host's, as --override-os/arch/variant). */
  platform?: Partial<Platform>;
  /** Fail rather than write anything whose digest differs from the source's (`--preserve-digests`). */
  preserveDigests?: boolean;
  /** Blobs copied at once (default 6, as containers/image). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Interval of blob-progress events in milliseconds (default 500). */
  progressIntervalMs?: number;
}

/** What {@link copyImage} did. */
export interface CopyResult {
  /** Digest of the manifest written at the destination's name (the index's with `--all`). */
  digest: Digest;
  mediaType: string;
  blobsCopied: number;
  blobsSkipped: number;
  /** Bytes of blob data moved (not counting skipped blobs). */
  bytesCopied: number;
  /** Manifests (images and indexes) written. */
  manifests: number;
}

/**
 * Copies one image — or an index and its images — from `source` to `destination`, as
 * `skopeo copy` does. Manifests are copied as their exact bytes, so digests never change.
 */
export async function copyImage(source: ImageReference, destination: ImageReference, options: CopyOptions = {}): Promise<CopyResult> {
  options.signal?.throwIfAborted();
  const src = await source.newSource(options.sourceContext);
  try {
    const top = await src.getManifest(undefined, options.signal);
    const dst = await destination.newDestination(options.destinationContext);
    try {
      const result = await new Copier(src, dst, options).run(top);
      await dst.commit(options.signal);
      return result;
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}

class Copier {
  private readonly src: ImageSource;
  private readonly dst: ImageDestination;
  private readonly options: CopyOptions;
  private readonly schedule: <T>(fn: () => Promise<T>) => Promise<T>;
  private readonly name: string;
  /** Blob copies started, by digest, so an index's images that share a blob move it once. */
  private readonly blobs = new Map<string, Promise<void>>();
  private readonly result = { blobsCopied: 0, blobsSkipped: 0, bytesCopied: 0, manifests: 0 };

  constructor(src: ImageSource, dst: ImageDestination, options: CopyOptions) {
    this.src = src;
    this.dst = dst;
    this.options = options;
    this.schedule = limiter(Math.max(1, dst.capabilities.concurrentWrites ? (options.concurrency ?? 6) : 1));
    this.name = src.reference.toString();
  }

  async run(top: Manifest): Promise<CopyResult> {
    this.checkMediaType(top);
    let written: Manifest;
    if (top.isIndex) {
      const mode = this.options.multiArch ?? "system";
      if (mode === "system") {
        const child = await this.childManifest(this.choosePlatform(top));
        await this.copyImageManifest(child, true);
        written = child;
      } else {
        if (!this.dst.capabilities.indexes) {
          throw new AirlockError("ERR_UNSUPPORTED", `${this.dst.reference} cannot store a multi-arch index; copy one platform (drop --all / --multi-arch) or choose another destination`);
        }
        await this.copyIndex(top, mode);
        written = top;
      }
    } else {
      await this.copyImageManifest(top, true);
      written = top;
    }
    return { digest: written.digest, mediaType: written.mediaType, ...this.result };
  }

  private checkMediaType(m: Manifest): void {
    if (!this.dst.capabilities.manifestMediaTypes.includes(m.mediaType)) {
      const why = this.options.preserveDigests ? "and --preserve-digests forbids converting it" : "and airlock does not convert manifest formats yet";
      throw new AirlockError("ERR_UNSUPPORTED", `${this.dst.reference} does not accept ${m.mediaType} manifests (image ${this.name}), ${why}`);
    }
  }

  /** Chooses the index entry for the wanted platform (system mode). */
  private choosePlatform(index: Manifest): Descriptor {
    const host = hostPlatform();
    const want: Platform = { os: this.options.platform?.os ?? host.os, architecture: this.options.platform?.architecture ?? host.architecture };
    const variant = this.options.platform?.variant ?? (this.options.platform?.architecture ? undefined : host.variant);
    if (variant) want.variant = variant;
    const entries = index.index.manifests;
    const match = entries.find((d) => isManifestMediaType(d.mediaType) && platformMatches(want, d.platform));
    if (!match) {
      const have = entries.map((d) => (d.platform ? formatPlatform(d.platform) : "(no platform)")).join(", ");
      throw new AirlockError("ERR_NO_MATCHING_PLATFORM", `${this.name} has no image for ${formatPlatform(want)} (it has: ${have}); choose one with --override-os/--override-arch/--override-variant, or copy them all with --all`);
    }
    return match;
  }

  /** Reads a child manifest and checks it is exactly the one the index names. */
  private async childManifest(desc: Descriptor): Promise<Manifest> {
    const m = await this.src.getManifest(desc.digest, this.options.signal);
    if (m.digest !== desc.digest) {
      throw new AirlockError("ERR_DIGEST_MISMATCH", `manifest ${desc.digest} of ${this.name}: content has digest ${m.digest}; the source is corrupt`);
    }
    if (m.bytes.length !== desc.size) {
      throw new AirlockError("ERR_SIZE_MISMATCH", `manifest ${desc.digest} of ${this.name}: ${m.bytes.length} bytes, the index says ${desc.size}`);
    }
    this.checkMediaType(m);
    return m;
  }

  private async copyIndex(index: Manifest, mode: "all" | "index-only"): Promise<void> {
    const children = index.index.manifests;
    if (mode === "index-only") {
      for (const d of children) {
        if (!(await this.dst.hasManifest(d.digest, this.options.signal))) {
          throw new AirlockError("ERR_DESTINATION", `--multi-arch=index-only: ${this.dst.reference} lacks ${d.digest}${d.platform ? ` (${formatPlatform(d.platform)})` : ""} listed by the index of ${this.name}; copy the images first, or use --all`);
        }
      }
    } else {
      // Read every child first (small), so a corrupt or unsupported one fails before any blob moves.
      const manifests: Manifest[] = [];
      for (const d of children) manifests.push(await this.childManifest(d));
      await Promise.all(manifests.map((m) => (m.isIndex ? this.copyIndex(m, mode).then(() => this.putManifest(m, false)) : this.copyImageManifest(m, false))));
    }
    await this.putManifest(index, true);
  }

  /** Copies an image manifest's blobs, then the manifest. */
  private async copyImageManifest(m: Manifest, topLevel: boolean): Promise<void> {
    if (!topLevel && (await this.dst.hasManifest(m.digest, this.options.signal))) {
      // Destinations store a manifest only after its blobs, so its blobs are there too.
      for (const b of m.blobs()) this.skipped(b, "manifest already present");
      return;
    }
    await Promise.all(m.blobs().map((b) => this.copyBlob(b)));
    await this.putManifest(m, topLevel);
  }

  private async putManifest(m: Manifest, topLevel: boolean): Promise<void> {
    this.options.signal?.throwIfAborted();
    await this.dst.putManifest(m, { topLevel, signal: this.options.signal });
    this.result.manifests++;
    this.options.onProgress?.({ type: "manifest", image: this.name, digest: m.digest, mediaType: m.mediaType, topLevel });
  }

  private skipped(desc: Descriptor, reason: string): void {
    this.result.blobsSkipped++;
    this.options.onProgress?.({ type: "blob-skipped", image: this.name, digest: desc.digest, size: desc.size, reason });
  }

  private copyBlob(desc: Descriptor): Promise<void> {
    let p = this.blobs.get(desc.digest);
    if (!p) {
      p = this.schedule(() => this.copyBlobNow(desc));
      this.blobs.set(desc.digest, p);
    }
    return p;
  }

  private async copyBlobNow(desc: Descriptor): Promise<void> {
    const { signal, onProgress } = this.options;
    signal?.throwIfAborted();
    if (await this.dst.tryReuseBlob(desc, signal)) {
      this.skipped(desc, "already exists");
      return;
    }
    onProgress?.({ type: "blob-start", image: this.name, digest: desc.digest, size: desc.size, mediaType: desc.mediaType });
    const { stream } = await this.src.getBlob(desc, { signal });
    const verifier = new VerifyingStream({ digest: desc.digest, size: desc.size }, `blob ${desc.digest} of ${this.name}`);
    const verified = pipeline(stream, verifier, () => {});
    const timer = onProgress
      ? setInterval(() => onProgress({ type: "blob-progress", image: this.name, digest: desc.digest, bytes: verifier.bytes, size: desc.size }), this.options.progressIntervalMs ?? 500)
      : undefined;
    try {
      await this.dst.putBlob(desc, verified, signal);
    } catch (err) {
      verified.destroy();
      // A verification failure is the real cause even when the destination reports it differently.
      throw verifier.errored ?? err;
    } finally {
      if (timer) clearInterval(timer);
    }
    if (verifier.errored) throw verifier.errored;
    if (!verifier.readableEnded) {
      throw new AirlockError("ERR_DESTINATION", `${this.dst.reference} accepted blob ${desc.digest} without reading all of it`);
    }
    this.result.blobsCopied++;
    this.result.bytesCopied += desc.size;
    onProgress?.({ type: "blob-done", image: this.name, digest: desc.digest, size: desc.size });
  }
}
