/**
 * Reading an image from a registry: the top-level manifest by tag or digest, child manifests by
 * digest, blobs as resumable streams.
 */
import type { Digest } from "../../digest.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import type { DockerReference } from "../../reference/docker.js";
import type { RegistryClient, RegistryClientOptions, Repository } from "../../registry/client.js";
import { acquireRegistryClient, type SharedRegistryClient } from "../../registry/shared.js";
import { RegistryError } from "../../registry/errors.js";
import { dumpBody } from "../../registry/http.js";
import type { ResolvedEndpoint } from "../../registry/registries-conf.js";
import type { BlobReader, GetBlobOptions, ImageSource, SignatureOptions, SignatureSource, SystemContext } from "../types.js";
import { readLookasideSignatures } from "./lookaside.js";
import type { DockerImageReference } from "./reference.js";

/**
 * An image in a registry, opened for reading. Manifests are fetched lazily; the top-level one is
 * cached. Signatures come from the lookaside storage in `ctx.docker.lookaside`, if set.
 */
export class DockerImageSource implements ImageSource, SignatureSource {
  readonly reference: DockerImageReference;
  /** The registry client, shared with other images of the same registry and settings (released by {@link close}). */
  readonly client: RegistryClient;
  private readonly lease: SharedRegistryClient;
  /** The repository the image is in. */
  readonly repository: Repository;
  private topLevel: Promise<Manifest> | undefined;
  private readonly lookaside: string | undefined;

  /**
   * Opens `reference`, read from `location` (where registries.conf sends it: a `location` rewrite
   * or a mirror; default: the reference itself).
   */
  constructor(reference: DockerImageReference, ctx: SystemContext = {}, options: RegistryClientOptions = {}, location: DockerReference = reference.ref) {
    this.reference = reference;
    this.lookaside = ctx.docker?.lookaside;
    this.lease = acquireRegistryClient(location.domain, ctx.docker ?? {}, options);
    this.client = this.lease.client;
    this.repository = this.client.repository(location.path, "pull");
  }

  /**
   * Opens `reference` from the first of `endpoints` (registries.conf's pull sources: mirrors, then
   * the primary) whose registry has its top-level manifest; a mirror that fails in any way (not
   * found, refused, unreachable) passes to the next, as in containers/image. Without mirrors the
   * primary is opened lazily, as always; after failed mirrors it is probed too, and its error
   * also says how the mirrors failed.
   */
  static async open(reference: DockerImageReference, ctx: SystemContext, endpoints: readonly ResolvedEndpoint[]): Promise<DockerImageSource> {
    const failures: string[] = [];
    for (const [i, e] of endpoints.entries()) {
      const src = new DockerImageSource(reference, { ...ctx, docker: e.ctx }, {}, e.ref);
      if (i === endpoints.length - 1 && failures.length === 0) return src;
      try {
        await src.getManifest();
        return src;
      } catch (err) {
        await src.close();
        if (i === endpoints.length - 1) {
          // The primary's own error (its class, code and status kept), told how the mirrors failed.
          if (err instanceof Error) err.message += ` (mirrors also failed: ${failures.join("; ")})`;
          throw err;
        }
        failures.push(`${e.ref.name}: ${(err as Error).message}`);
      }
    }
    return new DockerImageSource(reference, ctx);
  }

  /**
   * The top-level manifest (by the reference's tag or digest) when `digest` is undefined, else
   * the manifest with that digest. Throws ERR_IMAGE_NOT_FOUND when it does not exist; a manifest
   * fetched by digest must hash to it.
   */
  getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    if (digest !== undefined) return this.repository.getParsedManifest(digest, signal);
    if (!this.topLevel) {
      this.topLevel = this.repository.getParsedManifest(this.reference.tagOrDigest, signal);
      this.topLevel.catch(() => {
        this.topLevel = undefined;
      });
    }
    return this.topLevel;
  }

  /** Opens a blob; `offset` starts the read there (a Range request). Cuts mid-body are resumed. */
  async getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    const dl = await this.repository.getBlob(desc.digest, options);
    const size = dl.size ?? (desc.size >= 0 ? desc.size : undefined);
    const out: BlobReader = size === undefined ? { stream: dl.stream } : { stream: dl.stream, size };
    if (dl.start !== (options.offset ?? 0)) out.offset = dl.start;
    return out;
  }

  /**
   * Lists the repository's tags (the optional TagLister feature `inspect` uses for RepoTags). A
   * registry that refuses tag listing (DENIED, or a bare 404 as some cloud registries answer)
   * yields [] instead of an error, as in skopeo.
   */
  async listTags(signal?: AbortSignal): Promise<string[]> {
    try {
      return await this.repository.listTags(signal ? { signal } : {});
    } catch (err) {
      if (err instanceof RegistryError && (err.code === "ERR_DENIED" || (err.status === 404 && err.registryCode === undefined))) return [];
      throw err;
    }
  }

  /**
   * Reads the signatures of the top-level manifest (or of the instance) from the lookaside
   * storage (`ctx.docker.lookaside`); [] when none is configured.
   */
  async getSignatures(options: SignatureOptions = {}): Promise<Uint8Array[]> {
    if (this.lookaside === undefined) return [];
    // A reference pinned by digest names its manifest: no need to fetch it to learn that.
    const digest = options.instanceDigest ?? this.reference.ref.digest ?? (await this.getManifest(undefined, options.signal)).digest;
    const conn = this.lease.client.connection;
    const get = async (url: URL, signal?: AbortSignal) => {
      const { status, body } = await conn.getUnauthenticated(url, signal);
      return { status, body, discard: () => dumpBody(body) };
    };
    return readLookasideSignatures(this.lookaside, this.reference.ref.path, digest, `${digest} of ${this.reference}`, options.signal, get);
  }

  /** Releases the registry client (its connections close when no other image holds it). */
  async close(): Promise<void> {
    await this.lease.release();
  }
}
