/**
 * Signing with a key file, for `copy --sign-by-key` and `standalone-sign`: the key and passphrase
 * are read and tried once before anything is copied, so a wrong passphrase fails first.
 */
import { signManifest } from "@airlock/sign";
import { readKeyFile, readPassphraseFile } from "./files.js";

/** Where the signing key comes from. */
export interface KeyFileOptions {
  /** The secret key file (`gpg --export-secret-keys [--armor] KEY`). */
  keyFile: string;
  /** A file whose first line is the key's passphrase. */
  passphraseFile?: string;
  /** The flags that named them, for messages. */
  keyFlag?: string;
  passphraseFlag?: string;
}

/** Signs manifests with one key: the function the copy pipeline calls as `sign`. */
export type ManifestSigner = (manifest: Uint8Array, dockerReference: string) => Promise<Uint8Array>;

/** An empty OCI manifest: what the key is tried on before a copy starts. */
const PROBE = new TextEncoder().encode('{"schemaVersion":2}');

/**
 * Reads the key (and passphrase) and checks that they sign, by signing a probe; returns the
 * signer. Throws ERR_INVALID_ARGUMENT for unreadable files, ERR_SIGNATURE for a bad key or
 * passphrase.
 */
export async function keyFileSigner(options: KeyFileOptions): Promise<ManifestSigner> {
  const privateKey = await readKeyFile(options.keyFile, options.keyFlag ?? "--key");
  const passphrase = options.passphraseFile === undefined ? undefined : await readPassphraseFile(options.passphraseFile, options.passphraseFlag ?? "--passphrase-file");
  const sign: ManifestSigner = (manifest, dockerReference) =>
    signManifest(passphrase === undefined ? { manifest, dockerReference, privateKey } : { manifest, dockerReference, privateKey, passphrase });
  await sign(PROBE, "localhost/probe:latest");
  return sign;
}
