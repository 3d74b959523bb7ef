import { digestOf } from "@airlock/core";
import { beforeAll, describe, expect, it } from "vitest";
import { signManifest } from "../simple.js";
import { generateTestKey, MANIFEST, type TestKey } from "../testing/keys.js";
import { parsePolicy } from "./config.js";
import { evaluatePolicy, PolicyRejectionError } from "./eval.js";

const REF = "registry.example.com/team/app:1";
const enc = (s: string) => new TextEncoder().encode(s);

let alice: TestKey;
let bob: TestKey;
let byAlice: Uint8Array;
let byBob: Uint8Array;
beforeAll(async () => {
  [alice, bob] = await Promise.all([generateTestKey({ name: "alice" }), generateTestKey({ name: "bob" })]);
  [byAlice, byBob] = await Promise.all([
    signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: alice.privateKey }),
    signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: bob.privateKey }),
  ]);
});

/** A policy whose docker scope for registry.example.com holds `reqs`; the default rejects. */
function policyWith(reqs: object[], transport = "docker", scope = "registry.example.com") {
  return parsePolicy(JSON.stringify({ default: [{ type: "reject" }], transports: { [transport]: { [scope]: reqs } } }));
}
const signedBy = (extra: object = {}) => ({ type: "signedBy", keyType: "GPGKeys", keyPath: "/keys/alice.asc", ...extra });
const keys = (files: Record<string, string>) => async (path: string) => {
  const k = files[path];
  if (k === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
  return enc(k);
};

async function rejection(p: Promise<unknown>): Promise<PolicyRejectionError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PolicyRejectionError);
  expect(err).toMatchObject({ code: "ERR_POLICY_REJECTED" });
  return err as PolicyRejectionError;
}

