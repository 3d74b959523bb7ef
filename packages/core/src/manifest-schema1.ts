/**
 * Docker image manifest v2 schema 1 (`application/vnd.docker.distribution.manifest.v1+json` and
 * its signed form `…v1+prettyjws`): reading it as containers/image does (manifest/docker_schema1.go).
 * A schema 1 manifest has no config blob: the image's configuration is the `v1Compatibility`
 * string of its newest `history` entry, and `fsLayers` lists the layers newest first, one per
 * history entry, `throwaway` entries naming an empty layer.
 *
 * The digest of a signed manifest is the digest of its JWS payload — the bytes without the
 * `signatures` member (libtrust's `formatLength` bytes followed by `formatTail`) — not of the bytes
 * as stored; the registry computes it the same way.
 * @see https://github.com/distribution/distribution/blob/v2.8.2/docs/spec/manifest-v2-1.md
 * @see https://github.com/containers/image/blob/main/manifest/docker_schema1.go
 */
import { type Digest, type DigestAlgorithm, digestOf, isDigest } from "./digest.js";
import { AirlockError } from "./errors.js";
import { MediaType } from "./mediatype.js";

/** The JSON of a schema 1 manifest, as stored. */
export interface Schema1JSON {
  schemaVersion: 1;
  name: string;
  tag: string;
  architecture: string;
  fsLayers: { blobSum: Digest }[];
  history: { v1Compatibility: string }[];
  signatures?: unknown[];
  /** Schema 1 has no subject (present so that code reading `json.subject` needs no cast). */
  subject?: undefined;
}

/** The fields of a `v1Compatibility` entry that containers/image reads (Schema1V1Compatibility). */
export interface Schema1V1Compatibility {
  id: string;
  parent?: string;
  comment?: string;
  created?: string;
  container_config?: { Cmd?: string[] | null };
  author?: string;
  throwaway?: boolean;
}

/** One layer of a schema 1 image, base first, as containers/image's Schema1.LayerInfos. */
export interface Schema1Layer {
  /** The blob (`blobSum`), compressed as it is stored. */
  digest: Digest;
  /** Whether its history entry is `throwaway` (a Dockerfile step that adds no files). */
  emptyLayer: boolean;
}

/**
 * A parsed schema 1 manifest after containers/image's `fixManifestLayers`: history entries whose
 * ID repeats the next one's are dropped (with their fsLayers entry), IDs are checked and every
 * entry's `parent` must be the next entry's `id`. `fsLayers`, `history` and `v1` stay newest first.
 */
export class Schema1Manifest {
  readonly name: string;
  readonly tag: string;
  readonly architecture: string;
  /** The blob of each history entry, newest first. */
  readonly fsLayers: readonly Digest[];
  /** The raw `v1Compatibility` strings, newest first. */
  readonly history: readonly string[];
  /** The parsed `v1Compatibility` entries, newest first. */
  readonly v1: readonly Schema1V1Compatibility[];

  private constructor(name: string, tag: string, architecture: string, fsLayers: Digest[], history: string[], v1: Schema1V1Compatibility[]) {
    this.name = name;
    this.tag = tag;
    this.architecture = architecture;
    this.fsLayers = fsLayers;
    this.history = history;
    this.v1 = v1;
  }

