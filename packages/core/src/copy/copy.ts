/**
 * The copy pipeline: the only place that decides what moves from an ImageSource to an
 * ImageDestination. It verifies every blob and manifest against the digest it asked for while
 * streaming, skips what the destination already has, and calls the destination in the order the
 * contract requires (blobs, then child manifests, then the index, then signatures, then commit),
 * so that at no moment does the destination point at content it lacks.
 *
 * Signatures are opaque bytes here: the pipeline reads them from a source that has them, hands
 * them to a trust-policy callback before any blob is read (and before the destination is even
 * opened), copies them, and stores a new one made by a signing callback. The OpenPGP work is the
 * caller's (the CLI passes functions built on @airlock/sign).
 */
import { type ConversionOptions, type ConverterContext, ImageConverter } from "../convert/convert.js";
import { Schema1Converter } from "../convert/schema1.js";
import type { Digest } from "../digest.js";
import { AirlockError } from "../errors.js";
import type { Descriptor, Manifest } from "../manifest.js";
import { isManifestMediaType } from "../mediatype.js";
import { formatPlatform, hostPlatform, type Platform, platformMatches } from "../platform.js";
import { limiter, type ProgressListener } from "../progress.js";
import type { Throttle } from "../throttle.js";
import { putVerifiedBlob } from "./blob.js";
import { canStoreSignatures, type ImageDestination, type ImageReference, type ImageSource, isBlobMountTarget, isSignatureSource, type SystemContext } from "../transports/types.js";

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
  /** Run-wide limits shared with other copies (`--max-parallel` per registry, `--rate-limit`); see throttle.ts. */
  throttle?: Throttle;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Interval of blob-progress events in milliseconds (default 500). */
  progressIntervalMs?: number;
  /** Do not copy the source's signatures (`--remove-signatures`); they are still read for `checkPolicy`. */
  removeSignatures?: boolean;
  /**
   * Checks a source image against a trust policy: called for the image that will be written under
   * the destination's name (with `--all`, for the index and then each image it lists) after its
   * manifest and signatures are read, BEFORE any blob is read and before the destination is
   * opened. Throwing refuses the image: the copy then writes nothing.
   */
  checkPolicy?: (image: PolicyCheck) => Promise<void>;
  /**
   * Signs the manifest written under the destination's name (`--sign-by-key`): called with its
   * exact bytes and the identity to sign; returns the signature blob to store beside the copied
   * ones. The copy fails before moving anything when the destination cannot store signatures.
   */
  sign?: (manifest: Uint8Array, dockerReference: string) => Promise<Uint8Array>;
  /** The identity `sign` signs (`--sign-identity`); default the destination's Docker reference. */
  signIdentity?: string;
  /**
   * Manifest and layer conversion asked for (`--format`, `--dest-compress-format`,
   * `--dest-compress`, `--dest-decompress`); see convert/convert.ts. Without it an image is still
   * converted when the destination requires it (a manifest type it does not take, docker-archive's
   * uncompressed layers, or — from containers-storage, whose layers are uncompressed tars under
   * their original compressed media types — gzip layers for any destination but dir:,
   * containers-storage and docker-daemon). A converted manifest has a new digest: a `warning` event says so.
   */
  convert?: ConversionOptions;
}

/** What {@link CopyOptions.checkPolicy} is asked about. */
export interface PolicyCheck {
  /** The source image (its transport, path or Docker reference). */
  reference: ImageReference;
  /** The manifest to be copied, already checked against the digest that named it. */
  manifest: Manifest;
  /** Its signatures as the source stores them: untrusted bytes ([] when there are none). */
  signatures: readonly Uint8Array[];
  /** The manifest's digest when it is an image listed by the source's top-level index. */
  instanceDigest?: Digest;
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
  /** Signatures stored at the destination (copied and new). */
  signatures: number;
}

