/**
 * @airlock/sign — image signatures and trust for airlock: containers "simple signing" over
 * OpenPGP (what skopeo and podman sign and verify), policy.json trust policies, lookaside signature
 * storage, and bundle signatures. All OpenPGP code of airlock lives in this package.
 */
export { DEFAULT_CREATOR, SIGNATURE_TYPE, signManifest, verifySignature, parseUntrustedPayload, marshalPayload, assertManifestMatches } from "./simple.js";
export type { SignManifestOptions, VerifySignatureOptions, VerifiedSignature, SignaturePayload } from "./simple.js";
export { readPublicKeys, readPrivateKey, keyFingerprints, isArmored } from "./keys.js";
export type { KeyInput } from "./keys.js";