  /** Validates a schema 1 manifest's JSON (ERR_MANIFEST_INVALID naming `what` otherwise). */
  static parse(obj: Record<string, unknown>, what: string): Schema1Manifest {
    const bad = (message: string): never => {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what} (Docker schema 1): ${message}`);
    };
    if (obj.schemaVersion !== 1) bad(`schemaVersion must be 1, not ${JSON.stringify(obj.schemaVersion)}`);
    const str = (k: string): string => {
      const v = obj[k];
      if (v === undefined || v === null) return "";
      return typeof v === "string" ? v : bad(`${k} must be a string`);
    };
    if (!Array.isArray(obj.fsLayers) || !Array.isArray(obj.history)) bad("fsLayers and history must be arrays");
    const fsLayersIn = obj.fsLayers as unknown[];
    const historyIn = obj.history as unknown[];
    if (fsLayersIn.length !== historyIn.length) bad(`it has ${fsLayersIn.length} fsLayers but ${historyIn.length} history entries; they must match`);
    if (fsLayersIn.length === 0) bad("it has no fsLayers");
    const fsLayers = fsLayersIn.map((l, i) => {
      const sum = (l as { blobSum?: unknown } | null)?.blobSum;
      return typeof sum === "string" && isDigest(sum) ? sum : bad(`fsLayers[${i}].blobSum is not a valid digest`);
    });
    const history = historyIn.map((h, i) => {
      const v = (h as { v1Compatibility?: unknown } | null)?.v1Compatibility;
      return typeof v === "string" ? v : bad(`history[${i}].v1Compatibility must be a string`);
    });
    const v1 = history.map((h, i) => parseV1Compatibility(h, `${what}: history[${i}]`));
    // fixManifestLayers: valid IDs, no repeated ID but consecutive ones, each parent the next ID.
    for (const [i, c] of v1.entries()) if (!/^[a-f0-9]{64}$/.test(c.id)) bad(`history[${i}] has an invalid image ID ${JSON.stringify(c.id)}`);
    if ((v1.at(-1)?.parent ?? "") !== "") bad("the base layer of the image has a parent ID");
    const seen = new Set<string>();
    let last = "";
    for (const c of v1) {
      if (c.id !== last && seen.has(c.id)) bad(`ID ${c.id} appears more than once`);
      last = c.id;
      seen.add(c.id);
    }
    for (let i = v1.length - 2; i >= 0; i--) {
      const c = v1[i] as Schema1V1Compatibility;
      const next = v1[i + 1] as Schema1V1Compatibility;
      if (c.id === next.id) {
        fsLayers.splice(i, 1);
        history.splice(i, 1);
        v1.splice(i, 1);
      } else if ((c.parent ?? "") !== next.id) {
        bad(`invalid parent ID: expected ${next.id}, got ${JSON.stringify(c.parent ?? "")}`);
      }
    }
    return new Schema1Manifest(str("name"), str("tag"), str("architecture"), fsLayers, history, v1);
  }

  /** Every layer, base first, empty ones included (containers/image's LayerInfos; digests may repeat). */
  layers(): Schema1Layer[] {
    return this.fsLayers.map((digest, i) => ({ digest, emptyLayer: this.v1[i]?.throwaway === true })).reverse();
  }

  /** The newest `v1Compatibility` entry as a JSON object: the image's configuration. */
  config(): Record<string, unknown> {
    return JSON.parse(this.history[0] as string) as Record<string, unknown>;
  }
}

function parseV1Compatibility(text: string, what: string): Schema1V1Compatibility {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: v1Compatibility is not valid JSON`, { cause });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: v1Compatibility is not a JSON object`);
  const o = v as Record<string, unknown>;
  const out: Schema1V1Compatibility = { id: typeof o.id === "string" ? o.id : "" };
  for (const k of ["parent", "comment", "created", "author"] as const) {
    const s = o[k];
    if (s === undefined || s === null) continue;
    if (typeof s !== "string") throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: v1Compatibility.${k} must be a string`);
    out[k] = s;
  }
  if (o.throwaway === true) out.throwaway = true;
  const cc = o.container_config as { Cmd?: unknown } | null | undefined;
  if (cc && typeof cc === "object") {
    const cmd = cc.Cmd;
    if (cmd !== undefined && cmd !== null && !(Array.isArray(cmd) && cmd.every((s) => typeof s === "string"))) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${what}: v1Compatibility.container_config.Cmd must be a list of strings`);
    }
    out.container_config = { Cmd: (cmd as string[] | null | undefined) ?? null };
  }
  return out;
}

/** Reports whether manifest bytes (already parsed as `obj`) carry a JWS `signatures` member, as containers/image's GuessMIMEType. */
export function hasSchema1Signatures(obj: Record<string, unknown>): boolean {
  return obj.signatures !== undefined && obj.signatures !== null;
}

/** The schema 1 media type a manifest's JSON says it is: signed when it has `signatures`. */
export function guessSchema1MediaType(obj: Record<string, unknown>): typeof MediaType.DockerSchema1 | typeof MediaType.DockerSchema1Signed {
  return hasSchema1Signatures(obj) ? MediaType.DockerSchema1Signed : MediaType.DockerSchema1;
}

/**
 * The bytes a signed schema 1 manifest's digest is computed over: its JWS payload, rebuilt as
 * libtrust's ParsePrettySignature does (the first `formatLength` bytes, then `formatTail`; every
 * signature's protected header must agree on both). The signatures are not verified: they are
 * made with throwaway keys and prove nothing about who made the image.
 */
export function schema1Payload(bytes: Uint8Array, obj: Record<string, unknown>, what: string): Uint8Array {
  const bad = (message: string): never => {
    throw new AirlockError("ERR_MANIFEST_INVALID", `${what} (signed Docker schema 1): ${message}`);
  };
  if (!Array.isArray(obj.signatures)) bad("signatures must be an array");
  let formatLength: number | undefined;
  let formatTail: Buffer | undefined;
  for (const [i, s] of (obj.signatures as unknown[]).entries()) {
    const p = (s as { protected?: unknown } | null)?.protected;
    if (typeof p !== "string") bad(`signatures[${i}] has no protected header`);
    let header: { formatLength?: unknown; formatTail?: unknown };
    try {
      header = JSON.parse(Buffer.from(p as string, "base64url").toString("utf8"));
    } catch {
      return bad(`signatures[${i}]: the protected header is not base64url-encoded JSON`);
    }
    const length = header.formatLength;
    if (typeof length !== "number" || !Number.isSafeInteger(length) || length < 0) bad(`signatures[${i}]: formatLength is missing or invalid`);
    if (typeof header.formatTail !== "string") bad(`signatures[${i}]: formatTail is missing`);
    const tail = Buffer.from(header.formatTail as string, "base64url");
    if (formatLength !== undefined && formatLength !== length) bad("the signatures disagree on formatLength");
    if (formatTail !== undefined && !formatTail.equals(tail)) bad("the signatures disagree on formatTail");
    formatLength = length as number;
    formatTail = tail;
  }
  if ((formatLength ?? 0) > bytes.length) bad("formatLength is longer than the manifest");
  return Buffer.concat([Buffer.from(bytes.subarray(0, formatLength ?? 0)), formatTail ?? Buffer.alloc(0)]);
}

/**
 * The digest of manifest bytes as containers/image's manifest.Digest computes it: of the bytes,
 * except for a signed schema 1 manifest, whose digest is of its JWS payload.
 */
export function manifestDigest(bytes: Uint8Array, algorithm: DigestAlgorithm = "sha256", what = "manifest"): Digest {
  let obj: unknown;
  try {
    obj = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    return digestOf(bytes, algorithm);
  }
  if (typeof obj === "object" && obj !== null && !Array.isArray(obj)) {
    const o = obj as Record<string, unknown>;
    if (o.schemaVersion === 1 && hasSchema1Signatures(o)) return digestOf(schema1Payload(bytes, o, what), algorithm);
  }
  return digestOf(bytes, algorithm);
}
