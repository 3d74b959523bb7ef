/**
 * Manifests travel as raw bytes with their media type and digest. JSON airlock did not create is
 * parsed to be read, never re-serialised: its digest would change.
 * @see https://github.com/opencontainers/image-spec/blob/main/manifest.md
 * @see https://github.com/opencontainers/image-spec/blob/main/image-index.md
 */
import { type Digest, digestAlgorithm, digestOf, parseDigest } from "./digest.js";
import { AirlockError } from "./errors.js";
import { guessSchema1MediaType, hasSchema1Signatures, type Schema1JSON, Schema1Manifest, schema1Payload } from "./manifest-schema1.js";
import { isImageManifest, isIndex, isSchema1, MediaType, type ManifestMediaType, isManifestMediaType } from "./mediatype.js";
import type { Platform } from "./platform.js";

/** An OCI content descriptor. @see https://github.com/opencontainers/image-spec/blob/main/descriptor.md */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

/** The parsed view of an image manifest (OCI image manifest or Docker v2 schema 2). */
export interface ImageManifestJSON {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** The parsed view of an index (OCI image index or Docker manifest list). */
export interface IndexJSON {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** Largest manifest airlock reads, as containers/image (4 MiB). */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/** The annotation that names an image in an OCI layout's index.json. */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/**
 * A manifest as raw bytes with its media type and digest. The bytes are the truth: `digest` is
 * computed from them (or checked against them), and `json` is a read-only parsed view.
 */
export class Manifest {
  /** The exact bytes of the manifest. */
  readonly bytes: Uint8Array;
  /** The media type: one of the four supported manifest types, or Docker schema 1 (see {@link schema1}). */
  readonly mediaType: ManifestMediaType;
  /** The digest of `bytes` (of a signed schema 1 manifest: of its JWS payload). */
  readonly digest: Digest;
  /** The parsed JSON (read-only). */
  readonly json: ImageManifestJSON | IndexJSON | Schema1JSON;
  private readonly s1: Schema1Manifest | undefined;

  private constructor(bytes: Uint8Array, mediaType: ManifestMediaType, digest: Digest, json: ImageManifestJSON | IndexJSON | Schema1JSON, s1?: Schema1Manifest) {
    this.bytes = bytes;
    this.mediaType = mediaType;
    this.digest = digest;
    this.json = json;
    this.s1 = s1;
  }

