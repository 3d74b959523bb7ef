/**
 * Signing on copy and the trust policy with local transports (dir:, oci:), checked against
 * skopeo 1.9.3: `airlock copy --sign-by-key` writes signatures skopeo's signedBy policy accepts,
 * airlock's `--policy` accepts skopeo's (gpg) signatures, and a policy that refuses an image stops
 * the copy before any blob is read, leaving the destination untouched.
 */
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { FIX, type GnuPG, gnupgWith, key, PASSPHRASE_FILE, run, sha256, signedBy, snapshot, workDir, writePolicy } from "./support.js";

const IDENTITY = "registry.example.com/team/app:1.0";
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const MULTI = "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01";

let work: string;
let gpg: GnuPG;
let n = 0;
const fresh = (name = "t") => join(work, `${name}-${n++}`);
const hex = (d: string) => d.slice("sha256:".length);

/** Policies: the fixture `signer` key with an exact identity; the wrong key; insecure. */
let trustSigner: string;
let trustSignerOtherIdentity: string;
let trustProtected: string;
let insecure: string;

beforeAll(async () => {
  work = workDir("airlock-sign-copy-");
  gpg = await gnupgWith(["signer"]);
  const exact = { type: "exactReference", dockerReference: IDENTITY };
  trustSigner = writePolicy(work, "signer", { default: [signedBy("signer.pub.asc", exact)] });
  trustSignerOtherIdentity = writePolicy(work, "signer-other", { default: [signedBy("signer.pub.asc", { type: "exactReference", dockerReference: "registry.example.com/team/other:1.0" })] });
  trustProtected = writePolicy(work, "protected", { default: [signedBy("protected.pub.asc", exact)] });
  insecure = writePolicy(work, "insecure", { default: [{ type: "insecureAcceptAnything" }] });
});
afterAll(async () => {
  await gpg?.close();
  rmSync(work, { recursive: true, force: true });
});

/** `airlock copy --sign-by-key signer` of the fixture `single` image into a new dir:. */
async function signedDir(extra: string[] = []): Promise<string> {
  const dir = fresh("signed");
  const r = await runCli(["copy", "-q", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, ...extra, `oci:${FIX}/oci:single`, `dir:${dir}`]);
  expect(r, r.stderr).toMatchObject({ code: 0, stderr: "" });
  return dir;
}

const skopeo = (args: string[]) => run("skopeo", args, gpg.env);

