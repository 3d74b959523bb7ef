/**
 * Resolving the images of an export: every manifest is fetched (they are small) and checked
 * against the digest its parent names before any blob moves, and an index is subset to the
 * platforms asked for.
 */
import type { Digest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { type Descriptor, Manifest } from "../manifest.js";
import { isManifestMediaType } from "../mediatype.js";
import { formatPlatform, type Platform, platformMatches } from "../platform.js";
import type { ImageReference, ImageSource } from "../transports/types.js";
import { buildImageManifest, buildIndex } from "../convert/manifest.js";
import { configMediaType, formatOf, isImageConfig, layerKind, layerMediaType } from "../convert/mediatypes.js";
import type { BundlePlatformImage } from "./format.js";

/** Which images of an index to keep: all of them (the index is kept as is) or those of a list of platforms. */
export type PlatformSelection = "all" | Platform[];

/** An image of an export, with every manifest fetched and checked. */
export interface ResolvedImage {
  /** The bundle name of the image. */
  name: string;
  /** Where it came from. */
  source: ImageReference;
  /** The top-level manifest written to the bundle (a new index when platforms were subset). */
  top: Manifest;
  /** The source's top-level index when it was subset (its digest differs from `top`'s). */
  sourceTop?: Manifest;
  /** Every manifest of the image, children before the indexes that list them, `top` last. */
  manifests: Manifest[];
  /** Every config and layer descriptor of its image manifests, in order (may repeat). */
  blobs: Descriptor[];
  /** For an index: its image manifests, one per entry. */
  platforms?: BundlePlatformImage[];
  /** Set when Docker-typed manifests were converted to OCI ({@link convertToOci}). */
  converted?: true;
}

// buildx attaches provenance as index entries of platform unknown/unknown that point at the image they describe.
const REFERENCE_TYPE = "vnd.docker.reference.type";
const REFERENCE_DIGEST = "vnd.docker.reference.digest";

/**
 * Fetches the top-level manifest of `src` and, for an index, every child it keeps (recursively;
 * the children of one index at once), checking each child's digest and size against its index
 * entry. With a platform list, an index is replaced by a new one that lists only the matching
 * images (and buildx attestations of those); the new index's digest differs from the source's and
 * is reported as `sourceTop`. `known` are manifests already read from `src` (the top-level one
 * first): they are not fetched again.
 */
export async function resolveImage(src: ImageSource, name: string, platforms: PlatformSelection, signal?: AbortSignal, known?: readonly Manifest[]): Promise<ResolvedImage> {
  const what = `${src.reference}`;
  const have = new Map((known ?? []).map((m) => [m.digest, m]));
  const sourceTop = known?.[0] ?? (await src.getManifest(undefined, signal));
  let top = sourceTop;
  if (top.isIndex && platforms !== "all") {
    top = subsetIndex(top, platforms, what);
  }
  const manifests: Manifest[] = [];
  const blobs: Descriptor[] = [];
  const seen = new Set<string>();
  const visit = async (m: Manifest): Promise<void> => {
    if (m.isIndex) {
      const children: Descriptor[] = [];
      for (const d of m.index.manifests) {
        if (!isManifestMediaType(d.mediaType)) {
          throw new AirlockError("ERR_UNSUPPORTED_MEDIA_TYPE", `${what}: index ${m.digest} lists ${d.digest} of media type ${d.mediaType}, which is not a manifest airlock can export`);
        }
        if (seen.has(d.digest)) continue;
        seen.add(d.digest);
        children.push(d);
      }
      // Fetched together (one round trip, not one per platform), visited in the index's order.
      const fetched = await Promise.all(children.map((d) => childManifest(src, d, what, signal, have)));
      for (const c of fetched) await visit(c);
    } else if (m.isSchema1) {
      throw new AirlockError(
        "ERR_UNSUPPORTED_MEDIA_TYPE",
        `${what} has a Docker schema 1 manifest, which a bundle (an OCI image layout) cannot hold; convert it first, e.g. airlock copy --format oci ${what} oci:DIR:NAME, and export it from there`,
      );
    } else {
      blobs.push(...m.blobs());
    }
    manifests.push(m);
  };
  await visit(top);
  const out: ResolvedImage = { name, source: src.reference, top, manifests, blobs };
  if (top !== sourceTop) out.sourceTop = sourceTop;
  if (top.isIndex) out.platforms = platformImages(top);
  return out;
}

async function childManifest(src: ImageSource, d: Descriptor, what: string, signal: AbortSignal | undefined, have: ReadonlyMap<string, Manifest>): Promise<Manifest> {
  const m = have.get(d.digest) ?? (await src.getManifest(d.digest, signal));
  if (m.digest !== d.digest) {
    throw new AirlockError("ERR_DIGEST_MISMATCH", `manifest ${d.digest} of ${what}: content has digest ${m.digest}; the source is corrupt or was tampered with`);
  }
  if (m.bytes.length !== d.size) {
    throw new AirlockError("ERR_SIZE_MISMATCH", `manifest ${d.digest} of ${what}: ${m.bytes.length} bytes, its index says ${d.size}`);
  }
  if (m.mediaType !== d.mediaType) {
    throw new AirlockError("ERR_MANIFEST_INVALID", `manifest ${d.digest} of ${what} is a ${m.mediaType}, its index says ${d.mediaType}`);
  }
  return m;
}

/**
 * Builds a new index listing only the entries of `index` whose platform matches one of `wanted`,
 * plus buildx attestation entries that describe a kept image. Every other field of the index is
 * kept. Returns `index` itself when nothing is dropped (its digest then stays the same).
 */
export function subsetIndex(index: Manifest, wanted: Platform[], what: string): Manifest {
  if (wanted.length === 0) throw new AirlockError("ERR_INVALID_ARGUMENT", `${what}: an empty platform list selects nothing; use "all" or name at least one platform`);
  const entries = index.index.manifests;
  const kept = entries.filter((d) => wanted.some((w) => platformMatches(w, d.platform)));
  const keptDigests = new Set<string>(kept.map((d) => d.digest));
  const attestations = entries.filter((d) => d.annotations?.[REFERENCE_TYPE] === "attestation-manifest" && keptDigests.has(d.annotations?.[REFERENCE_DIGEST] ?? ""));
  const keep = new Set<Descriptor>([...kept, ...attestations]);
  const result = entries.filter((d) => keep.has(d));
  if (kept.length === 0) {
    const have = entries.map((d) => (d.platform ? formatPlatform(d.platform) : "(no platform)")).join(", ");
    throw new AirlockError("ERR_NO_MATCHING_PLATFORM", `${what} has no image for ${wanted.map(formatPlatform).join(", ")} (it has: ${have}); change the platform list or export all platforms`);
  }
  if (result.length === entries.length) return index;
  return Manifest.fromJSON({ ...index.index, manifests: result }, index.mediaType);
}

/**
 * The image with its Docker v2s2 manifests and manifest lists converted to OCI ones (`export
 * --format oci`), so that every OCI tool reads it from a bundle — skopeo's OCI layout code skips
 * index.json entries of Docker media types. Configs and layers keep their bytes: only the media
 * types in their descriptors change, and with them the digests of the converted manifests and of
 * the indexes above them; the source's top-level manifest is then kept as `sourceTop`. Returns
 * `img` itself when nothing is Docker-typed.
 */
export function convertToOci(img: ResolvedImage): ResolvedImage {
  const converted = new Map<string, Manifest>();
  for (const m of img.manifests) {
    let n = m;
    if (m.isIndex) {
      const entries = m.index.manifests.map((d) => {
        const c = converted.get(d.digest);
        return c ? { ...d, mediaType: c.mediaType, digest: c.digest, size: c.bytes.length } : d;
      });
      if (formatOf(m.mediaType) !== "oci" || entries.some((d, i) => d !== m.index.manifests[i])) n = buildIndex("oci", entries, m);
    } else if (formatOf(m.mediaType) === "v2s2") {
      const { config, layers } = m.image;
      const ociConfig = isImageConfig(config.mediaType) ? { ...config, mediaType: configMediaType("oci") } : config;
      const ociLayers = layers.map((l) => {
        const kind = layerKind(l.mediaType);
        const mediaType = kind && layerMediaType("oci", kind.compression, kind.nondistributable);
        return mediaType ? { ...l, mediaType } : l;
      });
      n = buildImageManifest("oci", ociConfig, ociLayers, m);
    }
    if (n !== m) converted.set(m.digest, n);
  }
  if (converted.size === 0) return img;
  const manifests = img.manifests.map((m) => converted.get(m.digest) ?? m);
  const top = converted.get(img.top.digest) ?? img.top;
  const out: ResolvedImage = { ...img, top, manifests, blobs: manifests.flatMap((m) => (m.isIndex ? [] : m.blobs())), converted: true };
  const sourceTop = img.sourceTop ?? img.top;
  if (sourceTop.digest !== top.digest) out.sourceTop = sourceTop;
  if (top.isIndex) out.platforms = platformImages(top);
  return out;
}

/** An index's image manifests, one per entry, as bundle.json lists them. */
function platformImages(index: Manifest): BundlePlatformImage[] {
  return index.index.manifests.map((d) => {
    const p: BundlePlatformImage = { digest: d.digest, mediaType: d.mediaType, size: d.size };
    if (d.platform) p.platform = d.platform;
    return p;
  });
}

/** The digest of the manifest list an image's blobs come from, for messages. */
export function describeImage(img: ResolvedImage): string {
  return `${img.name} (${img.source}, ${img.top.digest as Digest})`;
}
