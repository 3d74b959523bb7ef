/**
 * containers "simple signing" (containers-signature(5), a.k.a. atomic container signatures): a JSON
 * payload naming an image by manifest digest and Docker reference, signed as an OpenPGP signed
 * message. Byte-compatible with containers/image's `signature/simple.go`: skopeo and podman accept
 * what {@link signManifest} writes, and {@link verifySignature} accepts what they write.
 *
 * Verification follows simple.go's order: the cryptography first (a signature that does not verify
 * with a trusted key is never parsed), then strict parsing of the payload, then the manifest digest
 * and the identity. Every value read from a signature before it is verified and matched is called
 * "untrusted…" in this code.
 *
 * @see https://github.com/containers/image/blob/main/docs/containers-signature.5.md
 * @see https://github.com/containers/image/blob/main/signature/simple.go
 */
import { AirlockError, type Digest, type DigestAlgorithm, DockerReference, digestAlgorithm, manifestDigest as coreManifestDigest, parseDigest } from "@airlock/core";
import type { PublicKey } from "openpgp";
import { goJSONMarshal, isJSONObject, type JSONObject, type JSONValue, jsonTypeOf, parseStrictJSON } from "./json.js";
import { type KeyInput, readPrivateKey, readPublicKeys } from "./keys.js";
import { signMessage, verifyMessage } from "./mechanism.js";

/** The `critical.type` of a simple signing payload. */
export const SIGNATURE_TYPE = "atomic container signature";

/** The `optional.creator` airlock writes unless told otherwise (c/image writes "atomic <version>"). */
export const DEFAULT_CREATOR = "airlock";

/** The content of a simple signing payload, as written or as read (still untrusted until verified). */
export interface SignaturePayload {
  /** `critical.image.docker-manifest-digest`. */
  dockerManifestDigest: Digest;
  /** `critical.identity.docker-reference`, as written in the payload. */
  dockerReference: string;
  /** `optional.creator`, if present. */
  creator?: string;
  /** `optional.timestamp` (whole seconds), if present. */
  timestamp?: Date;
}

/**
 * Serialises a payload exactly as containers/image's `untrustedSignature.MarshalJSON` does: Go's
 * `json.Marshal` of nested maps (sorted keys, compact, HTML-safe escapes).
 */
export function marshalPayload(payload: SignaturePayload): Uint8Array {
  if (payload.dockerManifestDigest === "" || payload.dockerReference === "") {
    throw new AirlockError("ERR_INVALID_ARGUMENT", "cannot sign: the manifest digest and the Docker reference must not be empty");
  }
  const optional: Record<string, string | number> = {};
  if (payload.creator !== undefined) optional.creator = payload.creator;
  if (payload.timestamp !== undefined) optional.timestamp = Math.floor(payload.timestamp.getTime() / 1000);
  const json = goJSONMarshal({
    critical: {
      type: SIGNATURE_TYPE,
      image: { "docker-manifest-digest": payload.dockerManifestDigest },
      identity: { "docker-reference": payload.dockerReference },
    },
    optional,
  });
  return new TextEncoder().encode(json);
}

function invalidPayload(why: string): AirlockError {
  return new AirlockError("ERR_SIGNATURE", `invalid signature payload: ${why}`);
}

/** Reads `obj` as an object with exactly the fields `names` (c/image `ParanoidUnmarshalJSONObjectExactFields`). */
function exactFields(obj: JSONValue | undefined, where: string, names: readonly string[]): JSONObject {
  if (!isJSONObject(obj)) throw invalidPayload(`${where} must be a JSON object, not ${obj === undefined ? "missing" : jsonTypeOf(obj)}`);
  for (const key of Object.keys(obj)) {
    if (!names.includes(key)) {
      throw invalidPayload(
        where === "the payload" ? `payload has unknown top-level field ${JSON.stringify(key)}` : `payload has unknown critical field ${JSON.stringify(`${where}.${key}`)}`,
      );
    }
  }
  for (const name of names) {
    if (!Object.hasOwn(obj, name)) throw invalidPayload(`payload lacks the field ${JSON.stringify(where === "the payload" ? name : `${where}.${name}`)}`);
  }
  return obj;
}

