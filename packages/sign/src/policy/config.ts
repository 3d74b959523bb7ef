/**
 * policy.json (containers-policy.json(5)): the trust policy that says which images may be copied
 * or imported, parsed as strictly as containers/image's `signature/policy_config.go` — unknown
 * fields, duplicate keys, a missing `default`, an empty requirement list or an invalid scope reject
 * the whole file, with a message that names the field.
 *
 * @see https://github.com/containers/image/blob/main/docs/containers-policy.json.5.md
 * @see https://github.com/containers/image/blob/main/signature/policy_config.go
 */
import { Buffer } from "node:buffer";
import { AirlockError, DockerReference, isValidDomain, parseDigest } from "@airlock/core";
import { isJSONObject, type JSONObject, type JSONValue, jsonTypeOf, parseStrictJSON } from "../json.js";

/** `{"type": "insecureAcceptAnything"}`: accept the image, signed or not. */
export interface InsecureAcceptAnythingRequirement {
  type: "insecureAcceptAnything";
}

/** `{"type": "reject"}`: refuse the image. */
export interface RejectRequirement {
  type: "reject";
}

/** The `keyType` values of `signedBy`; only `GPGKeys` is implemented (as in containers/image). */
export type SignedByKeyType = "GPGKeys" | "signedByGPGKeys" | "X509Certificates" | "signedByX509CAs";

/** `signedBy`: at least one signature by one of the keys, for an accepted identity. */
export interface SignedByRequirement {
  type: "signedBy";
  keyType: SignedByKeyType;
  /** Exactly one of keyPath, keyPaths and keyData is set. */
  keyPath?: string;
  keyPaths?: string[];
  /** The decoded bytes of the base64 `keyData` (a keyring, armored or binary). */
  keyData?: Uint8Array;
  /** Which signed identities are accepted; `matchRepoDigestOrExact` when the file omits it. */
  signedIdentity: SignedIdentity;
}

/** `sigstoreSigned`: parsed so that policies that mention it load, but airlock cannot satisfy it. */
export interface SigstoreSignedRequirement {
  type: "sigstoreSigned";
  /** The requirement's fields as written (checked for unknown names only). */
  fields: JSONObject;
}

/** `signedBaseLayer`: defined by containers/image, never implemented there nor here. */
export interface SignedBaseLayerRequirement {
  type: "signedBaseLayer";
  baseLayerIdentity: SignedIdentity;
}

/** One requirement of a policy scope; every requirement of the scope must be satisfied. */
export type PolicyRequirement =
  | InsecureAcceptAnythingRequirement
  | RejectRequirement
  | SignedByRequirement
  | SigstoreSignedRequirement
  | SignedBaseLayerRequirement;

/** How the identity in a signature must relate to the image's reference (policy "signedIdentity"). */
export type SignedIdentity =
  | { type: "matchExact" }
  | { type: "matchRepoDigestOrExact" }
  | { type: "matchRepository" }
  | { type: "exactReference"; dockerReference: string }
  | { type: "exactRepository"; dockerRepository: string }
  | { type: "remapIdentity"; prefix: string; signedPrefix: string };

/** A parsed policy: the default requirements and, per transport, requirements per scope. */
export interface Policy {
  /** Requirements for images that no transport scope matches. Never empty. */
  default: PolicyRequirement[];
  /** transport name → scope ("" = the transport's default) → requirements (never empty). */
  transports: Map<string, Map<string, PolicyRequirement[]>>;
}

/** A problem at a JSON path of the policy; turned into ERR_POLICY by {@link parsePolicy}. */
class PolicyFormatError extends Error {}

const fmt = (where: string, problem: string) => new PolicyFormatError(where === "" ? problem : `${where}: ${problem}`);
const q = (s: string) => JSON.stringify(s);
const child = (where: string, key: string) => (/^[A-Za-z][A-Za-z0-9]*$/.test(key) ? (where === "" ? key : `${where}.${key}`) : `${where}[${q(key)}]`);

/** Checks that `v` is an object whose keys are all in `allowed`; returns it. */
function object(v: JSONValue | undefined, where: string, allowed: readonly string[] | undefined): JSONObject {
  if (!isJSONObject(v)) throw fmt(where, `expected a JSON object, got ${v === undefined ? "nothing" : jsonTypeOf(v)}`);
  if (allowed !== undefined) {
    for (const key of Object.keys(v)) {
      if (!allowed.includes(key)) throw fmt(where, `unknown field ${q(key)} (allowed: ${allowed.join(", ")})`);
    }
  }
  return v;
}

function string(obj: JSONObject, key: string, where: string): string {
  const v = obj[key];
  if (v === undefined) throw fmt(where, `missing field ${q(key)}`);
  if (typeof v !== "string") throw fmt(child(where, key), `expected a string, got ${jsonTypeOf(v)}`);
  return v;
}

