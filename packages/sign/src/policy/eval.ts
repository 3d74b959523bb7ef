/**
 * Policy evaluation: may this image be copied or imported? (containers/image
 * `PolicyContext.IsRunningImageAllowed`.) Every requirement of the selected scope must be
 * satisfied; a `signedBy` requirement is satisfied by one accepted signature. Callers evaluate the
 * policy before reading any blob (skopeo does it before anything else is copied).
 *
 * @see https://github.com/containers/image/blob/main/signature/policy_eval.go
 * @see https://github.com/containers/image/blob/main/signature/policy_eval_signedby.go
 */
import { readFile } from "node:fs/promises";
import { AirlockError } from "@airlock/core";
import type { PublicKey } from "openpgp";
import { readPublicKeys } from "../keys.js";
import { type VerifiedSignature, verifyAndExtract } from "../simple.js";
import type { Policy, PolicyRequirement, SignedByRequirement } from "./config.js";
import { describeSignedIdentity, signedIdentityMatches } from "./identity.js";
import { DOCKER_SCOPED_TRANSPORTS, dockerPolicyIdentity, requirementsFor } from "./scope.js";

/** What {@link evaluatePolicy} needs to know about an image. */
export interface PolicyImage {
  /** The transport name as in policy.json: `docker`, `dir`, `oci`, `oci-archive`, `docker-archive`… */
  transport: string;
  /**
   * The image's policy identity in that transport: for `dir`/`oci`/`oci-archive` the absolute,
   * symlink-free path (see resolvePolicyPath); for `docker` it may be omitted and is derived from
   * `dockerReference`. "" for transports without scopes.
   */
  scope?: string;
  /** The image's Docker reference (`host/repo:tag` or `…@digest`), if it has one; used by identity rules. */
  dockerReference?: string;
  /** How to name the image in messages, e.g. `docker://localhost:5000/app:1`; default `TRANSPORT:SCOPE`. */
  imageName?: string;
  /**
   * The manifest the signatures must be for, exact bytes. The caller MUST already have checked it
   * against the digest it asked for (a digest reference, or an index entry).
   */
  manifest: Uint8Array;
  /** The image's signatures as stored (untrusted blobs). */
  signatures: readonly Uint8Array[];
}

/** Options of {@link evaluatePolicy}. */
export interface EvaluatePolicyOptions {
  /** Reads a `keyPath`/`keyPaths` file; default fs.readFile. */
  readKey?: (path: string) => Promise<Uint8Array>;
  /** The time at which keys must be valid; default now. */
  now?: Date;
  /**
   * Require that at least one requirement verified a signature (skopeo's `--require-signed`,
   * c/image `PolicyContext.RequireSignatureVerification`): a scope whose requirements are all
   * satisfied without one (`insecureAcceptAnything`) is rejected.
   */
  requireSignatureVerification?: boolean;
}

/** The outcome of an accepted evaluation. */
export interface PolicyDecision {
  /** Which part of the policy applied: `transports.docker["quay.io/ns"]`, `transports.dir[""]`, `default`. */
  scope: string;
  /** The requirements that were satisfied. */
  requirements: PolicyRequirement[];
  /** The signatures accepted by `signedBy` requirements (empty when none was required). */
  signatures: VerifiedSignature[];
}

/** The policy refused an image. The message starts with "Source image rejected: " and says why. */
export class PolicyRejectionError extends AirlockError {
  /** Which part of the policy applied (see {@link PolicyDecision.scope}). */
  readonly scope: string;

  constructor(reason: string, scope: string, options: { cause?: unknown } = {}) {
    super("ERR_POLICY_REJECTED", `Source image rejected: ${reason}`, options);
    this.name = "PolicyRejectionError";
    this.scope = scope;
  }
}

/** A reason a requirement is not satisfied (c/image PolicyRequirementError). */
class Unsatisfied extends Error {}

/**
 * Evaluates `policy` for `image`. Returns the decision when the image is allowed; throws
 * {@link PolicyRejectionError} (ERR_POLICY_REJECTED) saying why it is not, e.g. "Source image
 * rejected: Running image docker://x:1 is rejected by policy." or "Source image rejected: A
 * signature was required, but no signature exists". Throws ERR_INVALID_ARGUMENT when the image
 * cannot be placed in the policy (no scope and no Docker reference).
 */
