/**
 * Bundle signatures: a detached OpenPGP signature over the bundle's metadata file, which commits to
 * every digest in the bundle (so one signature covers every byte, through the digests). The
 * signature is binary, as `gpg --detach-sign` writes it, so `gpg --verify SIG METADATA` checks it
 * without airlock; armored signatures (`gpg --detach-sign --armor`) are accepted too.
 */
import { type KeyInput, readPrivateKey, readPublicKeys } from "./keys.js";
import { signDetached, verifyDetached } from "./mechanism.js";

/** Options of {@link signBundleMetadata}. */
export interface SignBundleOptions {
  /** The passphrase of a protected key. */
  passphrase?: string;
  /** The signature's creation time; default now. */
  date?: Date;
}

/** Signs a bundle's metadata bytes with one secret key: returns a binary detached OpenPGP signature. Throws ERR_SIGNATURE. */
export async function signBundleMetadata(metadata: Uint8Array, privateKey: KeyInput, options: SignBundleOptions = {}): Promise<Uint8Array> {
  const key = await readPrivateKey(privateKey, options.passphrase);
  return signDetached(metadata, key, options.date ?? new Date());
}

/** Options of {@link verifyBundleMetadata}. */
export interface VerifyBundleOptions {
  /** The time at which keys must be valid; default now. */
  now?: Date;
}

/** Who signed a bundle, once its signature has verified. */
export interface BundleSigner {
  /** Fingerprint (uppercase hex) of the primary key that signed. */
  keyFingerprint: string;
  /** Fingerprint of the (sub)key that made the signature packet. */
  signingKeyFingerprint: string;
  /** When the signature says it was made. */
  signatureCreated: Date;
}

/**
 * Verifies a detached signature over a bundle's metadata with the trusted `publicKeys`: exactly one
 * signature, by one of the keys, valid, by a key neither expired nor revoked. Throws ERR_SIGNATURE
 * saying why not (wrong key, altered metadata, expired key…).
 */
export async function verifyBundleMetadata(
  metadata: Uint8Array,
  signature: Uint8Array,
  publicKeys: KeyInput | readonly KeyInput[],
  options: VerifyBundleOptions = {},
): Promise<BundleSigner> {
  const keys = await readPublicKeys(publicKeys);
  return verifyDetached(metadata, signature, keys, options.now ?? new Date());
}
