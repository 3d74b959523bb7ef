/**
 * The CLI's signing glue: key and passphrase files, registries.d lookaside configuration, the
 * trust policy, and key-file signing of manifests and bundle metadata. The cryptography and policy
 * semantics are @airlock/sign's; this folder only reads files and flags.
 */
export { signBundleMetadataWithKeyFile, verifyBundleMetadataWithKeyFiles } from "./bundle.js";
export { readKeyFile, readPassphraseFile } from "./files.js";
export { loadTrustPolicy, type PolicyFlags, policyChecker, policyImageFor, type TrustPolicy } from "./policy.js";
export {
  configuredLookasideStaging,
  loadRegistriesD,
  lookasideForReading,
  lookasideHint,
  type RegistriesD,
  registriesDir,
  SYSTEM_REGISTRIES_D,
  USER_REGISTRIES_D,
} from "./registries-d.js";
export { type KeyFileOptions, keyFileSigner, type ManifestSigner } from "./signer.js";
