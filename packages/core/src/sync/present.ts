/**
 * Is an image already at its destination? `sync` answers without moving a blob: it learns the
 * digest of the manifest a copy would write under the destination name (a HEAD of the source
 * manifest for a registry, reading the manifest for a local source) and compares it with the
 * digest the destination holds under that name (a HEAD by tag for a registry; `manifest.json` of a
 * `dir:` image; the index.json entry of an OCI layout). Equal digests mean equal manifest bytes,
 * and every destination stores a manifest only after its blobs, so the image is complete there.
 *
 * skopeo's `OptimizeDestinationImageAlreadyExists` GETs both manifests for the same answer; a HEAD
 * does not count as a pull on Docker Hub or in Harbor (containers/skopeo#1516, #2111).
 */
import { join } from "node:path";
import { type Digest, digestOf, isDigest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { readSmallFile } from "../layout/files.js";
import { parseLayoutIndex, refName } from "../layout/layout.js";
import type { Descriptor, Manifest } from "../manifest.js";
import { MAX_MANIFEST_SIZE } from "../manifest.js";
import { isIndex, isManifestMediaType } from "../mediatype.js";
import { hostPlatform, type Platform, platformMatches } from "../platform.js";
import type { RegistryClient } from "../registry/client.js";
import { resolveRegistryEndpoints } from "../registry/registries-conf.js";
import { acquireRegistryClient, type SharedRegistryClient } from "../registry/shared.js";
import { DirReference } from "../transports/dir/reference.js";
import { DIR_MANIFEST_FILE } from "../transports/dir/format.js";
import { DockerImageReference } from "../transports/docker/reference.js";
import { OciReference } from "../transports/oci/reference.js";
import type { DockerContext, ImageReference, SystemContext } from "../transports/types.js";

/**
 * The registry clients of a sync: one per registry and settings, shared (registry/shared.ts) with
 * the copies the sync runs while the pool holds them, so a whole sync pings and authenticates once
 * per registry. {@link close} at the end.
 */
export class RegistryClientPool {
  private readonly byContext = new Map<DockerContext | undefined, Map<string, SharedRegistryClient>>();

  /** The client for `domain` with the registry settings `docker`. */
  get(domain: string, docker: DockerContext | undefined): RegistryClient {
    let m = this.byContext.get(docker);
    if (!m) {
      m = new Map();
      this.byContext.set(docker, m);
    }
    let c = m.get(domain);
    if (!c) {
      c = acquireRegistryClient(domain, docker ?? {});
      m.set(domain, c);
    }
    return c.client;
  }

  /** Releases every client. */
  async close(): Promise<void> {
    const all = [...this.byContext.values()].flatMap((m) => [...m.values()]);
    this.byContext.clear();
    await Promise.all(all.map((c) => c.release().catch(() => {})));
  }
}

/** Which manifest a copy writes under the destination name when the source is an index. */
export interface InstanceChoice {
  /** `system`: the one image for `platform`; `all`: the index itself. */
  multiArch: "system" | "all";
  /** The platform chosen in `system` mode (default: this host's, as copyImage). */
  platform?: Partial<Platform>;
  /** In `all` mode, platforms the caller wants to check the index for: the index is then read (one GET). */
  platforms?: readonly Platform[];
}

/**
 * The entry of `index` that copyImage's `system` mode copies for `platform` — the same rule:
 * os and architecture default to the host's, the variant to the host's only when no architecture
 * was given. Undefined when no entry matches (the copy then fails with the reason).
 */
export function chooseInstance(index: Manifest, platform: Partial<Platform> = {}): Descriptor | undefined {
  const host = hostPlatform();
  const want: Platform = { os: platform.os ?? host.os, architecture: platform.architecture ?? host.architecture };
  const variant = platform.variant ?? (platform.architecture ? undefined : host.variant);
  if (variant) want.variant = variant;
  return index.index.manifests.find((d) => isManifestMediaType(d.mediaType) && platformMatches(want, d.platform));
}

/** What the source side of a check found. */
export interface SourceDigest {
  /** The digest a copy would write under the destination name; undefined when it cannot be known cheaply. */
  digest?: Digest;
  /** The source's top-level manifest when it was read (an index, or a local source). */
  top?: Manifest;
}

/**
 * The digest of the manifest a copy of `source` writes under its destination name: the top-level
 * manifest's, or in `system` mode the chosen image's when the source is an index. A registry
 * source costs one HEAD (plus one GET of the index in `system` mode); a local one, one read.
 */
export async function sourceDigest(source: ImageReference, ctx: SystemContext | undefined, choice: InstanceChoice, pool: RegistryClientPool, signal?: AbortSignal): Promise<SourceDigest> {
  // registries.conf: blocked, insecure and location apply here too; with mirrors, the general path below.
  const endpoints = source instanceof DockerImageReference ? await resolveRegistryEndpoints(source.ref, ctx?.docker ?? {}, "pull") : [];
  if (source instanceof DockerImageReference && endpoints.length === 1 && endpoints[0]) {
    const { ref, ctx: docker } = endpoints[0];
    const repo = pool.get(ref.domain, docker).repository(ref.path, "pull");
    const head = await repo.headManifest(source.tagOrDigest, signal);
    if (head === undefined) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `reading manifest ${source.tagOrDigest} of ${source.ref.name}: manifest unknown; check the tag or digest`);
    const headDigest = head.digest !== undefined && isDigest(head.digest) ? head.digest : undefined;
    if (headDigest !== undefined && head.mediaType !== undefined && isManifestMediaType(head.mediaType) && (!isIndex(head.mediaType) || (choice.multiArch === "all" && !choice.platforms?.length))) {
      return { digest: headDigest };
    }
    // An index in system mode or to check for platforms (or a HEAD that said too little): read it.
    const top = await repo.getParsedManifest(headDigest ?? source.tagOrDigest, signal);
    return { digest: pick(top, choice), top };
  }
  const src = await source.newSource(ctx);
  try {
    const top = await src.getManifest(undefined, signal);
    return { digest: pick(top, choice), top };
  } finally {
    await src.close();
  }
}