export async function evaluatePolicy(policy: Policy, image: PolicyImage, options: EvaluatePolicyOptions = {}): Promise<PolicyDecision> {
  let identity = image.scope;
  if (identity === undefined) {
    if (DOCKER_SCOPED_TRANSPORTS.has(image.transport) && image.dockerReference !== undefined) {
      identity = dockerPolicyIdentity(image.dockerReference);
    } else {
      throw new AirlockError(
        "ERR_INVALID_ARGUMENT",
        `cannot evaluate the policy for a ${image.transport} image without its policy scope (an absolute path for dir/oci, a Docker reference for docker)`,
      );
    }
  }
  const imageName = image.imageName ?? `${image.transport}:${identity}`;
  const { scope, requirements } = requirementsFor(policy, image.transport, identity);
  const now = options.now ?? new Date();
  const readKey = options.readKey ?? ((p: string) => readFile(p));
  const accepted: VerifiedSignature[] = [];
  if (requirements.length === 0) throw new PolicyRejectionError("List of verification policy requirements must not be empty", scope);
  for (const req of requirements) {
    try {
      switch (req.type) {
        case "insecureAcceptAnything":
          break;
        case "reject":
          throw new Unsatisfied(`Running image ${imageName} is rejected by policy.`);
        case "signedBy":
          accepted.push(await satisfySignedBy(req, image, imageName, readKey, now));
          break;
        case "sigstoreSigned":
          throw new Unsatisfied(`${scope} requires a sigstoreSigned signature, which airlock cannot verify (it supports signedBy with GPG keys)`);
        case "signedBaseLayer":
          throw new Unsatisfied(`${scope} requires signedBaseLayer, which is not implemented (nor by containers/image)`);
      }
    } catch (err) {
      if (err instanceof Unsatisfied) throw new PolicyRejectionError(err.message, scope, { cause: err.cause });
      throw err;
    }
  }
  if (options.requireSignatureVerification && accepted.length === 0) {
    throw new PolicyRejectionError(
      `Signature verification was required (--require-signed), but the policy for ${imageName} (${scope}: ${requirements.map((r) => r.type).join(", ")}) has no requirement that verifies a signature; add a signedBy requirement for it to the policy`,
      scope,
    );
  }
  return { scope, requirements, signatures: accepted };
}

/** Reads the keys of a signedBy requirement; failures make the requirement unsatisfied. */
async function keysOf(req: SignedByRequirement, readKey: (path: string) => Promise<Uint8Array>): Promise<PublicKey[]> {
  const data: Uint8Array[] = [];
  if (req.keyData !== undefined) data.push(req.keyData);
  for (const path of req.keyPath !== undefined ? [req.keyPath] : (req.keyPaths ?? [])) {
    try {
      data.push(await readKey(path));
    } catch (err) {
      throw new Unsatisfied(`cannot read the signedBy key file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    return await readPublicKeys(data, req.keyData !== undefined ? "signedBy keyData" : "signedBy key file");
  } catch (err) {
    throw new Unsatisfied(`No public keys imported: ${(err as Error).message}`, { cause: err });
  }
}

async function satisfySignedBy(
  req: SignedByRequirement,
  image: PolicyImage,
  imageName: string,
  readKey: (path: string) => Promise<Uint8Array>,
  now: Date,
): Promise<VerifiedSignature> {
  if (req.keyType !== "GPGKeys") throw new Unsatisfied(`Unimplemented "keyType" value "${req.keyType}"`);
  const keys = await keysOf(req, readKey);
  const rule = req.signedIdentity;
  const needsImageReference = rule.type !== "exactReference" && rule.type !== "exactRepository";
  const rejections: string[] = [];
  for (const untrustedSignature of image.signatures) {
    try {
      return await verifyAndExtract(untrustedSignature, keys, image.manifest, now, {
        validateIdentity: (untrustedReference) => {
          if (needsImageReference && image.dockerReference === undefined) {
            throw new Unsatisfied(
              `Docker reference match attempted on image ${imageName} with no known Docker reference identity (use signedIdentity exactReference or exactRepository)`,
            );
          }
          if (!signedIdentityMatches(rule, image.dockerReference, untrustedReference)) {
            const target = needsImageReference ? ` for image ${image.dockerReference}` : "";
            throw new Unsatisfied(`Signature for identity ${untrustedReference} is not accepted${target} (signedIdentity ${describeSignedIdentity(rule)})`);
          }
        },
      });
    } catch (err) {
      if (err instanceof Unsatisfied || err instanceof AirlockError) rejections.push(err.message);
      else throw err;
    }
  }
  if (rejections.length === 0) throw new Unsatisfied("A signature was required, but no signature exists");
  if (rejections.length === 1) throw new Unsatisfied(rejections[0] as string);
  throw new Unsatisfied(`None of the signatures were accepted, reasons: ${rejections.join("; ")}`);
}
