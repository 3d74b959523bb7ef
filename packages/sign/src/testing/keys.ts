/**
 * Test helpers (not part of the package build): OpenPGP keys generated on the fly (ECC
 * curve25519, fast), the gpg-made keys of fixtures/keys, and a manifest to sign.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as openpgp from "openpgp";

/** A generated key pair, armored, with its primary fingerprint (uppercase hex). */
export interface TestKey {
  publicKey: string;
  privateKey: string;
  fingerprint: string;
}

/** Generates an ECC (curve25519) key pair; `date`/`expiresIn` (seconds) make expired keys, `passphrase` a protected one. */
export async function generateTestKey(options: { name?: string; date?: Date; expiresIn?: number; passphrase?: string } = {}): Promise<TestKey> {
  const name = options.name ?? "test";
  const { publicKey, privateKey } = await openpgp.generateKey({
    type: "ecc",
    userIDs: [{ name: `airlock ${name}`, email: `${name}@airlock.test` }],
    format: "armored",
    ...(options.date ? { date: options.date } : {}),
    ...(options.expiresIn ? { keyExpirationTime: options.expiresIn } : {}),
    ...(options.passphrase ? { passphrase: options.passphrase } : {}),
  });
  const key = await openpgp.readKey({ armoredKey: publicKey });
  return { publicKey, privateKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** Revokes a generated key; returns the revoked public key (armored). */
export async function revokeTestKey(key: TestKey): Promise<string> {
  const privateKey = await openpgp.readPrivateKey({ armoredKey: key.privateKey });
  const { publicKey } = await openpgp.revokeKey({ key: privateKey, format: "armored" });
  return publicKey;
}

/** The directory of the gpg-made test keys. */
export const FIXTURE_KEYS = fileURLToPath(new URL("../../../../fixtures/keys/", import.meta.url));

/** Reads a file of fixtures/keys. */
export function fixtureKey(name: string): Buffer {
  return readFileSync(FIXTURE_KEYS + name);
}

/** The primary fingerprint of a fixture public key, read with openpgp.js. */
export async function fixtureFingerprint(name: string): Promise<string> {
  const key = await openpgp.readKey({ armoredKey: fixtureKey(`${name}.pub.asc`).toString() });
  return key.getFingerprint().toUpperCase();
}

/** The passphrase of fixtures/keys/protected.sec.asc. */
export function fixturePassphrase(): string {
  return fixtureKey("protected.passphrase").toString().trim();
}

/** A small OCI image manifest (exact bytes) to sign. */
export const MANIFEST = new TextEncoder().encode(
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}',
);
