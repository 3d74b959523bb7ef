import { beforeAll, describe, expect, it } from "vitest";
import { signBundleMetadata, verifyBundleMetadata } from "./bundle.js";
import { fixtureFingerprint, fixtureKey, generateTestKey, type TestKey } from "./testing/keys.js";

const METADATA = new TextEncoder().encode('{"images":[{"name":"app:1","digest":"sha256:' + "0".repeat(64) + '"}]}\n');

let alice: TestKey;
let bob: TestKey;
beforeAll(async () => {
  [alice, bob] = await Promise.all([generateTestKey({ name: "alice" }), generateTestKey({ name: "bob" })]);
});

describe("bundle metadata signatures", () => {
  it("verify, naming the signer", async () => {
    const sig = await signBundleMetadata(METADATA, alice.privateKey);
    await expect(verifyBundleMetadata(METADATA, sig, [bob.publicKey, alice.publicKey])).resolves.toMatchObject({ keyFingerprint: alice.fingerprint });
    const gpgSig = await signBundleMetadata(METADATA, fixtureKey("signer.sec.asc"));
    await expect(verifyBundleMetadata(METADATA, gpgSig, fixtureKey("signer.pub.gpg"))).resolves.toMatchObject({ keyFingerprint: await fixtureFingerprint("signer") });
  });

  it("refuse altered metadata, a wrong key, an expired key and a non-detached signature", async () => {
    const sig = await signBundleMetadata(METADATA, alice.privateKey);
    const altered = Uint8Array.from(METADATA);
    altered[20] = (altered[20] as number) ^ 1;
    await expect(verifyBundleMetadata(altered, sig, alice.publicKey)).rejects.toThrow(`the signature by key ${alice.fingerprint} does not verify`);
    await expect(verifyBundleMetadata(METADATA, sig, bob.publicKey)).rejects.toThrow(`signature made by key ${alice.fingerprint}, not one of the trusted keys (${bob.fingerprint})`);
    const old = await signBundleMetadata(METADATA, fixtureKey("expired.sec.asc"), { date: new Date("2020-01-01T01:00:00Z") });
    await expect(verifyBundleMetadata(METADATA, old, fixtureKey("expired.pub.asc"))).rejects.toThrow(/expired on 2020-01-02T00:00:00Z/);
    await expect(verifyBundleMetadata(METADATA, METADATA, alice.publicKey)).rejects.toThrow(/not a valid OpenPGP detached signature/);
  });
});
