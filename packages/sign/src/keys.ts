/**
 * OpenPGP keys: reading public keyrings and secret keys (armored or binary, as `gpg --export`,
 * `gpg --export --armor` and `gpg --export-secret-keys` write them), naming keys by fingerprint,
 * and deciding whether a key may be trusted for a signature now (not expired, not revoked).
 *
 * Key identity is the fingerprint of the primary key in uppercase hex, as gpgme and containers/image
 * report it; a signature made by a subkey is attributed to its primary key.
 */
import { AirlockError } from "@airlock/core";
import type * as openpgp from "openpgp";
import { pgp } from "./openpgp-lazy.js";

/** Key material: armored text, or bytes that are either armored or binary OpenPGP packets. */
export type KeyInput = string | Uint8Array;

const latin1 = new TextDecoder("latin1");

/** Reports whether `data` is ASCII-armored (starts, after whitespace, with `-----BEGIN PGP`). */
export function isArmored(data: KeyInput): boolean {
  const head = typeof data === "string" ? data.slice(0, 64) : latin1.decode(data.subarray(0, 64));
  return head.trimStart().startsWith("-----BEGIN PGP ");
}

/** The text of armored key material. */
function armoredText(data: KeyInput): string {
  return typeof data === "string" ? data : new TextDecoder().decode(data);
}

/** The fingerprint of a key or subkey as gpg prints it: uppercase hex. */
export function fingerprintOf(key: openpgp.Key | openpgp.Subkey): string {
  return key.getFingerprint().toUpperCase();
}

/**
 * Reads every public key in one or more keyrings (armored or binary; secret keys are reduced to
 * their public halves). Throws ERR_SIGNATURE when a keyring cannot be read or holds no key;
 * `what` names the keyring in messages (e.g. a file name).
 */
export async function readPublicKeys(keyrings: KeyInput | readonly KeyInput[], what = "public key"): Promise<openpgp.PublicKey[]> {
  const list = Array.isArray(keyrings) ? (keyrings as readonly KeyInput[]) : [keyrings as KeyInput];
  if (list.length === 0) throw new AirlockError("ERR_INVALID_ARGUMENT", `no ${what} given: pass at least one OpenPGP public key`);
  const keys: openpgp.PublicKey[] = [];
  for (const [n, data] of list.entries()) {
    const label = list.length > 1 ? `${what} #${n + 1}` : what;
    let read: openpgp.Key[];
    try {
      read = isArmored(data)
        ? await (await pgp()).readKeys({ armoredKeys: armoredText(data) })
        : await (await pgp()).readKeys({ binaryKeys: data as Uint8Array });
    } catch (err) {
      throw new AirlockError(
        "ERR_SIGNATURE",
        `cannot read ${label} as an OpenPGP keyring: ${(err as Error).message}; expected the output of gpg --export [--armor]`,
        { cause: err },
      );
    }
    if (read.length === 0) throw new AirlockError("ERR_SIGNATURE", `${label} holds no OpenPGP key`);
    for (const k of read) keys.push(k.isPrivate() ? k.toPublic() : (k as openpgp.PublicKey));
  }
  return keys;
}

/** The primary-key fingerprints (uppercase hex) of every key in the keyrings, in order. */
export async function keyFingerprints(keyrings: KeyInput | readonly KeyInput[]): Promise<string[]> {
  return (await readPublicKeys(keyrings)).map(fingerprintOf);
}

/**
 * Reads one secret key (armored or binary, as `gpg --export-secret-keys` writes it) and unlocks it
 * with `passphrase` when it is protected. Throws ERR_SIGNATURE when the data holds no secret key,
 * more than one, or the passphrase is missing or wrong.
 */
export async function readPrivateKey(data: KeyInput, passphrase?: string, what = "private key"): Promise<openpgp.PrivateKey> {
  let keys: openpgp.PrivateKey[];
  try {
    keys = isArmored(data)
      ? await (await pgp()).readPrivateKeys({ armoredKeys: armoredText(data) })
      : await (await pgp()).readPrivateKeys({ binaryKeys: data as Uint8Array });
  } catch (err) {
    throw new AirlockError(
      "ERR_SIGNATURE",
      `cannot read ${what} as an OpenPGP secret key: ${(err as Error).message}; expected the output of gpg --export-secret-keys [--armor] KEY`,
      { cause: err },
    );
  }
  if (keys.length !== 1) {
    const fprs = keys.map(fingerprintOf).join(", ");
    throw new AirlockError("ERR_SIGNATURE", `${what} holds ${keys.length} secret keys (${fprs}); export exactly one with gpg --export-secret-keys KEY`);
  }
  const key = keys[0] as openpgp.PrivateKey;
  if (key.isDecrypted()) return key;
  if (passphrase === undefined || passphrase === "") {
    throw new AirlockError("ERR_SIGNATURE", `${what} ${fingerprintOf(key)} is protected by a passphrase; pass it (e.g. --passphrase-file FILE)`);
  }
  try {
    return await (await pgp()).decryptKey({ privateKey: key, passphrase });
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `cannot unlock ${what} ${fingerprintOf(key)}: ${(err as Error).message} (wrong passphrase?)`, { cause: err });
  }
}

const iso = (d: Date): string => d.toISOString().replace(/\.000Z$/, "Z");

/**
 * Checks that `key` and its (sub)key `signingKey` may be trusted at `now`: neither revoked, neither
 * expired, and the signing key still bound and valid for signing. Throws ERR_SIGNATURE saying which
 * ("key X expired on DATE", "key X is revoked").
 */
export async function assertKeyUsableNow(key: openpgp.PublicKey, signingKey: openpgp.PublicKey | openpgp.Subkey, now: Date): Promise<void> {
  const fpr = fingerprintOf(key);
  const config = { ...(await pgp()).config };
  if (await key.isRevoked(undefined, undefined, now, config)) {
    throw new AirlockError("ERR_SIGNATURE", `key ${fpr} is revoked; a signature by a revoked key is not accepted`);
  }
  const expires = await key.getExpirationTime(undefined, config).catch(() => null);
  if (expires instanceof Date && expires.getTime() <= now.getTime()) {
    throw new AirlockError("ERR_SIGNATURE", `key ${fpr} expired on ${iso(expires)}; a signature by an expired key is not accepted`);
  }
  if (signingKey !== key) {
    const sub = signingKey as openpgp.Subkey;
    const subFpr = fingerprintOf(sub);
    const binding = sub.bindingSignatures.at(-1);
    if (binding && (await sub.isRevoked(binding, key.keyPacket, now, config))) {
      throw new AirlockError("ERR_SIGNATURE", `signing subkey ${subFpr} of key ${fpr} is revoked`);
    }
    const subExpires = await sub.getExpirationTime(now, config).catch(() => null);
    if (subExpires instanceof Date && subExpires.getTime() <= now.getTime()) {
      throw new AirlockError("ERR_SIGNATURE", `signing subkey ${subFpr} of key ${fpr} expired on ${iso(subExpires)}`);
    }
  }
  try {
    await key.getSigningKey(signingKey.getKeyID(), now, undefined, config);
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `key ${fpr} cannot be used to verify signatures now: ${(err as Error).message}`, { cause: err });
  }
}