/**
 * Copies one image — or an index and its images — from `source` to `destination`, as
 * `skopeo copy` does. Manifests are copied as their exact bytes, so digests never change — unless
 * a conversion is asked for (`options.convert`) or the image needs one for the destination (see convert/).
 */
export async function copyImage(source: ImageReference, destination: ImageReference, options: CopyOptions = {}): Promise<CopyResult> {
  options.signal?.throwIfAborted();
  const src = await source.newSource(options.sourceContext);
  try {
    const top = await src.getManifest(undefined, options.signal);
    const copier = new Copier(src, options);
    // Everything decided from the source alone — the trust policy included — before the destination is opened.
    const plan = await copier.plan(top);
    const dst = await destination.newDestination(options.destinationContext);
    try {
      // Within one registry, blobs are mounted from the source repository instead of uploaded.
      if (isBlobMountTarget(dst)) dst.setMountSource(source);
      const result = await copier.run(plan, dst);
      await dst.commit(options.signal).catch((err: unknown) => {
        throw copier.commitFailed(err);
      });
      return result;
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}

/** What a copy will write, decided from the source before the destination is opened. */
interface CopyPlan {
  top: Manifest;
  /** The manifest written under the destination's name: `top`, or the image chosen from it. */
  written: Manifest;
  /** The signatures to store for `written`, and (with --all) for each image the index lists, by digest. */
  signatures: readonly Uint8Array[];
  instanceSignatures: Map<Digest, readonly Uint8Array[]>;
}

class Copier {
  private readonly src: ImageSource;
  private dst!: ImageDestination;
  private readonly options: CopyOptions;
  private schedule!: <T>(fn: () => Promise<T>) => Promise<T>;
  private readonly name: string;
  /** Blob copies started, by digest, so an index's images that share a blob move it once. */
  private readonly blobs = new Map<string, Promise<void>>();
  /** Child manifests read (and checked) while planning, by digest. */
  private readonly children = new Map<Digest, Manifest>();
  /** The digest of the manifest put under the destination's name. */
  private putTopLevel: Digest | undefined;
  /** Conversion (convert/): plans and makes the changes an image needs for the destination. */
  private converter!: ImageConverter;
  /** Copies (and converts) Docker schema 1 images (convert/schema1.ts). */
  private schema1!: Schema1Converter;
  /** The manifest put under the destination's name (converted or not). */
  private writtenTop: Manifest | undefined;
  private readonly result = { blobsCopied: 0, blobsSkipped: 0, bytesCopied: 0, manifests: 0, signatures: 0 };

  constructor(src: ImageSource, options: CopyOptions) {
    this.src = src;
    this.options = options;
    this.name = src.reference.toString();
  }

  /**
   * Chooses what to write, reads the signatures of what will be written and checks the trust
   * policy on it, reading manifests and signatures only (containers/image: "keep this policy
   * check BEFORE reading any other information about the image").
   */
  async plan(top: Manifest): Promise<CopyPlan> {
    const mode = this.options.multiArch ?? "system";
    let written = top;
    const instances: Manifest[] = [];
    if (top.isIndex && mode === "system") {
      written = await this.childManifest(this.choosePlatform(top));
    } else if (top.isIndex && mode === "all") {
      // The images an index lists, read at once (small requests), kept in the index's order.
      for (const child of await Promise.all(top.index.manifests.map((d) => this.childManifest(d)))) {
        this.children.set(child.digest, child);
        instances.push(child);
      }
    }
    const signatures = await this.sourceSignatures(written, written === top ? undefined : written.digest);
    const instanceSignatures = new Map<Digest, readonly Uint8Array[]>();
    for (const m of instances) instanceSignatures.set(m.digest, await this.sourceSignatures(m, m.digest));
    return {
      top,
      written,
      signatures: this.options.removeSignatures ? [] : signatures,
      instanceSignatures: this.options.removeSignatures ? new Map() : instanceSignatures,
    };
  }

  /** Reads the signatures of one manifest (when they are needed) and checks the policy on them. */
  private async sourceSignatures(manifest: Manifest, instanceDigest: Digest | undefined): Promise<readonly Uint8Array[]> {
    const { checkPolicy, removeSignatures, signal } = this.options;
    if (!checkPolicy && removeSignatures) return [];
    const options = instanceDigest === undefined ? { signal } : { instanceDigest, signal };
    const signatures = isSignatureSource(this.src) ? await this.src.getSignatures(options) : [];
    if (checkPolicy) {
      const check: PolicyCheck = { reference: this.src.reference, manifest, signatures };
      if (instanceDigest !== undefined) check.instanceDigest = instanceDigest;
      await checkPolicy(check);
    }
    return signatures;
  }

  /** Copies what `plan` says into `dst`, signatures last (commit is the caller's). */
  async run(plan: CopyPlan, dst: ImageDestination): Promise<CopyResult> {
    this.dst = dst;
    this.schedule = limiter(Math.max(1, dst.capabilities.concurrentWrites ? (this.options.concurrency ?? 6) : 1));
    const { top } = plan;
    const identity = this.signatureIdentity();
    const hasSignatures = plan.signatures.length > 0 || [...plan.instanceSignatures.values()].some((s) => s.length > 0);
    if ((hasSignatures || this.options.sign) && !canStoreSignatures(dst)) {
      const registry = dst.reference.transport.name === "docker" ? "; a registry keeps signatures in lookaside storage: configure a lookaside-staging: file:///… location for it in registries.d" : "";
      throw new AirlockError(
        "ERR_UNSUPPORTED",
        hasSignatures
          ? `Can not copy signatures to ${dst.reference}: the destination cannot store signatures${registry}; or pass --remove-signatures to copy the image without them`
          : `Can not sign the image written to ${dst.reference}: the destination cannot store signatures${registry}`,
      );
    }
    this.converter = this.newConverter(hasSignatures);
    // In system mode the index itself is not written: only the image chosen from it is checked.
    if (!top.isIndex || (this.options.multiArch ?? "system") !== "system") this.checkMediaType(top);
    if (top.isIndex) {
      const mode = this.options.multiArch ?? "system";
      if (mode === "system") {
        this.checkMediaType(plan.written);
        await this.copyImageManifest(plan.written, true);
      } else {
        if (!this.dst.capabilities.indexes) {
          throw new AirlockError("ERR_UNSUPPORTED", `${this.dst.reference} cannot store a multi-arch index; copy one platform (drop --all / --multi-arch) or choose another destination`);
        }
        await this.copyIndex(top, mode, true);
      }
    } else {
      await this.copyImageManifest(top, true);
    }
    const written = this.writtenTop ?? plan.written;
    await this.storeSignatures(plan, identity);
    return { digest: written.digest, mediaType: written.mediaType, ...this.result };
  }

  /** The converter of this copy, sharing the copy's blob path, limiter and counters. */
  private newConverter(hasSignatures: boolean): ImageConverter {
    const { preserveDigests, removeSignatures, signal, onProgress, destinationContext } = this.options;
    const keepDigests = preserveDigests
      ? '"Instructed to preserve digests" (--preserve-digests)'
      : hasSignatures && !removeSignatures
        ? '"Would invalidate signatures" (the source is signed; add --remove-signatures to copy it without its signatures)'
        : this.options.sign
          ? '"Would invalidate signatures" (a signature made while copying names the source\'s manifest digest)'
          : undefined;
    const ctx: ConverterContext = {
      src: this.src,
      dst: this.dst,
      options: this.options.convert ?? {},
      keepDigests,
      image: this.name,
      tmpDir: destinationContext?.tmpDir,
      signal,
      onProgress,
      copyBlob: (d) => this.copyBlob(d),
      schedule: this.options.throttle ? (fn) => this.schedule(() => (this.options.throttle as Throttle).transfer([this.src.reference, this.dst.reference], fn)) : this.schedule,
      throttle: this.options.throttle,
      copied: (size) => {
        this.result.blobsCopied++;
        this.result.bytesCopied += size;
      },
      skipped: (d, reason) => this.skipped(d, reason),
    };
    this.schema1 = new Schema1Converter(ctx);
    return new ImageConverter(ctx);
  }

  /** Reports a manifest written with another digest than the source's. */
  private converted(from: Manifest, to: Manifest, reason: string): void {
    this.options.onProgress?.({ type: "warning", image: this.name, message: `${this.name}: manifest digest changed from ${from.digest} to ${to.digest}: ${reason}` });
  }

  /** The identity to sign, checked before anything moves; undefined when not signing. */
  private signatureIdentity(): string | undefined {
    if (!this.options.sign) return undefined;
    const identity = this.options.signIdentity ?? this.dst.reference.dockerReference();
    if (identity === undefined) {
      throw new AirlockError(
        "ERR_INVALID_ARGUMENT",
        `cannot sign the image written to ${this.dst.reference}: it has no Docker reference to sign; name the identity with --sign-identity HOST/REPOSITORY:TAG`,
      );
    }
    return identity;
  }

  /** Stores the copied signatures of each image and of the written manifest, plus a new one when signing. */
  private async storeSignatures(plan: CopyPlan, identity: string | undefined): Promise<void> {
    const { signal } = this.options;
    const signatures = [...plan.signatures];
    if (this.options.sign && identity !== undefined) {
      // A signature names a manifest digest: sign only bytes that are exactly the source's.
      if (this.putTopLevel !== plan.written.digest) {
        throw new AirlockError(
          "ERR_DIGEST_MISMATCH",
          `cannot sign the image written to ${this.dst.reference}: its manifest digest would change (${plan.written.digest} → ${this.putTopLevel ?? "none"}), and a signature must name the source's digest`,
        );
      }
      signatures.push(await this.options.sign(plan.written.bytes, identity));
    }
    if (!canStoreSignatures(this.dst)) return;
    for (const [instanceDigest, sigs] of plan.instanceSignatures) {
      if (sigs.length === 0) continue;
      await this.dst.putSignatures(sigs, { instanceDigest, signal });
      this.result.signatures += sigs.length;
    }
    if (signatures.length > 0) {
      await this.dst.putSignatures(signatures, { signal });
      this.result.signatures += signatures.length;
    }
  }

  /** Checks that `m` can be written, as it is or converted (convert/; ERR_UNSUPPORTED otherwise). */
  private checkMediaType(m: Manifest): void {
    if (m.isSchema1) this.schema1.target(m);
    else this.converter.checkWritable(m);
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

  /** Reads a child manifest (once) and checks it is exactly the one the index names. */
  private async childManifest(desc: Descriptor): Promise<Manifest> {
    const m = this.children.get(desc.digest) ?? (await this.src.getManifest(desc.digest, this.options.signal));
    if (m.digest !== desc.digest) {
      throw new AirlockError("ERR_DIGEST_MISMATCH", `manifest ${desc.digest} of ${this.name}: content has digest ${m.digest}; the source is corrupt`);
    }
    if (m.bytes.length !== desc.size) {
      throw new AirlockError("ERR_SIZE_MISMATCH", `manifest ${desc.digest} of ${this.name}: ${m.bytes.length} bytes, the index says ${desc.size}`);
    }
    return m;
  }

  /** Copies an index's images (mode all) and the index; returns the index written (converted when its images were). */
  private async copyIndex(index: Manifest, mode: "all" | "index-only", topLevel: boolean): Promise<Manifest> {
    const children = index.index.manifests;
    const written = new Map<Digest, Manifest>();
    if (mode === "index-only") {
      for (const d of children) {
        if (!(await this.dst.hasManifest(d.digest, this.options.signal))) {
          throw new AirlockError("ERR_DESTINATION", `--multi-arch=index-only: ${this.dst.reference} lacks ${d.digest}${d.platform ? ` (${formatPlatform(d.platform)})` : ""} listed by the index of ${this.name}; copy the images first, or use --all`);
        }
      }
    } else {
      // Read every child first (small), so a corrupt or unsupported one fails before any blob moves.
      const manifests = await Promise.all(children.map((d) => this.childManifest(d)));
      for (const m of manifests) this.checkMediaType(m);
      await Promise.all(manifests.map(async (m) => written.set(m.digest, m.isIndex ? await this.copyIndex(m, mode, false) : await this.copyImageManifest(m, false))));
    }
    const out = this.converter.convertIndex(index, written) ?? index;
    await this.putManifest(out, topLevel);
    if (out !== index) this.converted(index, out, `its images were converted${out.mediaType !== index.mediaType ? `, and the index to ${out.mediaType}` : ""}`);
    return out;
  }

  /** Copies an image manifest's blobs, then the manifest; returns the manifest written (converted when needed). */
  private async copyImageManifest(m: Manifest, topLevel: boolean): Promise<Manifest> {
    if (m.isSchema1) {
      const { manifest, reason } = await this.schema1.copy(m);
      await this.putManifest(manifest, topLevel).catch((err: unknown) => {
        throw manifest === m ? this.schema1.refused(m, err) : err;
      });
      if (manifest !== m) this.converted(m, manifest, reason ?? "converted");
      return manifest;
    }
    const plan = this.converter.planImage(m);
    if (plan) {
      const out = await this.converter.convertImage(m, plan);
      await this.putManifest(out, topLevel);
      this.converted(m, out, plan.reason);
      return out;
    }
    if (!topLevel && (await this.dst.hasManifest(m.digest, this.options.signal))) {
      // Destinations store a manifest only after its blobs, so its blobs are there too.
      for (const b of m.blobs()) this.skipped(b, "manifest already present");
      return m;
    }
    await Promise.all(m.blobs().map((b) => this.copyBlob(b)));
    await this.putManifest(m, topLevel);
    return m;
  }

  private async putManifest(m: Manifest, topLevel: boolean): Promise<void> {
    this.options.signal?.throwIfAborted();
    await this.dst.putManifest(m, { topLevel, signal: this.options.signal });
    if (topLevel) this.putTopLevel = m.digest;
    if (topLevel) this.writtenTop = m;
    this.result.manifests++;
    this.options.onProgress?.({ type: "manifest", image: this.name, digest: m.digest, mediaType: m.mediaType, topLevel });
  }

  /**
   * The error to report when committing failed: a registry stores a tagged image's top-level
   * manifest only then (pushed by its tag), so a refusal of that manifest surfaces here.
   */
  commitFailed(err: unknown): unknown {
    return this.writtenTop?.isSchema1 ? this.schema1.refused(this.writtenTop, err) : err;
  }

  private skipped(desc: Descriptor, reason: string): void {
    this.result.blobsSkipped++;
    this.options.onProgress?.({ type: "blob-skipped", image: this.name, digest: desc.digest, size: desc.size, reason });
  }

  private copyBlob(desc: Descriptor): Promise<void> {
    let p = this.blobs.get(desc.digest);
    if (!p) {
      const throttle = this.options.throttle;
      p = this.schedule(() => (throttle ? throttle.transfer([this.src.reference, this.dst.reference], () => this.copyBlobNow(desc)) : this.copyBlobNow(desc)));
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
    const { stream, size } = await this.src.getBlob(desc, { signal });
    // A schema 1 manifest gives no layer sizes: take the one the source knows.
    const d = desc.size < 0 && size !== undefined ? { ...desc, size } : desc;
    await putVerifiedBlob(this.dst, d, this.options.throttle?.stream(stream, signal) ?? stream, { what: `blob ${desc.digest} of ${this.name}`, image: this.name, signal, onProgress, progressIntervalMs: this.options.progressIntervalMs });
    this.result.blobsCopied++;
    this.result.bytesCopied += Math.max(0, d.size);
  }
}
