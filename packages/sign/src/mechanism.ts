/**
 * The OpenPGP signing mechanism of containers "simple signing": a payload wrapped in an OpenPGP
 * *signed message* (RFC 4880 §11.3: one-pass signature, literal data, signature), binary, neither
 * detached nor cleartext nor armored — what gpgme's `Sign` in normal mode writes and what
 * containers/image's `mechanism_gpgme.go` / `mechanism_openpgp.go` verify.
 *
 * Verification returns the payload only after the signature has verified with one of the given
 * keys and that key is usable now; the payload is still "untrusted" in meaning until the caller has
 * parsed it strictly and matched it against what it expected.
 *
 * @see https://www.rfc-editor.org/rfc/rfc4880#section-11.3
 * @see https://github.com/containers/image/blob/main/signature/mechanism_gpgme.go
 */
import { AirlockError } from "@airlock/core";
import type * as openpgp from "openpgp";
import { pgp, pgpLoaded } from "./openpgp-lazy.js";
import { assertKeyUsableNow, fingerprintOf, isArmored } from "./keys.js";

/** One signature of a verification result, as openpgp.js reports it. */
type VerificationResult = openpgp.VerifyMessageResult["signatures"][number];

/** A payload whose OpenPGP signature has verified; its meaning is not yet checked. */
export interface VerifiedMessage {
  /** The signed bytes (the literal data). Cryptographically verified, semantically untrusted. */
  signedPayload: Uint8Array;
  /** Fingerprint (uppercase hex) of the primary key that made the signature. */
  keyFingerprint: string;
  /** Fingerprint of the (sub)key whose packet made the signature; equals keyFingerprint unless a subkey signed. */
  signingKeyFingerprint: string;
  /** When the signature says it was made. */
  signatureCreated: Date;
}

/** Signs `payload` with `key` as a binary OpenPGP signed message (one-pass signature, literal data, signature). */
export async function signMessage(payload: Uint8Array, key: openpgp.PrivateKey, date = new Date()): Promise<Uint8Array> {
  try {
    const message = await (await pgp()).createMessage({ binary: payload, format: "binary", date });
    return await (await pgp()).sign({ message, signingKeys: key, format: "binary", date });
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `cannot sign with key ${fingerprintOf(key)}: ${(err as Error).message}`, { cause: err });
  }
}

const MAX_SIGNATURE_SIZE = 4 * 1024 * 1024; // containers/image reads at most 4 MiB per signature.
/** Bounds decompression too: a small compressed signature must not expand into gigabytes before it is verified. */
const READ_CONFIG = { maxDecompressedMessageSize: MAX_SIGNATURE_SIZE };

/** Reads `untrustedSignature` as an OpenPGP message, refusing the forms that are not a signed message. */
async function readSignedMessage(untrustedSignature: Uint8Array): Promise<openpgp.Message<Uint8Array>> {
  if (untrustedSignature.length === 0) throw new AirlockError("ERR_SIGNATURE", "the signature is empty");
  if (untrustedSignature.length > MAX_SIGNATURE_SIZE) {
    throw new AirlockError("ERR_SIGNATURE", `the signature has ${untrustedSignature.length} bytes; at most ${MAX_SIGNATURE_SIZE} are accepted`);
  }
  let message: openpgp.Message<Uint8Array>;
  try {
    if (isArmored(untrustedSignature)) {
      const text = new TextDecoder().decode(untrustedSignature).trimStart();
      if (text.startsWith("-----BEGIN PGP SIGNED MESSAGE-----")) {
        throw new AirlockError("ERR_SIGNATURE", "the signature is a cleartext-signed message; containers-signature(5) requires a binary OpenPGP signed message (gpg --sign, not --clearsign)");
      }
      if (text.startsWith("-----BEGIN PGP SIGNATURE-----")) {
        throw new AirlockError("ERR_SIGNATURE", "the signature is a detached signature; containers-signature(5) requires an OpenPGP signed message that contains the payload (gpg --sign, not --detach-sign)");
      }
      message = (await (await pgp()).readMessage({ armoredMessage: text, config: READ_CONFIG })) as openpgp.Message<Uint8Array>;
    } else {
      message = await (await pgp()).readMessage({ binaryMessage: untrustedSignature, config: READ_CONFIG });
    }
  } catch (err) {
    if (err instanceof AirlockError) throw err;
    throw new AirlockError("ERR_SIGNATURE", `the signature is not a valid OpenPGP message: ${(err as Error).message}`, { cause: err });
  }
  return message;
}

