/**
 * `airlock standalone-sign` and `standalone-verify` against skopeo's: what airlock signs,
 * `skopeo standalone-verify` (gpgme, a temporary GNUPGHOME) accepts; what `skopeo standalone-sign`
 * (gpg) signs, airlock accepts; and every refusal is one line with exit code 1.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { FIX, type GnuPG, gnupgWith, key, PASSPHRASE_FILE, run, sha256, workDir } from "./support.js";

const MANIFEST = join(FIX, "dir", "docker", "manifest.json");
const DIGEST = sha256(readFileSync(MANIFEST));
const REF = "registry.example.com/team/app:1.0";

let work: string;
let gpg: GnuPG;
let n = 0;
const out = () => join(work, `sig-${n++}`);

beforeAll(async () => {
  work = workDir("airlock-standalone-");
  gpg = await gnupgWith(["signer", "protected", "subkey"]);
});
afterAll(async () => {
  await gpg?.close();
});

/** Expects a failed run: exit 1 and one line on stderr matching `re`. */
function expectOneLineError(r: { code: number; stderr: string; stdout: string }, re: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe("");
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(re);
}

describe("airlock standalone-sign", () => {
  it("writes a signature skopeo standalone-verify accepts (key file, no gpg keyring)", async () => {
    const sig = out();
    const r = await runCli(["standalone-sign", MANIFEST, REF, "--key", key("signer.sec.asc"), "-o", sig]);
    expect(r).toMatchObject({ code: 0, stdout: "", stderr: "" });
    const fpr = await gpg.fingerprint("signer@airlock.test");
    const v = await run("skopeo", ["standalone-verify", MANIFEST, REF, fpr, sig], gpg.env);
    expect(v.stderr).toBe("");
    expect(v.stdout.trim()).toBe(`Signature verified, digest ${DIGEST}`); // skopeo 1.9.3's wording
    // skopeo checks the identity too.
    expect((await run("skopeo", ["standalone-verify", MANIFEST, "registry.example.com/team/app:2.0", fpr, sig], gpg.env)).code).not.toBe(0);
  });

  it("accepts skopeo's form MANIFEST REFERENCE FINGERPRINT and checks the fingerprint against --key", async () => {
    const fpr = await gpg.fingerprint("protected@airlock.test");
    const sig = out();
    const r = await runCli(["standalone-sign", MANIFEST, REF, fpr.toLowerCase(), "--key", key("protected.sec.asc"), "--passphrase-file", PASSPHRASE_FILE, "-o", sig]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect((await run("skopeo", ["standalone-verify", MANIFEST, REF, fpr, sig], gpg.env)).code).toBe(0);

    const other = await gpg.fingerprint("signer@airlock.test");
    const bad = out();
    const w = await runCli(["standalone-sign", MANIFEST, REF, other, "--key", key("protected.sec.asc"), "--passphrase-file", PASSPHRASE_FILE, "-o", bad]);
    expectOneLineError(w, new RegExp(`has fingerprint ${fpr}, not ${other}`));
  });

  it("refuses a protected key without its passphrase, a wrong passphrase, and missing --key or -o", async () => {
    expectOneLineError(await runCli(["standalone-sign", MANIFEST, REF, "--key", key("protected.sec.asc"), "-o", out()]), /protected by a passphrase/);
    const wrong = join(work, "wrong-pass");
    writeFileSync(wrong, "not the passphrase\n");
    expectOneLineError(await runCli(["standalone-sign", MANIFEST, REF, "--key", key("protected.sec.asc"), "--passphrase-file", wrong, "-o", out()]), /wrong passphrase/);
    expectOneLineError(await runCli(["standalone-sign", MANIFEST, REF, "--key", key("signer.pub.asc"), "-o", out()]), /secret key/);
    expectOneLineError(await runCli(["standalone-sign", MANIFEST, REF, "-o", out()]), /needs --key FILE/);
    expectOneLineError(await runCli(["standalone-sign", MANIFEST, REF, "--key", key("signer.sec.asc")]), /needs -o, --output FILE/);
    expectOneLineError(await runCli(["standalone-sign", join(work, "missing.json"), REF, "--key", key("signer.sec.asc"), "-o", out()]), /cannot read the manifest/);
    expectOneLineError(await runCli(["standalone-sign", MANIFEST, "Not A Reference", "--key", key("signer.sec.asc"), "-o", out()]), /cannot sign for "Not A Reference"/);
  });
});

describe("airlock standalone-verify", () => {
  let skopeoSig: string;
  let fpr: string;
  beforeAll(async () => {
    fpr = await gpg.fingerprint("signer@airlock.test");
    skopeoSig = join(work, "by-skopeo");
    const r = await run("skopeo", ["standalone-sign", MANIFEST, REF, fpr, "-o", skopeoSig], gpg.env);
    expect(r.code, r.stderr).toBe(0);
  });

  it("accepts what skopeo standalone-sign wrote with gpg, by fingerprint list or any", async () => {
    const other = await gpg.fingerprint("protected@airlock.test");
    const r = await runCli(["standalone-verify", MANIFEST, REF, `${other},${fpr}`, skopeoSig, "--public-key-file", key("signer.pub.asc")]);
    expect(r).toMatchObject({ code: 0, stderr: "", stdout: `Signature verified using fingerprint ${fpr}, digest ${DIGEST}\n` });
    const any = await runCli(["standalone-verify", MANIFEST, "registry.example.com/team/app:1.0", "any", skopeoSig, "--public-key-file", key("signer.pub.gpg")]);
    expect(any.stdout).toBe(`Signature verified using fingerprint ${fpr}, digest ${DIGEST}\n`);
  });

  it("round-trips its own signatures, naming the subkey when that is the fingerprint given", async () => {
    const sig = out();
    expect((await runCli(["standalone-sign", MANIFEST, REF, "--key", key("subkey.sec.asc"), "-o", sig])).code).toBe(0);
    const primary = await gpg.fingerprint("subkey@airlock.test");
    const r = await runCli(["standalone-verify", MANIFEST, REF, primary, sig, "--public-key-file", key("subkey.pub.asc")]);
    expect(r.stdout).toBe(`Signature verified using fingerprint ${primary}, digest ${DIGEST}\n`);
    // skopeo 1.9.3 names the signing subkey: airlock accepts that fingerprint as well and prints it.
    const sub = (await run("gpg", ["--batch", "--with-colons", "--list-keys", "subkey@airlock.test"], gpg.env)).stdout
      .split("\n")
      .filter((l) => l.startsWith("fpr:"))[1]
      ?.split(":")[9] as string;
    const s = await runCli(["standalone-verify", MANIFEST, REF, sub, sig, "--public-key-file", key("subkey.pub.asc")]);
    expect(s.stdout).toBe(`Signature verified using fingerprint ${sub}, digest ${DIGEST}\n`);
  });

  it("refuses a wrong identity, another manifest, a wrong key, altered bytes — one line, exit 1", async () => {
    const pub = ["--public-key-file", key("signer.pub.asc")];
    expectOneLineError(await runCli(["standalone-verify", MANIFEST, "registry.example.com/team/app:2.0", fpr, skopeoSig, ...pub]), /identity .* does not match/);
    const otherManifest = join(work, "other.json");
    writeFileSync(otherManifest, "{}");
    expectOneLineError(await runCli(["standalone-verify", otherManifest, REF, fpr, skopeoSig, ...pub]), /not the one that was signed/);
    const other = await gpg.fingerprint("protected@airlock.test");
    expectOneLineError(await runCli(["standalone-verify", MANIFEST, REF, other, skopeoSig, ...pub]), /not one of the trusted keys/);
    expectOneLineError(await runCli(["standalone-verify", MANIFEST, REF, "any", skopeoSig, "--public-key-file", key("protected.pub.asc")]), /^airlock: Error verifying signature/);
    const altered = Buffer.from(readFileSync(skopeoSig));
    altered[altered.length - 5] = (altered[altered.length - 5] as number) ^ 0xff;
    const alteredPath = join(work, "altered");
    writeFileSync(alteredPath, altered);
    expectOneLineError(await runCli(["standalone-verify", MANIFEST, REF, fpr, alteredPath, ...pub]), /Error verifying signature/);
    expectOneLineError(await runCli(["standalone-verify", MANIFEST, REF, fpr, skopeoSig]), /needs --public-key-file FILE/);
  });
});