describe("evaluatePolicy", () => {
  it("accepts with insecureAcceptAnything and rejects with reject, naming the image", async () => {
    const policy = parsePolicy('{"default":[{"type":"reject"}],"transports":{"docker":{"docker.io":[{"type":"insecureAcceptAnything"}]}}}');
    const accepted = await evaluatePolicy(policy, { transport: "docker", dockerReference: "busybox", manifest: MANIFEST, signatures: [] });
    expect(accepted).toEqual({ scope: 'transports.docker["docker.io"]', requirements: [{ type: "insecureAcceptAnything" }], signatures: [] });
    const err = await rejection(
      evaluatePolicy(policy, { transport: "docker", dockerReference: "quay.io/x/y:1", imageName: "docker://quay.io/x/y:1", manifest: MANIFEST, signatures: [] }),
    );
    expect(err.message).toBe("Source image rejected: Running image docker://quay.io/x/y:1 is rejected by policy.");
    expect(err.scope).toBe("default");
  });

  it("requires every requirement of the scope", async () => {
    const policy = policyWith([{ type: "insecureAcceptAnything" }, { type: "reject" }]);
    const err = await rejection(evaluatePolicy(policy, { transport: "docker", dockerReference: REF, manifest: MANIFEST, signatures: [] }));
    expect(err.message).toMatch(/Running image docker:registry.example.com\/team\/app:1 is rejected by policy/);
  });

  it("accepts an image with one signature by a trusted key among others", async () => {
    const policy = policyWith([signedBy()]);
    const decision = await evaluatePolicy(
      policy,
      { transport: "docker", dockerReference: REF, manifest: MANIFEST, signatures: [byBob, byAlice] },
      { readKey: keys({ "/keys/alice.asc": alice.publicKey }) },
    );
    expect(decision.signatures).toEqual([expect.objectContaining({ keyFingerprint: alice.fingerprint, dockerManifestDigest: digestOf(MANIFEST), dockerReference: REF })]);
  });

  it("reads keys from keyPaths and keyData", async () => {
    const image = { transport: "docker", dockerReference: REF, manifest: MANIFEST, signatures: [byBob] };
    const paths = policyWith([{ type: "signedBy", keyType: "GPGKeys", keyPaths: ["/a", "/b"] }]);
    await expect(evaluatePolicy(paths, image, { readKey: keys({ "/a": alice.publicKey, "/b": bob.publicKey }) })).resolves.toBeDefined();
    const data = policyWith([{ type: "signedBy", keyType: "GPGKeys", keyData: Buffer.from(bob.publicKey).toString("base64") }]);
    await expect(evaluatePolicy(data, image)).resolves.toBeDefined();
  });

  it("says why a signedBy requirement is not met", async () => {
    const policy = policyWith([signedBy()]);
    const readKey = keys({ "/keys/alice.asc": alice.publicKey });
    const image = { transport: "docker", dockerReference: REF, manifest: MANIFEST };

    let err = await rejection(evaluatePolicy(policy, { ...image, signatures: [] }, { readKey }));
    expect(err.message).toBe("Source image rejected: A signature was required, but no signature exists");
    expect(err.scope).toBe('transports.docker["registry.example.com"]');

    err = await rejection(evaluatePolicy(policy, { ...image, signatures: [byBob] }, { readKey }));
    expect(err.message).toBe(`Source image rejected: signature made by key ${bob.fingerprint}, not one of the trusted keys (${alice.fingerprint})`);

    err = await rejection(evaluatePolicy(policy, { ...image, signatures: [byBob, enc("junk")] }, { readKey }));
    expect(err.message).toMatch(/^Source image rejected: None of the signatures were accepted, reasons: signature made by key .*; the signature is not a valid OpenPGP message/);

    err = await rejection(evaluatePolicy(policy, { ...image, manifest: enc("{}"), signatures: [byAlice] }, { readKey }));
    expect(err.message).toContain(`signature is for image ${digestOf(MANIFEST)}, not ${digestOf("{}")}`);

    err = await rejection(evaluatePolicy(policy, { ...image, dockerReference: "registry.example.com/team/app:2", signatures: [byAlice] }, { readKey }));
    expect(err.message).toBe(
      `Source image rejected: Signature for identity ${REF} is not accepted for image registry.example.com/team/app:2 (signedIdentity matchRepoDigestOrExact)`,
    );

    err = await rejection(evaluatePolicy(policy, { ...image, signatures: [byAlice] }, { readKey: keys({}) }));
    expect(err.message).toMatch(/cannot read the signedBy key file "\/keys\/alice.asc": ENOENT/);

    err = await rejection(evaluatePolicy(policyWith([signedBy({ keyType: "X509Certificates" })]), { ...image, signatures: [byAlice] }, { readKey }));
    expect(err.message).toContain('Unimplemented "keyType" value "X509Certificates"');

    err = await rejection(evaluatePolicy(policyWith([{ type: "sigstoreSigned", keyPath: "/c.pub" }]), { ...image, signatures: [] }));
    expect(err.message).toContain("sigstoreSigned signature, which airlock cannot verify");
  });

  it("accepts any tag's signature for a digest reference under matchRepoDigestOrExact, and signed identities by rule", async () => {
    const readKey = keys({ "/keys/alice.asc": alice.publicKey });
    const byDigest = `registry.example.com/team/app@${digestOf(MANIFEST)}`;
    await expect(
      evaluatePolicy(policyWith([signedBy()]), { transport: "docker", dockerReference: byDigest, manifest: MANIFEST, signatures: [byAlice] }, { readKey }),
    ).resolves.toBeDefined();
    const repo = policyWith([signedBy({ signedIdentity: { type: "matchRepository" } })]);
    await expect(
      evaluatePolicy(repo, { transport: "docker", dockerReference: "registry.example.com/team/app:9", manifest: MANIFEST, signatures: [byAlice] }, { readKey }),
    ).resolves.toBeDefined();
  });

  it("evaluates dir: images by path with exactReference, and explains a rule that needs a Docker reference", async () => {
    const readKey = keys({ "/keys/alice.asc": alice.publicKey });
    const exact = policyWith([signedBy({ signedIdentity: { type: "exactReference", dockerReference: REF } })], "dir", "/srv/images");
    const image = { transport: "dir", scope: "/srv/images/app", manifest: MANIFEST, signatures: [byAlice] };
    await expect(evaluatePolicy(exact, image, { readKey })).resolves.toMatchObject({ scope: 'transports.dir["/srv/images"]' });
    const implicit = policyWith([signedBy()], "dir", "/srv/images");
    const err = await rejection(evaluatePolicy(implicit, { ...image, imageName: "dir:/srv/images/app" }, { readKey }));
    expect(err.message).toContain("Docker reference match attempted on image dir:/srv/images/app with no known Docker reference identity");
    await expect(evaluatePolicy(implicit, { transport: "dir", manifest: MANIFEST, signatures: [] })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
  });

  it("refuses a signature whose key has expired", async () => {
    const old = await generateTestKey({ name: "old", date: new Date("2021-03-01T00:00:00Z"), expiresIn: 3600 });
    const sig = await signManifest({ manifest: MANIFEST, dockerReference: REF, privateKey: old.privateKey, timestamp: new Date("2021-03-01T00:10:00Z") });
    const err = await rejection(
      evaluatePolicy(
        policyWith([signedBy()]),
        { transport: "docker", dockerReference: REF, manifest: MANIFEST, signatures: [sig] },
        { readKey: keys({ "/keys/alice.asc": old.publicKey }) },
      ),
    );
    expect(err.message).toBe(`Source image rejected: key ${old.fingerprint} expired on 2021-03-01T01:00:00Z; a signature by an expired key is not accepted`);
  });

  it("with requireSignatureVerification, needs a satisfied requirement that verified a signature", async () => {
    const image = { transport: "docker", dockerReference: REF, manifest: MANIFEST, signatures: [byAlice] };
    const insecure = policyWith([{ type: "insecureAcceptAnything" }]);
    expect((await evaluatePolicy(insecure, image)).signatures).toEqual([]);
    const err = await rejection(evaluatePolicy(insecure, image, { requireSignatureVerification: true }));
    expect(err.message).toMatch(/^Source image rejected: Signature verification was required \(--require-signed\), but the policy for docker:registry.example.com\/team\/app:1 \(transports.docker\["registry.example.com"\]: insecureAcceptAnything\) has no requirement that verifies a signature/);
    const readKey = keys({ "/keys/alice.asc": alice.publicKey });
    const both = policyWith([{ type: "insecureAcceptAnything" }, signedBy()]);
    expect((await evaluatePolicy(both, image, { readKey, requireSignatureVerification: true })).signatures).toHaveLength(1);
    await rejection(evaluatePolicy(both, { ...image, signatures: [byBob] }, { readKey, requireSignatureVerification: true }));
  });
});
