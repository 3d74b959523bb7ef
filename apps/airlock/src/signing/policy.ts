/**
 * The trust policy for the CLI: which policy.json applies (the global `--policy FILE` and
 * `--insecure-policy`, else containers-policy.json(5)'s default lookup), and the check the copy
 * pipeline calls before it reads any blob.
 *
 * One deliberate difference from skopeo: when neither flag is given and NO policy file exists in
 * any default location (`$CONTAINERS_POLICY_JSON` unset, no `~/.config/containers/policy.json`,
 * `/etc/containers/policy.json` or `/usr/share/containers/policy.json`), skopeo fails, while
 * airlock accepts every image, silently, as it did before it had trust policies — so a host
 * without containers' configuration keeps working. A policy that exists is always enforced, and a
 * policy file that is named but missing or invalid is an error.
 */
import { existsSync } from "node:fs";
import type { PolicyCheck } from "@airlock/core";
import {
  DOCKER_SCOPED_TRANSPORTS,
  evaluatePolicy,
  loadPolicy,
  PATH_SCOPED_TRANSPORTS,
  type Policy,
  type PolicyImage,
  type PolicyLookup,
  policyPathCandidates,
  resolvePolicyPath,
} from "@airlock/sign";
import { UsageError } from "../errors.js";

/** The global flags that choose the trust policy (skopeo's). */
export interface PolicyFlags {
  /** `--policy FILE`. */
  policy?: string;
  /** `--insecure-policy`: accept anything, read no policy file. */
  insecurePolicy?: boolean;
  /**
   * `--require-signed`: each image must satisfy a requirement that verifies a signature;
   * mutually exclusive with `insecurePolicy`, and a policy file must exist.
   */
  requireSigned?: boolean;
}

/** A trust policy in force, and the file it came from. */
export interface TrustPolicy {
  policy: Policy;
  path: string;
  /** Every image must have a verified signature (`--require-signed`). */
  requireSigned?: boolean;
}

/**
 * The policy to enforce: none with `--insecure-policy` (it wins, as in skopeo) or when no policy
 * file exists anywhere (see this module's comment); else the `--policy` file or the default one.
 * With `--require-signed` a policy file is always read (and `--insecure-policy` is a usage error).
 * Throws ERR_POLICY for a missing or invalid file.
 */
export async function loadTrustPolicy(flags: PolicyFlags, lookup: PolicyLookup = {}): Promise<TrustPolicy | undefined> {
  if (flags.requireSigned) {
    if (flags.insecurePolicy) throw new UsageError("--require-signed and --insecure-policy are mutually exclusive");
    // No leniency for a host without a policy file: signatures cannot be verified without one.
    return { ...(await loadPolicy(flags.policy, lookup)), requireSigned: true };
  }
  if (flags.insecurePolicy) return undefined;
  if (flags.policy !== undefined) return loadPolicy(flags.policy);
  const env = lookup.env ?? process.env;
  const exists = lookup.exists ?? existsSync;
  if (!env.CONTAINERS_POLICY_JSON && !policyPathCandidates(lookup).some((p) => exists(p))) return undefined;
  return loadPolicy(undefined, lookup);
}

/**
 * What the policy needs to know about a source image: its transport, its scope (the resolved path
 * for `dir:`/`oci:`-like transports, the Docker reference for `docker://`, none otherwise), its
 * Docker reference, its manifest and signatures.
 */
export async function policyImageFor(check: PolicyCheck): Promise<PolicyImage> {
  const ref = check.reference;
  const transport = ref.transport.name;
  const image: PolicyImage = { transport, imageName: ref.toString(), manifest: check.manifest.bytes, signatures: check.signatures };
  const dockerReference = ref.dockerReference();
  if (dockerReference !== undefined) image.dockerReference = dockerReference;
  const path = (ref as { path?: unknown }).path;
  if (PATH_SCOPED_TRANSPORTS.has(transport) && typeof path === "string") image.scope = await resolvePolicyPath(path);
  else if (!DOCKER_SCOPED_TRANSPORTS.has(transport) || dockerReference === undefined) image.scope = "";
  return image;
}

/**
 * The copy pipeline's `checkPolicy` for `trust`: evaluates the policy on each image it is given
 * and throws PolicyRejectionError ("Source image rejected: …") when the policy refuses it.
 */
export function policyChecker(trust: TrustPolicy): (check: PolicyCheck) => Promise<void> {
  return async (check) => {
    await evaluatePolicy(trust.policy, await policyImageFor(check), trust.requireSigned ? { requireSignatureVerification: true } : {});
  };
}
