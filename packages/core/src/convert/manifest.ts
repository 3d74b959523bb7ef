/**
 * Building converted manifests: an image manifest or an index in the other format (OCI ↔ Docker
 * v2s2, OCI index ↔ Docker manifest list), or with new layer descriptors. JSON is serialised with
 * the field order of containers/image's Go structs, so that a conversion airlock makes has the
 * digest skopeo gives the same conversion. Config blob bytes never change: only the media type in
 * its descriptor does.
 * @see https://github.com/containers/image/blob/main/internal/image/oci.go
 * @see https://github.com/containers/image/blob/main/internal/image/docker_schema2.go
 */
import { AirlockError } from "../errors.js";
import { type Descriptor, type IndexJSON, Manifest } from "../manifest.js";
import type { Platform } from "../platform.js";
import { formatOf, imageManifestMediaType, indexMediaType, type ManifestFormat } from "./mediatypes.js";

/** A descriptor in the field order of `format`'s Go struct, without the fields `format` lacks. */
export function formatDescriptor(d: Descriptor, format: ManifestFormat, withPlatform = false): Record<string, unknown> {
  const out: Record<string, unknown> = { mediaType: d.mediaType };
  if (format === "v2s2") {
    out.size = d.size;
    out.digest = d.digest;
    if (d.urls && d.urls.length > 0) out.urls = d.urls;
    if (withPlatform && d.platform) out.platform = formatPlatform(d.platform, format);
    return out;
  }
  out.digest = d.digest;
  out.size = d.size;
  if (d.urls && d.urls.length > 0) out.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length > 0) out.annotations = d.annotations;
  const data = (d as { data?: string }).data;
  if (data !== undefined) out.data = data;
  if (withPlatform && d.platform) out.platform = formatPlatform(d.platform, format);
  if (d.artifactType) out.artifactType = d.artifactType;
  return out;
}

function formatPlatform(p: Platform, format: ManifestFormat): Record<string, unknown> {
  const out: Record<string, unknown> = { architecture: p.architecture, os: p.os };
  if (p["os.version"]) out["os.version"] = p["os.version"];
  if (p["os.features"] && p["os.features"].length > 0) out["os.features"] = p["os.features"];
  if (p.variant) out.variant = p.variant;
  const features = (p as { features?: string[] }).features;
  if (format === "v2s2" && features && features.length > 0) out.features = features;
  return out;
}

/**
 * An image manifest for `config` and `layers` (already carrying the media types of `format`). When
 * `original` has the same format, its other fields (annotations, subject, …) are kept in place;
 * across formats only what the target format has is kept (a Docker manifest has no annotations).
 */
export function buildImageManifest(format: ManifestFormat, config: Descriptor, layers: Descriptor[], original?: Manifest): Manifest {
  const mediaType = imageManifestMediaType(format);
  const same = original !== undefined && formatOf(original.mediaType) === format && !original.isIndex;
  let json: Record<string, unknown>;
  if (same) {
    json = { ...(original.json as unknown as Record<string, unknown>) };
    json.config = formatDescriptor(config, format);
    json.layers = layers.map((l) => formatDescriptor(l, format));
  } else {
    json = { schemaVersion: 2, mediaType, config: formatDescriptor(config, format), layers: layers.map((l) => formatDescriptor(l, format)) };
  }
  return Manifest.parse(Buffer.from(JSON.stringify(json)), { mediaType });
}

/**
 * An index in `format` listing `manifests` (descriptors of the converted images, with their
 * platforms). An OCI index keeps the original's annotations and other fields when it was OCI too.
 */
export function buildIndex(format: ManifestFormat, manifests: Descriptor[], original: Manifest): Manifest {
  const mediaType = indexMediaType(format);
  const entries = manifests.map((d) => formatDescriptor(d, format, true));
  let json: Record<string, unknown>;
  if (formatOf(original.mediaType) === format) {
    json = { ...(original.json as unknown as Record<string, unknown>), manifests: entries };
  } else {
    json = { schemaVersion: 2, mediaType, manifests: entries };
    const ann = (original.json as IndexJSON).annotations;
    if (format === "oci" && ann && Object.keys(ann).length > 0) json.annotations = ann;
  }
  if (format === "v2s2") {
    for (const d of manifests) {
      if (!d.platform?.architecture || !d.platform.os) {
        throw new AirlockError("ERR_UNSUPPORTED", `cannot convert index ${original.digest} to a Docker manifest list: its entry ${d.digest} has no platform, which a manifest list requires`);
      }
    }
  }
  return Manifest.parse(Buffer.from(JSON.stringify(json)), { mediaType });
}