const packetTag = (p: openpgp.AnyPacket): number => (p.constructor as unknown as { tag: number }).tag;

/**
 * Checks the packet structure as far as it is parsed: a signed message, possibly compressed (gpg
 * compresses), with one literal data packet and nothing encrypted. openpgp.js parses the content of
 * a compressed packet lazily, so the count of signature packets is checked on the verification
 * result instead.
 */
function checkStructure(message: openpgp.Message<Uint8Array>): void {
  const top = message.packets;
  const compressed = top.filterByTag(pgpLoaded().enums.packet.compressedData);
  if (compressed.length > 0 && top.length !== 1) {
    throw new AirlockError("ERR_SIGNATURE", "the signature mixes compressed and uncompressed packets; expected one OpenPGP signed message");
  }
  const packets = message.unwrapCompressed().packets;
  const allowed = new Set<number>([
    pgpLoaded().enums.packet.onePassSignature,
    pgpLoaded().enums.packet.literalData,
    pgpLoaded().enums.packet.signature,
    pgpLoaded().enums.packet.marker,
  ]);
  const other = packets.find((p) => !allowed.has(packetTag(p)));
  if (other !== undefined) {
    const name = String(pgpLoaded().enums.read(pgpLoaded().enums.packet, packetTag(other)) ?? packetTag(other));
    const why = /encrypted|sessionKey/i.test(name) ? " (the message is encrypted, not just signed)" : "";
    throw new AirlockError("ERR_SIGNATURE", `the signature holds an unexpected OpenPGP packet "${name}"${why}; expected a signed message`);
  }
  const literals = packets.filterByTag(pgpLoaded().enums.packet.literalData).length;
  if (literals === 0) {
    throw new AirlockError("ERR_SIGNATURE", "the signature has no signed content: it is a detached signature, not the OpenPGP signed message containers-signature(5) requires");
  }
  if (literals > 1) throw new AirlockError("ERR_SIGNATURE", `the signature has ${literals} literal data packets; containers-signature(5) requires exactly one`);
}

/** Names the key an unverified signature packet claims to be made by: its issuer fingerprint, else its key ID. */
function untrustedIssuer(sig: openpgp.SignaturePacket): string {
  if (sig.issuerFingerprint && sig.issuerFingerprint.length > 0) {
    return Array.from(sig.issuerFingerprint, (b) => b.toString(16).padStart(2, "0"))
      .join("")
      .toUpperCase();
  }
  return `with key ID ${sig.issuerKeyID.toHex().toUpperCase()}`;
}

/**
 * Verifies `untrustedSignature` (a binary or armored OpenPGP signed message) with `keys` at `now`:
 * exactly one signature, made by one of the keys (or a subkey of one), cryptographically valid,
 * by a key that is neither expired nor revoked now. Only then is the payload returned. Throws
 * ERR_SIGNATURE saying why otherwise.
 */
export async function verifyMessage(untrustedSignature: Uint8Array, keys: readonly openpgp.PublicKey[], now = new Date()): Promise<VerifiedMessage> {
  const message = await readSignedMessage(untrustedSignature);
  checkStructure(message);

  let result: openpgp.VerifyMessageResult<Uint8Array>;
  try {
    result = await (await pgp()).verify({ message, verificationKeys: [...keys], format: "binary", date: now });
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `the signature is not a valid OpenPGP signed message: ${(err as Error).message}`, { cause: err });
  }
  if (result.signatures.length !== 1) {
    const what = result.signatures.length === 0 ? "no signature packet: the message is not signed" : `${result.signatures.length} signatures`;
    throw new AirlockError("ERR_SIGNATURE", `the signature has ${what}; exactly one is required`);
  }
  const untrusted = result.signatures[0] as VerificationResult;
  const untrustedPacket = await untrusted.signature.then((s) => s.packets[0] as openpgp.SignaturePacket | undefined).catch(() => undefined);
  return finishVerification(untrusted, untrustedPacket, keys, now, result.data);
}