function stringField(obj: JSONObject, key: string, where: string): string {
  const v = obj[key] as JSONValue;
  if (typeof v !== "string") throw invalidPayload(`${where}.${key} must be a string, not ${jsonTypeOf(v)}`);
  return v;
}

/**
 * Parses a payload strictly, as containers/image's `untrustedSignature.strictUnmarshalJSON`: the
 * top level has exactly `critical` and `optional`; `critical` exactly `type`, `image` and
 * `identity`, each with exactly its one field; `critical.type` must be "atomic container
 * signature"; unknown `optional` fields are ignored; a duplicate key anywhere is an error; a
 * timestamp must be an integer. Call it only on a payload whose signature has verified: the result
 * is still untrusted until its digest and identity have been matched. Throws ERR_SIGNATURE.
 */
export function parseUntrustedPayload(bytes: Uint8Array): SignaturePayload {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", "invalid signature payload: not valid UTF-8", { cause: err });
  }
  let doc: JSONValue;
  try {
    doc = parseStrictJSON(text);
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `invalid signature payload: ${(err as Error).message}`, { cause: err });
  }
  const top = exactFields(doc, "the payload", ["critical", "optional"]);
  const optional = top.optional as JSONValue;
  if (!isJSONObject(optional)) throw invalidPayload(`optional must be a JSON object, not ${jsonTypeOf(optional)}`);

  const untrusted: Partial<SignaturePayload> = {};
  const creator = optional.creator;
  if (creator !== undefined && creator !== null) {
    if (typeof creator !== "string") throw invalidPayload(`optional.creator must be a string, not ${jsonTypeOf(creator)}`);
    untrusted.creator = creator;
  }
  const timestamp = optional.timestamp;
  if (timestamp !== undefined && timestamp !== null) {
    if (typeof timestamp !== "number") throw invalidPayload(`optional.timestamp must be a number, not ${jsonTypeOf(timestamp)}`);
    if (!Number.isSafeInteger(timestamp)) throw invalidPayload(`field optional.timestamp is not an integer: ${timestamp}`);
    untrusted.timestamp = new Date(timestamp * 1000);
  }

  const critical = exactFields(top.critical, "critical", ["type", "image", "identity"]);
  const type = stringField(critical, "type", "critical");
  if (type !== SIGNATURE_TYPE) throw invalidPayload(`unrecognized signature type ${JSON.stringify(type)}; expected ${JSON.stringify(SIGNATURE_TYPE)}`);
  const image = exactFields(critical.image, "critical.image", ["docker-manifest-digest"]);
  const untrustedDigest = stringField(image, "docker-manifest-digest", "critical.image");
  try {
    untrusted.dockerManifestDigest = parseDigest(untrustedDigest);
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `invalid signature payload: invalid docker-manifest-digest value ${JSON.stringify(untrustedDigest)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const identity = exactFields(critical.identity, "critical.identity", ["docker-reference"]);
  untrusted.dockerReference = stringField(identity, "docker-reference", "critical.identity");
  return untrusted as SignaturePayload;
}

/** Computes the digest of `manifest` with `algorithm`, as containers/image's `manifest.Digest` does (of a signed schema 1 manifest: of its JWS payload). */
function manifestDigest(manifest: Uint8Array, algorithm: DigestAlgorithm): Digest {
  return coreManifestDigest(manifest, algorithm);
}

/**
 * Checks that a verified payload's `untrustedDigest` names `manifest` (computed with the digest's
 * own algorithm). Throws ERR_SIGNATURE "signature is for image X, not Y".
 */
export function assertManifestMatches(manifest: Uint8Array, untrustedDigest: Digest): void {
  const actual = manifestDigest(manifest, digestAlgorithm(untrustedDigest));
  if (actual !== untrustedDigest) {
    throw new AirlockError("ERR_SIGNATURE", `signature is for image ${untrustedDigest}, not ${actual}: the manifest is not the one that was signed`);
  }
}

/** Normalises a Docker reference as ParseNormalizedNamed does (no default tag), or throws `problem`. */
function normalised(ref: string, problem: (err: Error) => AirlockError): string {
  try {
    return DockerReference.parse(ref).toString();
  } catch (err) {
    throw problem(err as Error);
  }
}

/** Options of {@link signManifest}. */
export interface SignManifestOptions {
  /** The exact manifest bytes to sign (its digest is computed with sha256). */
  manifest: Uint8Array;
  /** The identity to sign, normally `host/repo:tag`; written as given, after checking that it parses. */
  dockerReference: string;
  /** One secret key, armored or binary (`gpg --export-secret-keys [--armor] KEY`). */
  privateKey: KeyInput;
  /** The passphrase of a protected key. Must not contain a line break (as containers/image). */
  passphrase?: string;
  /** `optional.creator`; default {@link DEFAULT_CREATOR}. */
  creator?: string;
  /** The signing time: `optional.timestamp` (whole seconds) and the OpenPGP signature's creation time; default now. */
  timestamp?: Date;
}

/**
 * Signs a manifest for `dockerReference` with containers simple signing: the payload of
 * {@link marshalPayload} in a binary OpenPGP signed message — the bytes skopeo would store as
 * `signature-N`. Throws ERR_INVALID_ARGUMENT for a bad reference or passphrase, ERR_SIGNATURE
 * for key problems.
 */
export async function signManifest(options: SignManifestOptions): Promise<Uint8Array> {
  const { manifest, dockerReference, passphrase } = options;
  normalised(dockerReference, (err) => new AirlockError("ERR_INVALID_ARGUMENT", `cannot sign for ${JSON.stringify(dockerReference)}: ${err.message}`, { cause: err }));
  if (passphrase?.includes("\n") || passphrase?.includes("\r")) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", "invalid passphrase: must not contain a line break");
  }
  const key = await readPrivateKey(options.privateKey, passphrase);
  const timestamp = new Date(Math.floor((options.timestamp ?? new Date()).getTime() / 1000) * 1000);
  const payload = marshalPayload({
    dockerManifestDigest: manifestDigest(manifest, "sha256"),
    dockerReference,
    creator: options.creator ?? DEFAULT_CREATOR,
    timestamp,
  });
  return signMessage(payload, key, timestamp);
}

/** Options of {@link verifySignature}. */
export interface VerifySignatureOptions {
  /** The signature blob (a binary OpenPGP signed message, as skopeo stores it). Untrusted. */
  signature: Uint8Array;
  /** The trusted public keys: one or more keyrings, armored or binary. */
  publicKeys: KeyInput | readonly KeyInput[];
  /** The manifest the signature must be for: exact bytes. */
  manifest: Uint8Array;
  /**
   * The identity the signature must name. Both sides are normalised (`docker.io`, `library/`, no
   * default tag added) and must then be equal, as `skopeo standalone-verify` requires. Omit to
   * accept any identity (the caller then MUST check `dockerReference` itself, e.g. with a policy).
   */
  expectedDockerReference?: string;
  /** If given, the signing key must be one of these primary-key fingerprints (hex, any case). */
  expectedFingerprints?: readonly string[];
  /** The time at which keys must be valid; default now. */
  now?: Date;
}

/** A signature that has verified: who signed which manifest under which name. */
export interface VerifiedSignature {
  /** The manifest digest the signature is for (matches the manifest). */
  dockerManifestDigest: Digest;
  /** The identity in the signature, as written there. */
  dockerReference: string;
  /** Fingerprint (uppercase hex) of the primary key that signed. */
  keyFingerprint: string;
  /** Fingerprint of the (sub)key that made the signature packet. */
  signingKeyFingerprint: string;
  /** `optional.timestamp`, if the signature has one (informational). */
  timestamp?: Date;
  /** `optional.creator`, if the signature has one (informational). */
  creator?: string;
}

/**
 * Verifies a simple signing signature for `manifest`, in containers/image's order: (1) the OpenPGP
 * signed message verifies with one of `publicKeys`, whose key is neither expired nor revoked (and
 * is among `expectedFingerprints`, if given); (2) the payload parses strictly; (3) its manifest
 * digest matches `manifest`; (4) its identity equals `expectedDockerReference`, if given. Throws
 * ERR_SIGNATURE with a message that says which step failed and why.
 */
export async function verifySignature(options: VerifySignatureOptions): Promise<VerifiedSignature> {
  const keys = await readPublicKeys(options.publicKeys);
  const expected =
    options.expectedDockerReference === undefined
      ? undefined
      : normalised(
          options.expectedDockerReference,
          (err) => new AirlockError("ERR_INVALID_ARGUMENT", `invalid expected identity ${JSON.stringify(options.expectedDockerReference)}: ${err.message}`, { cause: err }),
        );
  const wanted = options.expectedFingerprints?.map((f) => f.replace(/\s+/g, "").toUpperCase());
  return verifyAndExtract(options.signature, keys, options.manifest, options.now ?? new Date(), {
    validateKey: (primary, signing) => {
      if (wanted !== undefined && !wanted.includes(primary) && !wanted.includes(signing)) {
        throw new AirlockError("ERR_SIGNATURE", `signature made by key ${primary}, not one of the trusted keys (${wanted.join(", ")})`);
      }
    },
    validateIdentity: (untrustedReference) => {
      if (expected === undefined) return;
      const signed = normalised(
        untrustedReference,
        (err) => new AirlockError("ERR_SIGNATURE", `invalid docker reference ${JSON.stringify(untrustedReference)} in signature: ${err.message}`, { cause: err }),
      );
      if (signed !== expected) throw new AirlockError("ERR_SIGNATURE", `signature identity ${signed} does not match ${expected}`);
    },
  });
}

/** The checks {@link verifyAndExtract} applies after the cryptography (c/image `signatureAcceptanceRules`). */
export interface SignatureAcceptanceRules {
  /** Throws unless the key (primary and signing fingerprints) is acceptable. */
  validateKey?(keyFingerprint: string, signingKeyFingerprint: string): void;
  /** Throws unless the identity in the (verified, digest-matched) payload is acceptable. */
  validateIdentity(untrustedDockerReference: string): void;
}

/**
 * The verification pipeline shared by {@link verifySignature} and policy evaluation, in
 * containers/image's `verifyAndExtractSignature` order: cryptography with `keys` at `now`, key
 * rule, strict payload parsing, manifest digest, identity rule. Throws ERR_SIGNATURE.
 */
export async function verifyAndExtract(
  untrustedSignature: Uint8Array,
  keys: readonly PublicKey[],
  manifest: Uint8Array,
  now: Date,
  rules: SignatureAcceptanceRules,
): Promise<VerifiedSignature> {
  const verified = await verifyMessage(untrustedSignature, keys, now);
  rules.validateKey?.(verified.keyFingerprint, verified.signingKeyFingerprint);
  const untrusted = parseUntrustedPayload(verified.signedPayload);
  assertManifestMatches(manifest, untrusted.dockerManifestDigest);
  rules.validateIdentity(untrusted.dockerReference);
  // The rules have accepted these values: from here on they are the signature's trusted content.
  const result: VerifiedSignature = {
    dockerManifestDigest: untrusted.dockerManifestDigest,
    dockerReference: untrusted.dockerReference,
    keyFingerprint: verified.keyFingerprint,
    signingKeyFingerprint: verified.signingKeyFingerprint,
  };
  if (untrusted.timestamp !== undefined) result.timestamp = untrusted.timestamp;
  if (untrusted.creator !== undefined) result.creator = untrusted.creator;
  return result;
}