/** Decodes standard base64 as Go's encoding/json does for []byte (padding required, CR/LF ignored). */
function base64(s: string, where: string): Uint8Array {
  const clean = s.replace(/[\r\n]/g, "");
  if (clean.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) throw fmt(where, "is not valid base64");
  return new Uint8Array(Buffer.from(clean, "base64"));
}

/** Reports whether a remapIdentity prefix is acceptable (policy_config.go validateIdentityRemappingPrefix). */
function validRemapPrefix(s: string): boolean {
  if (isValidDomain(s)) return true;
  const slash = s.indexOf("/");
  if (slash <= 0 || !isValidDomain(s.slice(0, slash))) return false;
  try {
    const ref = DockerReference.parse(`example.com/${s.slice(slash + 1)}`);
    return ref.tag === undefined && ref.digest === undefined;
  } catch {
    return false;
  }
}

function parseSignedIdentity(v: JSONValue | undefined, where: string): SignedIdentity {
  const obj = object(v, where, undefined);
  const type = string(obj, "type", where);
  const exact = (fields: string[]) => object(obj, where, ["type", ...fields]);
  switch (type) {
    case "matchExact":
    case "matchRepoDigestOrExact":
    case "matchRepository":
      exact([]);
      return { type };
    case "exactReference": {
      exact(["dockerReference"]);
      const dockerReference = string(obj, "dockerReference", where);
      let ref: DockerReference;
      try {
        ref = DockerReference.parse(dockerReference);
      } catch (err) {
        throw fmt(child(where, "dockerReference"), `invalid format of dockerReference ${q(dockerReference)}: ${(err as Error).message}`);
      }
      if (ref.tag === undefined && ref.digest === undefined) {
        throw fmt(child(where, "dockerReference"), `dockerReference ${q(dockerReference)} contains neither a tag nor a digest`);
      }
      return { type, dockerReference };
    }
    case "exactRepository": {
      exact(["dockerRepository"]);
      const dockerRepository = string(obj, "dockerRepository", where);
      try {
        DockerReference.parse(dockerRepository);
      } catch (err) {
        throw fmt(child(where, "dockerRepository"), `invalid format of dockerRepository ${q(dockerRepository)}: ${(err as Error).message}`);
      }
      return { type, dockerRepository };
    }
    case "remapIdentity": {
      exact(["prefix", "signedPrefix"]);
      const prefix = string(obj, "prefix", where);
      const signedPrefix = string(obj, "signedPrefix", where);
      for (const [k, p] of [
        ["prefix", prefix],
        ["signedPrefix", signedPrefix],
      ] as const) {
        if (!validRemapPrefix(p)) throw fmt(child(where, k), `prefix ${q(p)} is not valid; expected a host[:port] or host[:port]/namespace…`);
      }
      return { type, prefix, signedPrefix };
    }
    default:
      throw fmt(child(where, "type"), `unknown policy reference match type ${q(type)} (expected matchExact, matchRepoDigestOrExact, matchRepository, exactReference, exactRepository or remapIdentity)`);
  }
}

const KEY_TYPES: readonly string[] = ["GPGKeys", "signedByGPGKeys", "X509Certificates", "signedByX509CAs"];
const SIGSTORE_FIELDS = [
  "type",
  "keyPath",
  "keyPaths",
  "keyData",
  "keyDatas",
  "fulcio",
  "pki",
  "rekorPublicKeyPath",
  "rekorPublicKeyPaths",
  "rekorPublicKeyData",
  "rekorPublicKeyDatas",
  "signedIdentity",
];

function parseRequirement(v: JSONValue, where: string): PolicyRequirement {
  const obj = object(v, where, undefined);
  const type = string(obj, "type", where);
  switch (type) {
    case "insecureAcceptAnything":
    case "reject":
      object(obj, where, ["type"]);
      return { type };
    case "signedBy": {
      object(obj, where, ["type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"]);
      const keyType = string(obj, "keyType", where);
      if (!KEY_TYPES.includes(keyType)) throw fmt(child(where, "keyType"), `unrecognized keyType value ${q(keyType)} (expected GPGKeys)`);
      const sources = ["keyPath", "keyPaths", "keyData"].filter((k) => obj[k] !== undefined);
      if (sources.length !== 1) {
        throw fmt(
          where,
          sources.length === 0
            ? "exactly one of keyPath, keyPaths and keyData must be specified, none of them present"
            : `exactly one of keyPath, keyPaths and keyData must be specified, found ${sources.join(" and ")}`,
        );
      }
      const req: SignedByRequirement = {
        type,
        keyType: keyType as SignedByKeyType,
        signedIdentity: obj.signedIdentity === undefined ? { type: "matchRepoDigestOrExact" } : parseSignedIdentity(obj.signedIdentity, child(where, "signedIdentity")),
      };
      if (obj.keyPath !== undefined) {
        req.keyPath = string(obj, "keyPath", where);
        if (req.keyPath === "") throw fmt(child(where, "keyPath"), "must not be empty");
      } else if (obj.keyPaths !== undefined) {
        const paths = obj.keyPaths;
        if (!Array.isArray(paths)) throw fmt(child(where, "keyPaths"), `expected an array of strings, got ${jsonTypeOf(paths)}`);
        if (paths.length === 0) throw fmt(child(where, "keyPaths"), "must list at least one key file");
        req.keyPaths = paths.map((p, n) => {
          if (typeof p !== "string" || p === "") throw fmt(`${child(where, "keyPaths")}[${n}]`, "expected a non-empty string (a key file path)");
          return p;
        });
      } else {
        req.keyData = base64(string(obj, "keyData", where), child(where, "keyData"));
        if (req.keyData.length === 0) throw fmt(child(where, "keyData"), "must not be empty");
      }
      return req;
    }
    case "sigstoreSigned":
      return { type, fields: object(obj, where, SIGSTORE_FIELDS) };
    case "signedBaseLayer":
      object(obj, where, ["type", "baseLayerIdentity"]);
      return { type, baseLayerIdentity: parseSignedIdentity(obj.baseLayerIdentity, child(where, "baseLayerIdentity")) };
    default:
      throw fmt(child(where, "type"), `unknown policy requirement type ${q(type)} (expected insecureAcceptAnything, reject, signedBy or sigstoreSigned)`);
  }
}