/** Shared tail of message and detached verification: trusted key, cryptography, key validity now. */
async function finishVerification(
  untrusted: VerificationResult,
  untrustedPacket: openpgp.SignaturePacket | undefined,
  keys: readonly openpgp.PublicKey[],
  now: Date,
  signedPayload: Uint8Array,
): Promise<VerifiedMessage> {
  const key = keys.find((k) => k.getKeys(untrusted.keyID).length > 0);
  const signingKey = key?.getKeys(untrusted.keyID)[0];
  if (key === undefined || signingKey === undefined) {
    const issuer = untrustedPacket ? untrustedIssuer(untrustedPacket) : `with key ID ${untrusted.keyID.toHex().toUpperCase()}`;
    throw new AirlockError("ERR_SIGNATURE", `signature made by key ${issuer}, not one of the trusted keys (${keys.map(fingerprintOf).join(", ") || "none"})`);
  }
  try {
    await untrusted.verified;
  } catch (err) {
    // openpgp.js also fails verification for a revoked key: say so precisely when that is why.
    await assertKeyUsableNow(key, signingKey, now);
    throw new AirlockError("ERR_SIGNATURE", `the signature by key ${fingerprintOf(key)} does not verify: ${(err as Error).message}`, { cause: err });
  }
  await assertKeyUsableNow(key, signingKey, now);
  const packet = (await untrusted.signature).packets[0] as openpgp.SignaturePacket | undefined;
  return {
    signedPayload,
    keyFingerprint: fingerprintOf(key),
    signingKeyFingerprint: fingerprintOf(signingKey),
    signatureCreated: packet?.created ?? new Date(0),
  };
}

/** Signs `data` with `key` as a detached binary OpenPGP signature (`gpg --detach-sign`). */
export async function signDetached(data: Uint8Array, key: openpgp.PrivateKey, date = new Date()): Promise<Uint8Array> {
  try {
    const message = await (await pgp()).createMessage({ binary: data, format: "binary", date });
    return await (await pgp()).sign({ message, signingKeys: key, format: "binary", detached: true, date });
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `cannot sign with key ${fingerprintOf(key)}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Verifies a detached OpenPGP signature (binary or armored, exactly one signature packet) over
 * `data` with `keys` at `now`, by a key neither expired nor revoked. Returns the signer's
 * fingerprints. Throws ERR_SIGNATURE saying why otherwise.
 */
export async function verifyDetached(
  data: Uint8Array,
  untrustedSignature: Uint8Array,
  keys: readonly openpgp.PublicKey[],
  now = new Date(),
): Promise<Omit<VerifiedMessage, "signedPayload">> {
  let signature: openpgp.Signature;
  try {
    signature = isArmored(untrustedSignature)
      ? await (await pgp()).readSignature({ armoredSignature: new TextDecoder().decode(untrustedSignature) })
      : await (await pgp()).readSignature({ binarySignature: untrustedSignature });
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `the signature is not a valid OpenPGP detached signature: ${(err as Error).message}`, { cause: err });
  }
  const sigs = signature.packets.filterByTag(pgpLoaded().enums.packet.signature) as unknown as openpgp.SignaturePacket[];
  if (sigs.length !== 1 || signature.packets.length !== 1) {
    throw new AirlockError("ERR_SIGNATURE", `the detached signature has ${signature.packets.length} packets (${sigs.length} signatures); exactly one signature packet is required`);
  }
  let result: openpgp.VerifyMessageResult<Uint8Array>;
  try {
    const message = await (await pgp()).createMessage({ binary: data, format: "binary" });
    result = await (await pgp()).verify({ message, signature, verificationKeys: [...keys], format: "binary", date: now });
  } catch (err) {
    throw new AirlockError("ERR_SIGNATURE", `the detached signature cannot be checked: ${(err as Error).message}`, { cause: err });
  }
  const { signedPayload: _, ...who } = await finishVerification(
    result.signatures[0] as VerificationResult,
    sigs[0] as openpgp.SignaturePacket,
    keys,
    now,
    data,
  );
  return who;
}