describe("airlock copy --sign-by-key", () => {
  it("writes dir: signature-1, which skopeo's signedBy policy accepts and a wrong key refuses", async () => {
    const dir = await signedDir();
    expect(readdirSync(dir).filter((f) => f.includes("signature"))).toEqual(["signature-1"]);
    const ok = await skopeo(["--policy", trustSigner, "copy", "-q", `dir:${dir}`, `dir:${fresh()}`]);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    const wrongKey = await skopeo(["--policy", trustProtected, "copy", "-q", `dir:${dir}`, `dir:${fresh()}`]);
    expect(wrongKey.code).not.toBe(0);
    expect(wrongKey.stderr).toMatch(/Source image rejected/);
    const wrongIdentity = await skopeo(["--policy", trustSignerOtherIdentity, "copy", "-q", `dir:${dir}`, `dir:${fresh()}`]);
    expect(wrongIdentity.stderr).toMatch(/Source image rejected/);
    // skopeo standalone-verify agrees on the identity and digest.
    const v = await skopeo(["standalone-verify", join(dir, "manifest.json"), IDENTITY, await gpg.fingerprint("signer@airlock.test"), join(dir, "signature-1")]);
    expect(v.stdout.trim()).toBe(`Signature verified, digest ${SINGLE}`);
  });

  it("signs with a passphrase-protected key, and fails before copying with a wrong passphrase", async () => {
    const dst = fresh();
    const bad = join(work, "bad-pass");
    writeFileSync(bad, "wrong\n");
    const r = await runCli(["copy", "-q", "--sign-by-key", key("protected.sec.asc"), "--sign-passphrase-file", bad, "--sign-identity", IDENTITY, `oci:${FIX}/oci:single`, `dir:${dst}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/wrong passphrase/);
    expect(existsSync(dst)).toBe(false);
    const ok = await runCli(["copy", "-q", "--sign-by-key", key("protected.sec.asc"), "--sign-passphrase-file", PASSPHRASE_FILE, "--sign-identity", IDENTITY, `oci:${FIX}/oci:single`, `dir:${dst}`]);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await runCli(["--policy", trustProtected, "copy", "-q", `dir:${dst}`, `dir:${fresh()}`])).code).toBe(0);
  });

  it("needs --sign-identity for a destination without a Docker reference, and a fully-qualified one", async () => {
    const dst = fresh();
    let r = await runCli(["copy", "-q", "--sign-by-key", key("signer.sec.asc"), `oci:${FIX}/oci:single`, `dir:${dst}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no Docker reference to sign: name the identity with --sign-identity/);
    r = await runCli(["copy", "-q", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", "busybox:latest", `oci:${FIX}/oci:single`, `oci:${dst}:x`]);
    expect(r.stderr).toMatch(/--sign-identity must be fully qualified: write docker.io\/library\/busybox:latest/);
    r = await runCli(["copy", "-q", "--sign-identity", IDENTITY, `oci:${FIX}/oci:single`, `oci:${dst}:x`]);
    expect(r.stderr).toMatch(/need --sign-by-key/);
    expect(existsSync(dst)).toBe(false);
  });

  it("refuses a copy that would change the manifest digest (a format conversion), before writing anything", async () => {
    const dst = fresh();
    const r = await runCli(["copy", "-q", "--format", "v2s2", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, `oci:${FIX}/oci:single`, `dir:${dst}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/(changes its digest|would change it).*"Would invalidate signatures"/);
    expect(existsSync(dst)).toBe(false);
    // Copying a signed source into another format is refused as well, unless its signatures are dropped.
    const signed = await signedDir();
    expect((await runCli(["copy", "-q", "--format", "v2s2", `dir:${signed}`, `dir:${fresh()}`])).stderr).toMatch(/"Would invalidate signatures"/);
    expect((await runCli(["copy", "-q", "--format", "v2s2", "--remove-signatures", `dir:${signed}`, `dir:${fresh()}`])).code).toBe(0);
  });

  it("keeps the signatures of the source, adds its own, and drops them with --remove-signatures", async () => {
    const once = await signedDir();
    const twice = fresh();
    const r = await runCli(["copy", "-q", "--sign-by-key", key("protected.sec.asc"), "--sign-passphrase-file", PASSPHRASE_FILE, "--sign-identity", IDENTITY, `dir:${once}`, `dir:${twice}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(twice, "signature-1"))).toEqual(readFileSync(join(once, "signature-1")));
    expect(existsSync(join(twice, "signature-2"))).toBe(true);
    // Both keys are accepted now, each by its own policy.
    for (const policy of [trustSigner, trustProtected]) expect((await skopeo(["--policy", policy, "copy", "-q", `dir:${twice}`, `dir:${fresh()}`])).code).toBe(0);
    // Copying into the same directory again without signatures leaves none behind.
    expect((await runCli(["copy", "-q", "--remove-signatures", `dir:${once}`, `dir:${twice}`])).code).toBe(0);
    expect(readdirSync(twice).filter((f) => f.includes("signature"))).toEqual([]);
  });

  it("stores signatures in an OCI layout under signatures/<alg>/<hex>/, which airlock reads back (skopeo 1.9.3 stores none in oci:)", async () => {
    const layout = fresh("layout");
    const r = await runCli(["copy", "-q", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, `oci:${FIX}/oci:single`, `oci:${layout}:app`]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(join(layout, "signatures", "sha256", hex(SINGLE)))).toEqual(["signature-1"]);
    // Other tools ignore the extra directory: skopeo reads the image, with the same digest.
    expect(sha256((await skopeo(["inspect", "--raw", `oci:${layout}:app`])).stdout)).toBe(SINGLE);
    // airlock's policy finds the signature in the layout, and copies it to dir:, where skopeo checks it.
    const dir = fresh();
    expect((await runCli(["--policy", trustSigner, "copy", "-q", `oci:${layout}:app`, `dir:${dir}`])).code).toBe(0);
    expect((await skopeo(["--policy", trustSigner, "copy", "-q", `dir:${dir}`, `dir:${fresh()}`])).code).toBe(0);
    // skopeo cannot store them in oci:, and says so; --remove-signatures is its way out.
    const sk = await skopeo(["--policy", insecure, "copy", "-q", `dir:${dir}`, `oci:${fresh()}:x`]);
    expect(sk.stderr).toMatch(/signatures/i);
    expect((await skopeo(["--policy", insecure, "copy", "-q", "--remove-signatures", `dir:${dir}`, `oci:${fresh()}:x`])).code).toBe(0);
  });

  it("with --all signs the index; instances keep their own signatures (dir: <hex>.signature-N)", async () => {
    const dir = fresh();
    const r = await runCli(["copy", "-q", "--all", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, `oci:${FIX}/oci:multi`, `dir:${dir}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(dir).filter((f) => f.includes("signature"))).toEqual(["signature-1"]);
    const index = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { manifests: { digest: string }[] };
    // skopeo and airlock both check every instance of the index against the policy: unsigned instances are refused.
    const sk = await skopeo(["--policy", trustSigner, "copy", "-q", "--all", `dir:${dir}`, `dir:${fresh()}`]);
    expect(sk.stderr).toMatch(/Source image rejected: A signature was required, but no signature exists/);
    const al = await runCli(["--policy", trustSigner, "copy", "-q", "--all", `dir:${dir}`, `dir:${fresh()}`]);
    expect(al.stderr).toMatch(/Source image rejected: A signature was required, but no signature exists/);
    // Sign each instance (standalone-sign) as <hex>.signature-1: now both accept, and airlock copies every signature.
    for (const { digest } of index.manifests) {
      const manifest = join(dir, `${hex(digest)}.manifest.json`);
      expect((await runCli(["standalone-sign", manifest, IDENTITY, "--key", key("signer.sec.asc"), "-o", join(dir, `${hex(digest)}.signature-1`)])).code).toBe(0);
    }
    expect((await skopeo(["--policy", trustSigner, "copy", "-q", "--all", `dir:${dir}`, `dir:${fresh()}`])).code).toBe(0);
    const copy = fresh();
    expect((await runCli(["--policy", trustSigner, "copy", "-q", "--all", `dir:${dir}`, `oci:${copy}:m`])).code).toBe(0);
    expect(readdirSync(join(copy, "signatures", "sha256")).sort()).toEqual([MULTI, ...index.manifests.map((m) => m.digest)].map(hex).sort());
  });
});

describe("airlock --policy on copy", () => {
  /** A signed dir: image whose layers are gone: any blob read fails, so only the policy can answer first. */
  async function signedWithoutLayers(): Promise<string> {
    const dir = await signedDir();
    const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { layers: { digest: string }[] };
    for (const l of manifest.layers) rmSync(join(dir, hex(l.digest)));
    return dir;
  }

  it("accepts a properly signed image, and refuses unsigned, wrong-identity and wrong-key images before any blob is read", async () => {
    const dir = await signedDir();
    const dst = fresh("dst");
    expect((await runCli(["--policy", trustSigner, "copy", "-q", `dir:${dir}`, `oci:${dst}:ok`])).code).toBe(0);
    const before = snapshot(dst);

    const broken = await signedWithoutLayers();
    // With a policy that accepts it, the copy fails on the missing blob...
    expect((await runCli(["--policy", trustSigner, "copy", "-q", `dir:${broken}`, `dir:${fresh()}`])).stderr).toMatch(/blob sha256:\w+ is missing/);
    // ...so each refusal below comes from the policy, before any blob was read.
    const cases: [string, string, RegExp][] = [
      [trustSignerOtherIdentity, broken, /Source image rejected: Signature for identity registry\.example\.com\/team\/app:1\.0 is not accepted/],
      [trustProtected, broken, /Source image rejected: signature made by key [0-9A-F]+, not one of the trusted keys/],
      [trustSigner, join(FIX, "dir", "docker"), /Source image rejected: A signature was required, but no signature exists/],
    ];
    for (const [policy, src, re] of cases) {
      const r = await runCli(["--policy", policy, "copy", "-q", `dir:${src}`, `oci:${dst}:rejected`]);
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(re);
      expect(snapshot(dst)).toEqual(before);
      const newDst = fresh("never");
      expect((await runCli(["--policy", policy, "copy", "-q", `dir:${src}`, `dir:${newDst}`])).code).toBe(1);
      expect(existsSync(newDst)).toBe(false);
    }
    // A reject policy names the image; --insecure-policy overrides any policy.
    const reject = writePolicy(work, "reject", { default: [{ type: "reject" }] });
    const r = await runCli(["--policy", reject, "copy", "-q", `dir:${dir}`, `dir:${fresh()}`]);
    expect(r.stderr).toMatch(new RegExp(`Source image rejected: Running image dir:${dir} is rejected by policy`));
    expect((await runCli(["--policy", reject, "--insecure-policy", "copy", "-q", `dir:${dir}`, `dir:${fresh()}`])).code).toBe(0);
  });

  it("accepts skopeo's gpg signatures (skopeo copy --sign-by), as skopeo does", async () => {
    const fpr = await gpg.fingerprint("signer@airlock.test");
    const bySkopeo = fresh();
    const s = await skopeo(["--policy", insecure, "copy", "-q", "--sign-by", fpr, "--sign-identity", IDENTITY, `dir:${join(FIX, "dir", "docker")}`, `dir:${bySkopeo}`]);
    expect(s.code, s.stderr).toBe(0);
    const dst = fresh();
    expect((await runCli(["--policy", trustSigner, "copy", "-q", `dir:${bySkopeo}`, `oci:${dst}:app`])).code).toBe(0);
    expect(readFileSync(join(dst, "signatures", "sha256", hex("sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625"), "signature-1"))).toEqual(
      readFileSync(join(bySkopeo, "signature-1")),
    );
    const wrong = await runCli(["--policy", trustProtected, "copy", "-q", `dir:${bySkopeo}`, `dir:${fresh()}`]);
    expect(wrong.stderr).toMatch(/Source image rejected/);
  });

  it("uses policy scopes: the image's path selects its requirements", async () => {
    const dir = await signedDir();
    const unsigned = fresh("unsigned");
    cpSync(join(FIX, "dir", "docker"), unsigned, { recursive: true });
    const scoped = writePolicy(work, "scoped", {
      default: [{ type: "reject" }],
      transports: { dir: { [dir]: [signedBy("signer.pub.asc", { type: "exactReference", dockerReference: IDENTITY })], [unsigned]: [{ type: "insecureAcceptAnything" }] } },
    });
    expect((await runCli(["--policy", scoped, "copy", "-q", `dir:${dir}`, `dir:${fresh()}`])).code).toBe(0);
    expect((await runCli(["--policy", scoped, "copy", "-q", `dir:${unsigned}`, `dir:${fresh()}`])).code).toBe(0);
    expect((await runCli(["--policy", scoped, "copy", "-q", `oci:${FIX}/oci:single`, `dir:${fresh()}`])).stderr).toMatch(/rejected by policy/);
    for (const src of [dir, unsigned]) expect((await skopeo(["--policy", scoped, "copy", "-q", `dir:${src}`, `dir:${fresh()}`])).code).toBe(0);
  });

  it("reports a missing or invalid policy file in one line", async () => {
    let r = await runCli(["--policy", join(work, "nope.json"), "copy", "-q", `oci:${FIX}/oci:single`, `dir:${fresh()}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot read the trust policy/);
    const bad = writePolicy(work, "bad", { default: [{ type: "signedBy" }] });
    r = await runCli(["--policy", bad, "copy", "-q", `oci:${FIX}/oci:single`, `dir:${fresh()}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  });
});
