import { digestOf } from "@airlock/core";
import * as openpgp from "openpgp";
import { beforeAll, describe, expect, it } from "vitest";
import { readPrivateKey } from "./keys.js";
import { signMessage } from "./mechanism.js";
import { marshalPayload, parseUntrustedPayload, SIGNATURE_TYPE, signManifest, verifySignature } from "./simple.js";
import { fixtureFingerprint, fixtureKey, fixturePassphrase, generateTestKey, MANIFEST, revokeTestKey, type TestKey } from "./testing/keys.js";

const REF = "registry.example.com/team/app:1.0";
const DIGEST = digestOf(MANIFEST);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

let alice: TestKey;
let bob: TestKey;
beforeAll(async () => {
  [alice, bob] = await Promise.all([generateTestKey({ name: "alice" }), generateTestKey({ name: "bob" })]);
});

/** Splits binary OpenPGP data into packets (new-format headers, definite lengths), independently of openpgp.js. */
function packetTags(data: Uint8Array): { tag: number; body: Uint8Array }[] {
  const out: { tag: number; body: Uint8Array }[] = [];
  let i = 0;
  while (i < data.length) {
    const header = data[i++]!;
    expect(header & 0xc0, "new-format packet header").toBe(0xc0);
    const o1 = data[i++]!;
    let len: number;
    if (o1 < 192) len = o1;
    else if (o1 < 224) len = ((o1 - 192) << 8) + data[i++]! + 192;
    else if (o1 === 255) {
      len = ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
      i += 4;
    } else throw new Error("partial body lengths are not expected here");
    out.push({ tag: header & 0x3f, body: data.subarray(i, i + len) });
    i += len;
  }
  return out;
}

/** Signs arbitrary payload bytes with `key` (to craft payloads signManifest would never write). */
async function signRaw(payload: string, key: TestKey = alice): Promise<Uint8Array> {
  return signMessage(enc(payload), await readPrivateKey(key.privateKey));
}

describe("the payload", () => {
  it("is serialised as containers/image's json.Marshal of maps", () => {
    const bytes = marshalPayload({ dockerManifestDigest: DIGEST, dockerReference: "docker.io/library/busybox:latest", creator: "atomic 5.23.1", timestamp: new Date(1795751771_000) });
    expect(dec(bytes)).toBe(
      `{"critical":{"identity":{"docker-reference":"docker.io/library/busybox:latest"},"image":{"docker-manifest-digest":"${DIGEST}"},` +
        `"type":"atomic container signature"},"optional":{"creator":"atomic 5.23.1","timestamp":1795751771}}`,
    );
    expect(dec(marshalPayload({ dockerManifestDigest: DIGEST, dockerReference: "x:1" }))).toMatch(/"optional":\{\}\}$/);
  });

  it("round-trips through the strict parser", () => {
    const p = { dockerManifestDigest: DIGEST, dockerReference: REF, creator: "c <&>", timestamp: new Date(1_700_000_000_000) };
    expect(parseUntrustedPayload(marshalPayload(p))).toEqual(p);
  });

  it("is parsed strictly, as containers/image does", () => {
    const critical = `"critical":{"identity":{"docker-reference":"${REF}"},"image":{"docker-manifest-digest":"${DIGEST}"},"type":"${SIGNATURE_TYPE}"}`;
    const ok = `{${critical},"optional":{}}`;
    expect(parseUntrustedPayload(enc(ok)).dockerReference).toBe(REF);
    // Unknown optional fields are ignored.
    expect(parseUntrustedPayload(enc(`{${critical},"optional":{"future":[1]}}`)).creator).toBeUndefined();
    const bad: [string, RegExp][] = [
      [ok.replace('"type":', '"extra":1,"type":'), /unknown critical field "critical.extra"/],
      [ok.replace('{"docker-manifest-digest"', '{"more":1,"docker-manifest-digest"'), /unknown critical field "critical.image.more"/],
      [ok.replace('{"docker-reference"', '{"x":"","docker-reference"'), /unknown critical field "critical.identity.x"/],
      [`{${critical},"optional":{},"other":1}`, /unknown top-level field "other"/],
      [`{${critical}}`, /lacks the field "optional"/],
      [ok.replace(`,"type":"${SIGNATURE_TYPE}"`, ""), /lacks the field "critical.type"/],
      [ok.replace(SIGNATURE_TYPE, "cosign container image signature"), /unrecognized signature type "cosign container image signature"/],
      [ok.replace(`"docker-manifest-digest":"${DIGEST}"`, '"docker-manifest-digest":"md5:abc"'), /invalid docker-manifest-digest value "md5:abc"/],
      [ok.replace(`"docker-reference":"${REF}"`, '"docker-reference":7'), /docker-reference must be a string, not a number/],
      [ok.replace('"optional":{}', '"optional":{"timestamp":1.5}'), /timestamp is not an integer/],
      [ok.replace('"optional":{}', '"optional":{"creator":1}'), /creator must be a string/],
      [ok.replace('"optional":{}', '"optional":null'), /optional must be a JSON object, not null/],
      [ok.replace('"critical":{', '"critical":{"type":"x",'), /duplicate key "type"/],
      ["[]", /the payload must be a JSON object, not an array/],
      ['{"critical":', /invalid signature payload: unexpected end of input/],
    ];
    for (const [text, why] of bad) expect(() => parseUntrustedPayload(enc(text)), text).toThrow(why);
    expect(() => parseUntrustedPayload(new Uint8Array([0x7b, 0xff, 0x7d]))).toThrow(/not valid UTF-8/);
  });
});

