/**
 * `inspect`: what `skopeo inspect` prints about an image, computed from its manifest and config.
 * @see https://github.com/containers/skopeo/blob/main/cmd/skopeo/inspect/output.go
 */
import { pipeline } from "node:stream";
import { buffer } from "node:stream/consumers";
import { type Digest, VerifyingStream } from "./digest.js";
import { inspectSchema1, schema1OCIConfig } from "./convert/schema1.js";
import { AirlockError } from "./errors.js";
import type { Descriptor, Manifest } from "./manifest.js";
import { formatPlatform, hostPlatform, type Platform, platformMatches } from "./platform.js";
import { type ImageReference, type ImageSource, isStoredManifestSource, type SystemContext } from "./transports/types.js";

/** Largest config blob airlock reads into memory (as containers/image: 4 MiB). */
export const MAX_CONFIG_SIZE = 4 * 1024 * 1024;

/** One layer in {@link InspectOutput.LayersData}. */
export interface InspectLayer {
  MIMEType: string;
  Digest: Digest;
  Size: number;
  Annotations: Record<string, string> | null;
}

/** The JSON `skopeo inspect` prints, field for field and in the same order. */
export interface InspectOutput {
  Name?: string;
  /** Only from a schema 1 manifest (which names its tag), as skopeo. */
  Tag?: string;
  Digest: Digest;
  RepoTags: string[];
  Created?: string;
  DockerVersion: string;
  Labels: Record<string, string> | null;
  Architecture: string;
  Variant?: string;
  Os: string;
  Layers: Digest[];
  LayersData: InspectLayer[];
  Env: string[] | null;
}

/** An optional ImageSource feature: listing the tags of the source's repository. */
export interface TagLister {
  listTags(signal?: AbortSignal): Promise<string[]>;
}

/** Reports whether a source can list tags (the docker transport can). */
export function canListTags(src: ImageSource): src is ImageSource & TagLister {
  return typeof (src as Partial<TagLister>).listTags === "function";
}

/** Options of {@link inspectImage}. */
export interface InspectOptions {
  context?: SystemContext;
  /** The platform chosen from an index (default: this host's). */
  platform?: Partial<Platform>;
  /** Skip listing tags (`--no-tags`). */
  noTags?: boolean;
  signal?: AbortSignal;
}

/** Everything `inspect` can print: the raw top-level manifest, the raw config, and skopeo's summary. */
export interface InspectResult {
  /** The top-level manifest, exactly as stored. */
  manifest: Manifest;
  /** The image manifest chosen for the platform (the top-level one unless it is an index). */
  image: Manifest;
  /** The raw config blob of `image` (empty for a Docker schema 1 image, which has none). */
  configBytes: Uint8Array;
  /**
   * For a Docker schema 1 image: the OCI config `skopeo inspect --config` prints, built from its
   * history (diffIDs unknown, so empty strings). Otherwise absent: convert `configBytes` with {@link toOCIConfig}.
   */
  ociConfig?: Record<string, unknown>;
  /** The summary `skopeo inspect` prints. */
  output: InspectOutput;
}

/** Reads an image's manifest and config and returns what `skopeo inspect` would show. */
export async function inspectImage(ref: ImageReference, options: InspectOptions = {}): Promise<InspectResult> {
  const src = await ref.newSource(options.context);
  try {
    // A source that presents its image as copied (containers-storage) also gives it as stored: skopeo inspect reports that.
    const stored = isStoredManifestSource(src);
    const getManifest = (digest?: Digest) => (stored ? src.getStoredManifest(digest, options.signal) : src.getManifest(digest, options.signal));
    const manifest = await getManifest();
    if (manifest.isSchema1) return await inspectSchema1Image(ref, src, manifest, options);
    const image = manifest.isIndex ? await getManifest(choose(manifest, options.platform, ref).digest) : manifest;
    const configBytes = await readConfig(src, image.image.config, options.signal);
    let config: Record<string, unknown>;
    try {
      config = JSON.parse(Buffer.from(configBytes).toString("utf8"));
    } catch (cause) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `config ${image.image.config.digest} of ${ref} is not valid JSON`, { cause });
    }
    const inner = (config.config ?? {}) as { Labels?: Record<string, string> | null; Env?: string[] | null };
    const docker = ref.dockerReference();
    const output: InspectOutput = {} as InspectOutput;
    if (docker) {
      const at = docker.indexOf("@");
      const base = at >= 0 ? docker.slice(0, at) : docker;
      const colon = base.lastIndexOf(":");
      const slash = base.lastIndexOf("/");
      // Tag is not the reference's: skopeo prints it only from a schema 1 manifest (its own tag field).
      output.Name = colon > slash ? base.slice(0, colon) : base;
    }
    output.Digest = manifest.digest;
    output.RepoTags = !options.noTags && canListTags(src) ? await src.listTags(options.signal) : [];
    if (typeof config.created === "string") output.Created = config.created;
    output.DockerVersion = typeof config.docker_version === "string" ? config.docker_version : "";
    output.Labels = inner.Labels && Object.keys(inner.Labels).length ? sortedMap(inner.Labels) : null;
    output.Architecture = String(config.architecture ?? "");
    if (typeof config.variant === "string" && config.variant) output.Variant = config.variant;
    output.Os = String(config.os ?? "");
    output.Layers = image.image.layers.map((l) => l.digest);
    output.LayersData = image.image.layers.map((l) => ({ MIMEType: l.mediaType, Digest: l.digest, Size: l.size, Annotations: l.annotations ?? null }));
    output.Env = inner.Env ?? null;
    return { manifest, image, configBytes, output };
  } finally {
    await src.close();
  }
}

