/**
 * @airlock/sign — image signatures and trust for airlock: containers "simple signing" over
 * OpenPGP (what skopeo and podman sign and verify), policy.json trust policies, lookaside signature
 * storage, and bundle signatures. All OpenPGP code of airlock lives in this package.
 */
export {
  assertManifestMatches,
  DEFAULT_CREATOR,
  marshalPayload,
  parseUntrustedPayload,
  SIGNATURE_TYPE,
  signManifest,
  verifySignature,
} from "./simple.js";
export type { SignManifestOptions, SignaturePayload, VerifiedSignature, VerifySignatureOptions } from "./simple.js";
export { isArmored, keyFingerprints } from "./keys.js";
export type { KeyInput } from "./keys.js";
export { signBundleMetadata, verifyBundleMetadata } from "./bundle.js";
export type { BundleSigner, SignBundleOptions, VerifyBundleOptions } from "./bundle.js";
export { parsePolicy, scopeProblem } from "./policy/config.js";
export type {
  InsecureAcceptAnythingRequirement,
  Policy,
  PolicyRequirement,
  RejectRequirement,
  SignedBaseLayerRequirement,
  SignedByKeyType,
  SignedByRequirement,
  SignedIdentity,
  SigstoreSignedRequirement,
} from "./policy/config.js";
export { evaluatePolicy, PolicyRejectionError } from "./policy/eval.js";
export type { EvaluatePolicyOptions, PolicyDecision, PolicyImage } from "./policy/eval.js";
export { defaultPolicyPath, loadPolicy, policyPathCandidates, SYSTEM_POLICY_PATHS } from "./policy/file.js";
export type { PolicyLookup } from "./policy/file.js";
export { signedIdentityMatches } from "./policy/identity.js";
export {
  DOCKER_SCOPED_TRANSPORTS,
  dockerPolicyIdentity,
  dockerPolicyNamespaces,
  PATH_SCOPED_TRANSPORTS,
  pathPolicyNamespaces,
  policyScopes,
  requirementsFor,
  resolvePolicyPath,
} from "./policy/scope.js";
export type { ScopedRequirements } from "./policy/scope.js";
export {
  DEFAULT_ROOT_LOOKASIDE,
  DEFAULT_USER_LOOKASIDE_DIR,
  defaultLookasideBase,
  lookasideBase,
  lookasideSignatureURL,
  MAX_LOOKASIDE_SIGNATURES,
  mergeRegistriesD,
} from "./lookaside.js";
export type { LookasideUser, RegistriesDConfig, RegistriesDFile, RegistriesDNamespace } from "./lookaside.js";