function parseRequirements(v: JSONValue | undefined, where: string): PolicyRequirement[] {
  if (!Array.isArray(v)) throw fmt(where, `expected an array of requirements, got ${v === undefined ? "nothing" : jsonTypeOf(v)}`);
  if (v.length === 0) throw fmt(where, "the list of verification policy requirements must not be empty");
  return v.map((r, n) => parseRequirement(r, `${where}[${n}]`));
}

/** Transports whose scopes are absolute paths (and their parents). */
const PATH_TRANSPORTS = new Set(["dir", "oci", "oci-archive", "sif"]);
/** Transports that have no scopes but "". */
const UNSCOPED_TRANSPORTS = new Set(["docker-archive", "tarball"]);

/**
 * Explains why `scope` is not a valid policy scope for `transport`, or returns undefined. As
 * containers/image's `ValidatePolicyConfigurationScope` of each transport; unknown transports and
 * `docker` accept any scope.
 */
export function scopeProblem(transport: string, scope: string): string | undefined {
  if (scope === "") return undefined;
  if (PATH_TRANSPORTS.has(transport)) {
    if (!scope.startsWith("/")) return "must be an absolute path";
    if (scope === "/") return 'use the generic default scope "" instead of "/"';
    const cleaned = cleanPath(scope);
    if (cleaned !== scope) return `uses a non-canonical path format, perhaps try ${q(cleaned)}`;
    return undefined;
  }
  if (UNSCOPED_TRANSPORTS.has(transport)) return `the ${transport} transport supports no scope except the default ""`;
  if (transport === "docker-daemon") {
    try {
      parseDigest(scope);
      return "an algo:digest value cannot be used as a namespace";
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Lexically cleans a POSIX path as Go's filepath.Clean does (no trailing slash, no `.`/`..`, no `//`). */
export function cleanPath(p: string): string {
  const abs = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  return abs ? `/${joined}` : joined === "" ? "." : joined;
}

/**
 * Parses policy.json content strictly (see the module comment). `source` names the file in
 * messages. Throws ERR_POLICY: `invalid policy in FILE: transports.docker["x"][0]: unknown field …`.
 */
export function parsePolicy(content: string | Uint8Array, source = "policy.json"): Policy {
  const text = typeof content === "string" ? content : new TextDecoder().decode(content);
  try {
    let doc: JSONValue;
    try {
      doc = parseStrictJSON(text);
    } catch (err) {
      throw new PolicyFormatError((err as Error).message);
    }
    const top = object(doc, "", ["default", "transports"]);
    if (top.default === undefined) throw new PolicyFormatError('the "default" policy is missing');
    const policy: Policy = { default: parseRequirements(top.default, "default"), transports: new Map() };
    if (top.transports !== undefined) {
      const transports = object(top.transports, "transports", undefined);
      for (const [name, scopesJSON] of Object.entries(transports)) {
        const where = child("transports", name);
        const scopes = new Map<string, PolicyRequirement[]>();
        for (const [scope, reqs] of Object.entries(object(scopesJSON, where, undefined))) {
          const problem = scopeProblem(name, scope);
          if (problem !== undefined) throw fmt(`${where}[${q(scope)}]`, `invalid scope: ${problem}`);
          scopes.set(scope, parseRequirements(reqs, `${where}[${q(scope)}]`));
        }
        policy.transports.set(name, scopes);
      }
    }
    return policy;
  } catch (err) {
    if (err instanceof PolicyFormatError) {
      throw new AirlockError("ERR_POLICY", `invalid policy in ${q(source)}: ${err.message}`, { cause: err });
    }
    throw err;
  }
}