  /**
   * Parses raw manifest bytes. `mediaType` is what the source said (a registry's Content-Type, a
   * descriptor's mediaType); when absent or generic it is taken from the JSON. When `expected` is
   * given the bytes must hash to it (ERR_DIGEST_MISMATCH otherwise). `what` names the manifest in
   * error messages. A Docker schema 1 manifest is read (its digest is that of its JWS payload when
   * signed; see manifest-schema1.ts); unknown media types are refused with a clear message.
   */
  static parse(bytes: Uint8Array, options: { mediaType?: string | undefined; expected?: Digest | undefined; what?: string } = {}): Manifest {
    const what = options.what ?? "manifest";
    if (bytes.length > MAX_MANIFEST_SIZE) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what} is ${bytes.length} bytes, more than the ${MAX_MANIFEST_SIZE} airlock accepts`);
    }
    const algorithm = options.expected ? digestAlgorithm(options.expected) : "sha256";
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(bytes).toString("utf8"));
    } catch (cause) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what} is not valid JSON`, { cause });
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what} is not a JSON object`);
    }
    const obj = json as Record<string, unknown>;
    const declared = typeof obj.mediaType === "string" ? obj.mediaType : undefined;
    let mt = normaliseContentType(options.mediaType);
    if (mt === undefined || mt === "application/json" || mt === "application/octet-stream" || mt === "text/plain") mt = declared;
    if (mt === undefined) mt = guessMediaType(obj);
    const schema1 = isSchema1(mt) || obj.schemaVersion === 1;
    // containers/image's manifest.Digest: a signed schema 1 manifest's digest is its JWS payload's.
    const digest = digestOf(schema1 && hasSchema1Signatures(obj) ? schema1Payload(bytes, obj, what) : bytes, algorithm);
    if (options.expected && digest !== options.expected) {
      throw new AirlockError("ERR_DIGEST_MISMATCH", `${what}: content has digest ${digest}, expected ${options.expected}; the source is corrupt or was tampered with`);
    }
    if (schema1) {
      if (declared !== undefined && !isSchema1(declared)) throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: its mediaType field says ${declared} but it is a Docker schema 1 manifest`);
      const s1 = Schema1Manifest.parse(obj, what);
      return new Manifest(bytes, isSchema1(mt) ? mt : guessSchema1MediaType(obj), digest, obj as unknown as Schema1JSON, s1);
    }
    if (!isManifestMediaType(mt)) {
      throw new AirlockError("ERR_UNSUPPORTED_MEDIA_TYPE", `${what} has unsupported media type ${JSON.stringify(mt ?? "(none)")}; airlock supports ${[MediaType.OCIManifest, MediaType.OCIIndex, MediaType.DockerManifest, MediaType.DockerManifestList].join(", ")}`);
    }
    if (declared !== undefined && declared !== mt) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: its mediaType field says ${declared} but it was served as ${mt}`);
    }
    validate(obj, mt, what);
    return new Manifest(bytes, mt, digest, obj as unknown as ImageManifestJSON | IndexJSON);
  }

  /** Creates a manifest from a JSON value airlock itself built (serialised once, compactly). */
  static fromJSON(value: ImageManifestJSON | IndexJSON, mediaType: ManifestMediaType): Manifest {
    return Manifest.parse(Buffer.from(JSON.stringify(value)), { mediaType });
  }

  /** Whether this is a Docker schema 1 manifest (read {@link schema1}; {@link image} throws). */
  get isSchema1(): boolean {
    return this.s1 !== undefined;
  }

  /** The parsed view of a Docker schema 1 manifest. Throws if this is not one. */
  get schema1(): Schema1Manifest {
    if (!this.s1) throw new AirlockError("ERR_MANIFEST_INVALID", `manifest ${this.digest} is not a Docker schema 1 manifest`);
    return this.s1;
  }

  /** Whether this is an index (OCI index or Docker manifest list). */
  get isIndex(): boolean {
    return isIndex(this.mediaType);
  }

  /** The parsed view as an index. Throws if this is an image manifest. */
  get index(): IndexJSON {
    if (!this.isIndex) throw new AirlockError("ERR_MANIFEST_INVALID", `manifest ${this.digest} is not an index`);
    return this.json as IndexJSON;
  }

  /** The parsed view as an image manifest. Throws if this is an index or a Docker schema 1 manifest (it has no config descriptor). */
  get image(): ImageManifestJSON {
    if (this.s1) {
      throw new AirlockError(
        "ERR_UNSUPPORTED_MEDIA_TYPE",
        `manifest ${this.digest} is a Docker schema 1 manifest, which this operation cannot use as it is; convert it first, e.g. airlock copy --format v2s2 (or oci) SOURCE DESTINATION`,
      );
    }
    if (this.isIndex) throw new AirlockError("ERR_MANIFEST_INVALID", `manifest ${this.digest} is an index, not an image manifest`);
    return this.json as ImageManifestJSON;
  }

  /** A descriptor for this manifest (to put in an index or an OCI layout's index.json). */
  descriptor(extra: Partial<Pick<Descriptor, "annotations" | "platform">> = {}): Descriptor {
    const d: Descriptor = { mediaType: this.mediaType, digest: this.digest, size: this.bytes.length };
    const at = (this.json as { artifactType?: string }).artifactType;
    if (at) d.artifactType = at;
    if (extra.platform) d.platform = extra.platform;
    if (extra.annotations) d.annotations = extra.annotations;
    return d;
  }

  /**
   * For an image manifest: the config then the layers, the blobs it references. For a schema 1
   * manifest: its distinct layer blobs, base first, of unknown size (-1).
   */
  blobs(): Descriptor[] {
    if (this.s1) {
      const seen = new Set<string>();
      return this.s1.layers().filter((l) => !seen.has(l.digest) && seen.add(l.digest)).map((l) => ({ mediaType: MediaType.DockerLayerGzip, digest: l.digest, size: -1 }));
    }
    const m = this.image;
    return [m.config, ...m.layers];
  }
}

function normaliseContentType(ct: string | undefined): string | undefined {
  if (!ct) return undefined;
  return ct.split(";")[0]?.trim() || undefined;
}

function guessMediaType(obj: Record<string, unknown>): string | undefined {
  if (obj.schemaVersion === 1) return guessSchema1MediaType(obj);
  if (Array.isArray(obj.manifests)) return MediaType.OCIIndex;
  if (obj.config && Array.isArray(obj.layers)) return MediaType.OCIManifest;
  return undefined;
}

function validate(obj: Record<string, unknown>, mt: ManifestMediaType, what: string): void {
  if (obj.schemaVersion !== 2) throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: schemaVersion must be 2`);
  if (isImageManifest(mt)) {
    validateDescriptor(obj.config, `${what}: config`);
    if (!Array.isArray(obj.layers)) throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: layers must be an array`);
    for (const [i, l] of obj.layers.entries()) validateDescriptor(l, `${what}: layers[${i}]`);
  } else {
    if (!Array.isArray(obj.manifests)) throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: manifests must be an array`);
    for (const [i, l] of obj.manifests.entries()) validateDescriptor(l, `${what}: manifests[${i}]`);
  }
  if (obj.subject !== undefined) validateDescriptor(obj.subject, `${what}: subject`);
}

/** Checks that `d` is a well-formed descriptor (media type, valid digest, non-negative size). */
export function validateDescriptor(d: unknown, what: string): asserts d is Descriptor {
  if (typeof d !== "object" || d === null) throw new AirlockError("ERR_MANIFEST_INVALID", `${what} is not a descriptor object`);
  const o = d as Record<string, unknown>;
  if (typeof o.mediaType !== "string" || o.mediaType === "") throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: mediaType is missing`);
  if (typeof o.digest !== "string") throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: digest is missing`);
  try {
    parseDigest(o.digest);
  } catch (cause) {
    throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: ${(cause as Error).message}`, { cause });
  }
  if (typeof o.size !== "number" || !Number.isSafeInteger(o.size) || o.size < 0) {
    throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: size must be a non-negative integer`);
  }
}