function pick(top: Manifest, choice: InstanceChoice): Digest | undefined {
  if (!top.isIndex || choice.multiArch === "all") return top.digest;
  return chooseInstance(top, choice.platform)?.digest;
}

/**
 * The digest of the manifest stored under `destination`'s name, or undefined when there is none:
 * a HEAD by tag (or digest) for a registry, `manifest.json` for a `dir:` image, the named
 * index.json entry for an OCI layout. Nothing is written; a missing directory or layout is "none".
 */
export async function destinationDigest(destination: ImageReference, ctx: SystemContext | undefined, pool: RegistryClientPool, signal?: AbortSignal): Promise<Digest | undefined> {
  if (destination instanceof DockerImageReference) {
    const [primary] = await resolveRegistryEndpoints(destination.ref, ctx?.docker ?? {}, "push");
    const at = primary ?? { ref: destination.ref, ctx: ctx?.docker ?? {} };
    const repo = pool.get(at.ref.domain, at.ctx).repository(at.ref.path, "pull");
    const head = await repo.headManifest(destination.tagOrDigest, signal);
    if (head === undefined) return undefined;
    if (destination.ref.digest !== undefined) return destination.ref.digest;
    return head.digest !== undefined && isDigest(head.digest) ? head.digest : undefined;
  }
  if (destination instanceof DirReference) {
    const bytes = await readIfPresent(join(destination.path, DIR_MANIFEST_FILE));
    return bytes === undefined ? undefined : digestOf(bytes);
  }
  if (destination instanceof OciReference) {
    const path = join(destination.path, "index.json");
    const bytes = await readIfPresent(path);
    if (bytes === undefined || destination.name === undefined) return undefined;
    const entry = parseLayoutIndex(bytes, path).manifests.find((d) => refName(d) === destination.name);
    return entry?.digest;
  }
  return undefined;
}

async function readIfPresent(path: string): Promise<Buffer | undefined> {
  try {
    return await readSmallFile(path, MAX_MANIFEST_SIZE, () => new AirlockError("ERR_BLOB_NOT_FOUND", `${path} is missing`));
  } catch (err) {
    if (err instanceof AirlockError && err.code === "ERR_BLOB_NOT_FOUND") return undefined;
    throw err;
  }
}
