/**
 * Bundle signatures with key files, for the bundle verbs (`export --sign-key`, `verify --key`,
 * `import --verify-key`): a detached OpenPGP signature over the bundle's metadata bytes, made and
 * checked by @airlock/sign.
 */
import { type BundleSigner, signBundleMetadata, verifyBundleMetadata } from "@airlock/sign";
import { readKeyFile, readPassphraseFile } from "./files.js";
import type { KeyFileOptions } from "./signer.js";

/**
 * Signs a bundle's metadata bytes with the secret key in `options.keyFile` (unlocked with the
 * first line of `options.passphraseFile`): returns a binary detached signature, which
 * `gpg --verify SIG METADATA` accepts. Throws ERR_INVALID_ARGUMENT / ERR_SIGNATURE.
 */
export async function signBundleMetadataWithKeyFile(metadata: Uint8Array, options: KeyFileOptions): Promise<Uint8Array> {
  const key = await readKeyFile(options.keyFile, options.keyFlag ?? "--sign-key");
  if (options.passphraseFile === undefined) return signBundleMetadata(metadata, key);
  return signBundleMetadata(metadata, key, { passphrase: await readPassphraseFile(options.passphraseFile, options.passphraseFlag ?? "--passphrase-file") });
}

/**
 * Verifies a bundle metadata signature with the public keys in `keyFiles` (any one may have
 * signed). Returns who signed; throws ERR_SIGNATURE saying why not (wrong key, altered metadata,
 * expired or revoked key), ERR_INVALID_ARGUMENT for an unreadable key file.
 */
export async function verifyBundleMetadataWithKeyFiles(metadata: Uint8Array, signature: Uint8Array, keyFiles: readonly string[], flag = "--verify-key"): Promise<BundleSigner> {
  const keys = await Promise.all(keyFiles.map((f) => readKeyFile(f, flag)));
  return verifyBundleMetadata(metadata, signature, keys);
}