/** `inspect` of a Docker schema 1 image: everything comes from its manifest (containers/image's Schema1.Inspect). */
async function inspectSchema1Image(ref: ImageReference, src: ImageSource, manifest: Manifest, options: InspectOptions): Promise<InspectResult> {
  const what = `manifest ${manifest.digest} of ${ref}`;
  const s1 = inspectSchema1(manifest.schema1, what);
  const output: InspectOutput = {} as InspectOutput;
  const docker = ref.dockerReference();
  if (docker) {
    const at = docker.indexOf("@");
    const base = at >= 0 ? docker.slice(0, at) : docker;
    const colon = base.lastIndexOf(":");
    output.Name = colon > base.lastIndexOf("/") ? base.slice(0, colon) : base;
  }
  // skopeo prints the tag embedded in a schema 1 manifest, not the reference's.
  if (s1.tag) output.Tag = s1.tag;
  output.Digest = manifest.digest;
  output.RepoTags = !options.noTags && canListTags(src) ? await src.listTags(options.signal) : [];
  output.Created = s1.created;
  output.DockerVersion = s1.dockerVersion;
  output.Labels = s1.labels;
  output.Architecture = s1.architecture;
  if (s1.variant) output.Variant = s1.variant;
  output.Os = s1.os;
  output.Layers = s1.layers;
  // A schema 1 manifest gives no media types or sizes (containers/image: "" and -1).
  output.LayersData = s1.layers.map((d) => ({ MIMEType: "", Digest: d, Size: -1, Annotations: null }));
  output.Env = s1.env;
  return { manifest, image: manifest, configBytes: new Uint8Array(0), ociConfig: schema1OCIConfig(manifest.schema1, what), output };
}

function choose(index: Manifest, platform: Partial<Platform> | undefined, ref: ImageReference): Descriptor {
  const host = hostPlatform();
  const want: Platform = { os: platform?.os ?? host.os, architecture: platform?.architecture ?? host.architecture };
  if (platform?.variant) want.variant = platform.variant;
  const found = index.index.manifests.find((d) => platformMatches(want, d.platform));
  if (!found) {
    const have = index.index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : "(no platform)")).join(", ");
    throw new AirlockError("ERR_NO_MATCHING_PLATFORM", `${ref} has no image for ${formatPlatform(want)} (it has: ${have}); choose one with --override-os/--override-arch/--override-variant`);
  }
  return found;
}

/** Reads a config blob (bounded to MAX_CONFIG_SIZE) and verifies it against its descriptor. */
export async function readConfig(src: ImageSource, desc: Descriptor, signal?: AbortSignal): Promise<Uint8Array> {
  if (desc.size > MAX_CONFIG_SIZE) {
    throw new AirlockError("ERR_MANIFEST_INVALID", `config ${desc.digest} of ${src.reference} is ${desc.size} bytes, more than the ${MAX_CONFIG_SIZE} airlock reads`);
  }
  const { stream } = await src.getBlob(desc, { signal });
  // The verifier fails as soon as more than desc.size bytes arrive, so memory stays bounded.
  const verifier = new VerifyingStream({ digest: desc.digest, size: desc.size }, `config ${desc.digest} of ${src.reference}`);
  return buffer(pipeline(stream, verifier, () => {}));
}

/**
 * Converts an image config (Docker or OCI) to the OCI image config shape that
 * `skopeo inspect --config` prints, dropping Docker-only fields.
 * @see https://github.com/opencontainers/image-spec/blob/main/config.md
 */
export function toOCIConfig(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ["created", "author", "architecture", "os", "os.version", "os.features", "variant"]) {
    if (config[k] !== undefined && config[k] !== "") out[k] = config[k];
  }
  const c = config.config as Record<string, unknown> | undefined;
  if (c) {
    const keep: Record<string, unknown> = {};
    for (const k of ["User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal", "ArgsEscaped"]) {
      const v = c[k];
      if (v === undefined || v === null || v === "" || v === false) continue;
      // Go's encoding/json writes maps with sorted keys.
      keep[k] = k === "ExposedPorts" || k === "Volumes" || k === "Labels" ? sortedMap(v as Record<string, unknown>) : v;
    }
    out.config = keep;
  }
  if (config.rootfs !== undefined) out.rootfs = config.rootfs;
  if (config.history !== undefined) out.history = config.history;
  return out;
}

/** A copy of `m` with its keys sorted, as Go's encoding/json writes maps. */
function sortedMap<T>(m: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