describe("signManifest and verifySignature", () => {
  it("sign a manifest that verifies, reporting key, digest, identity, creator and time", async () => {
    const timestamp = new Date(Math.floor(Date.now() / 1000) * 1000);
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: alice.privateKey, creator: "airlock test", timestamp });
    const v = await verifySignature({ signature: sig, publicKeys: [bob.publicKey, alice.publicKey], manifest: MANIFEST, expectedDockerReference: REF });
    expect(v).toEqual({
      dockerManifestDigest: DIGEST,
      dockerReference: REF,
      keyFingerprint: alice.fingerprint,
      signingKeyFingerprint: alice.fingerprint,
      creator: "airlock test",
      timestamp,
    });
  });

  it("write a binary OpenPGP signed message (one-pass signature, literal data, signature), not detached or cleartext", async () => {
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: alice.privateKey });
    const packets = packetTags(sig);
    expect(packets.map((p) => p.tag)).toEqual([openpgp.enums.packet.onePassSignature, openpgp.enums.packet.literalData, openpgp.enums.packet.signature]);
    const literal = packets[1]!.body;
    // Literal data: format "b" (binary), empty file name, 4-byte date, then the payload.
    expect(String.fromCharCode(literal[0]!)).toBe("b");
    expect(literal[1]).toBe(0);
    expect(parseUntrustedPayload(literal.subarray(6)).dockerManifestDigest).toBe(DIGEST);
    expect(sig[0]! & 0x80).toBe(0x80); // a binary packet header, not "-----BEGIN"
  });

  it("compare identities after normalisation, as standalone-verify does", async () => {
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: "busybox:latest", privateKey: alice.privateKey });
    const v = await verifySignature({ signature: sig, publicKeys: alice.publicKey, manifest: MANIFEST, expectedDockerReference: "docker.io/library/busybox:latest" });
    expect(v.dockerReference).toBe("busybox:latest");
    await expect(verifySignature({ signature: sig, publicKeys: alice.publicKey, manifest: MANIFEST, expectedDockerReference: "busybox" })).rejects.toThrow(
      "signature identity docker.io/library/busybox:latest does not match docker.io/library/busybox",
    );
  });

  it("refuse a wrong identity, naming both", async () => {
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: "docker.io/x:1", privateKey: alice.privateKey });
    await expect(verifySignature({ signature: sig, publicKeys: alice.publicKey, manifest: MANIFEST, expectedDockerReference: "docker.io/y:2" })).rejects.toThrow(
      "signature identity docker.io/library/x:1 does not match docker.io/library/y:2",
    );
  });

  it("refuse a manifest that is not the signed one", async () => {
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: alice.privateKey });
    const other = enc('{"schemaVersion":2}');
    await expect(verifySignature({ signature: sig, publicKeys: alice.publicKey, manifest: other })).rejects.toThrow(
      `signature is for image ${DIGEST}, not ${digestOf(other)}`,
    );
  });

  it("refuse a signature by a key that is not trusted, naming it", async () => {
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: bob.privateKey });
    const err = await verifySignature({ signature: sig, publicKeys: alice.publicKey, manifest: MANIFEST }).catch((e: Error) => e);
    expect(err).toMatchObject({ code: "ERR_SIGNATURE" });
    expect((err as Error).message).toBe(`signature made by key ${bob.fingerprint}, not one of the trusted keys (${alice.fingerprint})`);
    // expectedFingerprints narrows the trusted keys further.
    const byAlice = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: alice.privateKey });
    await expect(
      verifySignature({ signature: byAlice, publicKeys: [alice.publicKey, bob.publicKey], manifest: MANIFEST, expectedFingerprints: [bob.fingerprint.toLowerCase()] }),
    ).rejects.toThrow(`signature made by key ${alice.fingerprint}, not one of the trusted keys (${bob.fingerprint})`);
  });

  it("refuse altered payload bytes before parsing them", async () => {
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: "example.com/app:1", privateKey: alice.privateKey });
    const text = Buffer.from(sig).toString("latin1");
    const at = text.indexOf("example.com/app:1");
    expect(at).toBeGreaterThan(0);
    const altered = Uint8Array.from(sig);
    altered[at + "example.com/app:".length] = "2".charCodeAt(0);
    await expect(verifySignature({ signature: altered, publicKeys: alice.publicKey, manifest: MANIFEST })).rejects.toThrow(
      new RegExp(`the signature by key ${alice.fingerprint} does not verify`),
    );
  });

  it("refuse a key that has expired, saying when", async () => {
    const made = new Date("2021-03-01T00:00:00Z");
    const old = await generateTestKey({ name: "old", date: made, expiresIn: 3600 });
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: old.privateKey, timestamp: new Date("2021-03-01T00:10:00Z") });
    // Valid while the key was.
    await expect(verifySignature({ signature: sig, publicKeys: old.publicKey, manifest: MANIFEST, now: new Date("2021-03-01T00:20:00Z") })).resolves.toMatchObject({
      keyFingerprint: old.fingerprint,
    });
    await expect(verifySignature({ signature: sig, publicKeys: old.publicKey, manifest: MANIFEST })).rejects.toThrow(
      `key ${old.fingerprint} expired on 2021-03-01T01:00:00Z`,
    );
  });

  it("refuse a revoked key", async () => {
    const carol = await generateTestKey({ name: "carol", date: new Date(Date.now() - 3_600_000) });
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: carol.privateKey, timestamp: new Date(Date.now() - 60_000) });
    await expect(verifySignature({ signature: sig, publicKeys: carol.publicKey, manifest: MANIFEST })).resolves.toBeDefined();
    const revoked = await revokeTestKey(carol);
    await expect(verifySignature({ signature: sig, publicKeys: revoked, manifest: MANIFEST })).rejects.toThrow(`key ${carol.fingerprint} is revoked`);
  });

  it("refuse payloads with unknown critical fields or the wrong type, even when validly signed", async () => {
    const critical = (extra: string, type = SIGNATURE_TYPE) =>
      `{"critical":{"identity":{"docker-reference":"${REF}"},"image":{"docker-manifest-digest":"${DIGEST}"},"type":"${type}"${extra}},"optional":{}}`;
    await expect(verifySignature({ signature: await signRaw(critical(',"must-understand":true')), publicKeys: alice.publicKey, manifest: MANIFEST })).rejects.toThrow(
      'payload has unknown critical field "critical.must-understand"',
    );
    await expect(verifySignature({ signature: await signRaw(critical("", "something else")), publicKeys: alice.publicKey, manifest: MANIFEST })).rejects.toThrow(
      'unrecognized signature type "something else"',
    );
    await expect(verifySignature({ signature: await signRaw(critical("")), publicKeys: alice.publicKey, manifest: MANIFEST })).resolves.toMatchObject({
      dockerReference: REF,
    });
  });

  it("check the key before parsing: an untrusted key's payload is never read", async () => {
    const sig = await signRaw("this is not JSON", bob);
    await expect(verifySignature({ signature: sig, publicKeys: alice.publicKey, manifest: MANIFEST })).rejects.toThrow(/not one of the trusted keys/);
    await expect(verifySignature({ signature: sig, publicKeys: bob.publicKey, manifest: MANIFEST })).rejects.toThrow(/invalid signature payload/);
  });

  it("refuse signature forms other than one signed message", async () => {
    const key = await readPrivateKey(alice.privateKey);
    const payload = marshalPayload({ dockerManifestDigest: DIGEST, dockerReference: REF });
    const verify = (signature: Uint8Array) => verifySignature({ signature, publicKeys: alice.publicKey, manifest: MANIFEST });

    const clear = await openpgp.sign({ message: await openpgp.createCleartextMessage({ text: dec(payload) }), signingKeys: key });
    await expect(verify(enc(clear))).rejects.toThrow(/cleartext-signed message/);
    const message = await openpgp.createMessage({ binary: payload });
    const detached = await openpgp.sign({ message, signingKeys: key, detached: true, format: "binary" });
    await expect(verify(detached)).rejects.toThrow(/detached signature, not the OpenPGP signed message/);
    const armoredDetached = await openpgp.sign({ message, signingKeys: key, detached: true });
    await expect(verify(enc(armoredDetached))).rejects.toThrow(/detached signature/);
    const unsigned = (await openpgp.createMessage({ binary: payload })).write() as Uint8Array;
    await expect(verify(unsigned)).rejects.toThrow(/not signed/);
    const twice = await openpgp.sign({ message, signingKeys: [key, await readPrivateKey(bob.privateKey)], format: "binary" });
    await expect(verifySignature({ signature: twice, publicKeys: [alice.publicKey, bob.publicKey], manifest: MANIFEST })).rejects.toThrow(/2 signatures; exactly one/);
    const encrypted = await openpgp.encrypt({ message, encryptionKeys: await openpgp.readKey({ armoredKey: alice.publicKey }), signingKeys: key, format: "binary" });
    await expect(verify(encrypted)).rejects.toThrow(/encrypted/);
    await expect(verify(new Uint8Array(0))).rejects.toThrow("the signature is empty");
    await expect(verify(enc("garbage"))).rejects.toThrow(/not a valid OpenPGP message/);
    // The armored form of a proper signed message is accepted (gpgme accepts it too).
    const armored = await openpgp.sign({ message, signingKeys: key });
    await expect(verify(enc(armored))).resolves.toMatchObject({ keyFingerprint: alice.fingerprint });
  });

  it("read gpg-made keys: armored and binary, passphrase-protected, with a signing subkey", async () => {
    const signerFpr = await fixtureFingerprint("signer");
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: fixtureKey("signer.sec.asc") });
    for (const pub of [fixtureKey("signer.pub.asc"), fixtureKey("signer.pub.gpg"), fixtureKey("signer.pub.asc").toString()]) {
      await expect(verifySignature({ signature: sig, publicKeys: pub, manifest: MANIFEST })).resolves.toMatchObject({ keyFingerprint: signerFpr });
    }

    await expect(signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: fixtureKey("protected.sec.asc") })).rejects.toThrow(/is protected by a passphrase/);
    await expect(signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: fixtureKey("protected.sec.asc"), passphrase: "wrong" })).rejects.toThrow(
      /wrong passphrase/,
    );
    await expect(signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: fixtureKey("protected.sec.asc"), passphrase: "a\nb" })).rejects.toThrow(
      "invalid passphrase: must not contain a line break",
    );
    const p = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: fixtureKey("protected.sec.asc"), passphrase: fixturePassphrase() });
    await expect(verifySignature({ signature: p, publicKeys: fixtureKey("protected.pub.asc"), manifest: MANIFEST })).resolves.toMatchObject({
      keyFingerprint: await fixtureFingerprint("protected"),
    });

    const s = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: fixtureKey("subkey.sec.asc") });
    const v = await verifySignature({ signature: s, publicKeys: fixtureKey("subkey.pub.asc"), manifest: MANIFEST });
    expect(v.keyFingerprint).toBe(await fixtureFingerprint("subkey"));
    expect(v.signingKeyFingerprint).not.toBe(v.keyFingerprint);
  });

  it("refuse the gpg-made expired key's signature, saying when it expired", async () => {
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: fixtureKey("expired.sec.asc"), timestamp: new Date("2020-01-01T06:00:00Z") });
    await expect(verifySignature({ signature: sig, publicKeys: fixtureKey("expired.pub.asc"), manifest: MANIFEST })).rejects.toThrow(
      `key ${await fixtureFingerprint("expired")} expired on 2020-01-02T00:00:00Z`,
    );
  });

  it("refuse bad arguments clearly", async () => {
    await expect(signManifest({ manifest: MANIFEST, dockerReference: "Not/Valid", privateKey: alice.privateKey })).rejects.toThrow(/cannot sign for "Not\/Valid"/);
    await expect(signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: alice.publicKey })).rejects.toThrow(/cannot read private key/);
    await expect(verifySignature({ signature: new Uint8Array(1), publicKeys: "not a key", manifest: MANIFEST })).rejects.toThrow(/cannot read public key/);
    await expect(verifySignature({ signature: new Uint8Array(1), publicKeys: [], manifest: MANIFEST })).rejects.toThrow(/no public key given/);
  });
});
