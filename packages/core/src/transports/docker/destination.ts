/**
 * Writing an image to a registry. Blobs are reused (HEAD), mounted from another repository of the
 * same registry (the source's, or one where an earlier run saw the blob: registry/blob-locations.ts),
 * or uploaded; manifests are pushed by digest as they come, and the top-level one by its tag —
 * the only thing that makes the image visible under its name — only in `commit()`.
 */
import type { Readable } from "node:stream";
import type { Digest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import { MANIFEST_MEDIA_TYPES } from "../../mediatype.js";
import type { DockerReference } from "../../reference/docker.js";
import type { RegistryClient, RegistryClientOptions, Repository } from "../../registry/client.js";
import { BlobLocations } from "../../registry/blob-locations.js";
import { acquireRegistryClient, type SharedRegistryClient } from "../../registry/shared.js";
import type { BlobMountTarget, DestinationCapabilities, ImageDestination, ImageReference, PutBlobOptions, PutManifestOptions, SignatureDestination, SignatureOptions, SystemContext } from "../types.js";
import { isWritableLookaside, writeLookasideSignatures } from "./lookaside.js";
import { DockerImageReference } from "./reference.js";

/**
 * A repository in a registry, opened for writing an image under the reference's tag or digest.
 * It stores signatures when `ctx.docker.lookasideStaging` is a `file://` lookaside location.
 */
export class DockerImageDestination implements ImageDestination, BlobMountTarget, SignatureDestination {
  readonly reference: DockerImageReference;
  readonly capabilities: DestinationCapabilities;
  /** The registry client, shared with other images of the same registry and settings (released by {@link close}). */
  readonly client: RegistryClient;
  private readonly lease: SharedRegistryClient;
  /** The repository written to. */
  readonly repository: Repository;
  private mountFrom: string | undefined;
  private topLevel: Manifest | undefined;
  private committed = false;
  private readonly lookasideStaging: string | undefined;
  /** Where blobs were seen before, across runs (undefined when turned off). */
  private readonly locations = BlobLocations.shared();
  /** Where the image is written: the reference, or registries.conf's `location` for it. */
  private readonly location: DockerReference;

  /** Opens `reference` for writing at `location` (registries.conf's rewrite of it; default: the reference itself). */
  constructor(reference: DockerImageReference, ctx: SystemContext = {}, options: RegistryClientOptions = {}, location: DockerReference = reference.ref) {
    this.reference = reference;
    this.location = location;
    this.lookasideStaging = ctx.docker?.lookasideStaging;
    this.capabilities = { manifestMediaTypes: MANIFEST_MEDIA_TYPES, concurrentWrites: true, indexes: true, signatures: isWritableLookaside(this.lookasideStaging) };
    this.lease = acquireRegistryClient(location.domain, ctx.docker ?? {}, options);
    this.client = this.lease.client;
    this.repository = this.client.repository(location.path, "push");
  }

  /** Mount blobs from `source` when it is another repository of the same registry. */
  setMountSource(source: ImageReference): void {
    if (!(source instanceof DockerImageReference)) return;
    const s = source.ref;
    const d = this.location;
    this.mountFrom = s.domain === d.domain && s.path !== d.path ? s.path : undefined;
  }

  /** The repository blobs are mounted from, if any. */
  get mountSource(): string | undefined {
    return this.mountFrom;
  }

  /**
   * True when the blob is in the repository already (HEAD), or was mounted from the mount source
   * or from a repository of this registry where an earlier run saw it (at most two tried; a
   * refused mount is only a miss).
   */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    const { domain, path } = this.location;
    const size = await this.repository.headBlob(desc.digest, signal);
    if (size !== undefined && (size < 0 || desc.size < 0 || size === desc.size)) return this.holds(desc.digest);
    if (this.mountFrom !== undefined && (await this.repository.mountBlob(desc.digest, this.mountFrom, signal))) return this.holds(desc.digest);
    for (const from of this.locations?.candidates(domain, desc.digest, path).filter((r) => r !== this.mountFrom).slice(0, 2) ?? []) {
      let mounted = false;
      try {
        mounted = await this.repository.mountBlob(desc.digest, from, signal);
      } catch (err) {
        if (signal?.aborted) throw err;
      }
      if (mounted) return this.holds(desc.digest);
      this.locations?.forget(domain, from, desc.digest);
    }
    return false;
  }

  /** Records that the repository now holds `digest`; returns true. */
  private holds(digest: Digest): true {
    this.locations?.record(this.location.domain, this.location.path, digest);
    return true;
  }

  /**
   * Uploads the blob from `stream` (already being verified by the copy pipeline; the registry
   * checks the digest too). `options.reopen` lets a retry re-read bytes instead of keeping them;
   * `options.session` lets a chunked upload be continued by a later run.
   */
  async putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal, options?: PutBlobOptions): Promise<void> {
    await this.repository.putBlob(desc, stream, signal, options);
    this.holds(desc.digest);
  }

  /** True when a manifest with `digest` is stored in the repository (HEAD). */
  async hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    return (await this.repository.headManifest(digest, signal)) !== undefined;
  }

  /**
   * Pushes a manifest by its digest. The top-level one must match the reference's digest, when it
   * has one; for a reference with a tag it is pushed once, by that tag, in {@link commit} (as
   * skopeo does: a PUT by tag stores the manifest too, and one PUT fewer per image).
   */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    if (options.topLevel) {
      const want = this.reference.ref.digest;
      if (want !== undefined && want !== manifest.digest) {
        throw new AirlockError(
          "ERR_DIGEST_MISMATCH",
          `writing ${this.reference}: the image's manifest has digest ${manifest.digest}, not the ${want} the destination reference names; push by tag instead, or copy the image with that digest`,
        );
      }
      this.topLevel = manifest;
      if (this.reference.ref.tag !== undefined) return;
    }
    await this.repository.putManifest(manifest.digest, manifest.bytes, manifest.mediaType, options.signal);
  }

  /**
   * Writes the signatures of the top-level manifest (or of the instance) to the lookaside
   * staging location, replacing those stored there for that manifest; an empty list changes
   * nothing (as containers/image).
   */
  async putSignatures(signatures: readonly Uint8Array[], options: SignatureOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const digest = options.instanceDigest ?? this.topLevel?.digest;
    if (digest === undefined) throw new AirlockError("ERR_DESTINATION", `cannot store signatures for ${this.reference} before its manifest`);
    if (signatures.length === 0) return;
    if (this.lookasideStaging === undefined) {
      throw new AirlockError("ERR_UNSUPPORTED", `cannot store signatures for ${this.reference}: no lookaside storage is configured for it in registries.d`);
    }
    await writeLookasideSignatures(this.lookasideStaging, this.reference.ref.path, digest, signatures, `${digest} of ${this.reference}`);
  }

  /** Tags the top-level manifest (for a reference by tag); an image pushed by digest is complete already. */
  async commit(signal?: AbortSignal): Promise<void> {
    const m = this.topLevel;
    if (!m) throw new AirlockError("ERR_DESTINATION", `committing ${this.reference}: no top-level manifest was written`);
    const tag = this.reference.ref.tag;
    if (tag !== undefined) {
      const stored = await this.repository.putManifest(tag, m.bytes, m.mediaType, signal);
      // Pushed by tag, the manifest is checked against its digest here (by digest, the registry checks it).
      if (stored?.startsWith(`${m.digest.split(":")[0]}:`) && stored !== m.digest) {
        throw new AirlockError("ERR_DIGEST_MISMATCH", `writing ${this.reference}: the registry stored the manifest as ${stored}, not ${m.digest}; it changed the manifest, so the image's digest would not be kept`);
      }
    }
    this.committed = true;
  }

  /** Whether {@link commit} succeeded. */
  get isCommitted(): boolean {
    return this.committed;
  }

  /** Saves where blobs were seen, and releases the registry client (its connections close when no other image holds it). */
  async close(): Promise<void> {
    await this.locations?.flush();
    await this.lease.release();
  }
}
