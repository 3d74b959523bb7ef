/**
 * `--require-signed` (skopeo's global flag, c/image `RequireSignatureVerification`): the trust
 * policy must verify a signature of each image, for copy, sync and import; with the fixture keys
 * (made by gpg) signing through `airlock copy --sign-by-key`, which skopeo's tests accept.
 */
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { FIX, key, signedBy, workDir, writePolicy } from "./support.js";

const IDENTITY = "registry.example.com/team/app:1.0";

let work: string;
let n = 0;
const fresh = (name = "t") => join(work, `${name}-${n++}`);
let signed: string;
let insecure: string;
let trustSigner: string;
let mixed: string;

beforeAll(async () => {
  work = workDir("airlock-require-signed-");
  insecure = writePolicy(work, "insecure", { default: [{ type: "insecureAcceptAnything" }] });
  trustSigner = writePolicy(work, "signer", { default: [signedBy("signer.pub.asc", { type: "exactReference", dockerReference: IDENTITY })] });
  // signedBy for dir: images, anything else accepted: --require-signed refuses the oci: source.
  mixed = writePolicy(work, "mixed", {
    default: [{ type: "insecureAcceptAnything" }],
    transports: { dir: { "": [signedBy("signer.pub.asc", { type: "exactReference", dockerReference: IDENTITY })] } },
  });
  signed = fresh("signed");
  const r = await runCli(["--insecure-policy", "copy", "-q", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, `oci:${FIX}/oci:single`, `dir:${signed}`]);
  expect(r, r.stderr).toMatchObject({ code: 0, stderr: "" });
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe("--require-signed", () => {
  it("copy: an insecureAcceptAnything policy is refused before anything is written", async () => {
    const dst = fresh();
    const r = await runCli(["--policy", insecure, "--require-signed", "copy", "-q", `dir:${signed}`, `dir:${dst}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Source image rejected: Signature verification was required (--require-signed)");
    expect(r.stderr).toContain("insecureAcceptAnything");
    expect(existsSync(dst) ? readdirSync(dst).filter((f) => f !== "version") : []).toEqual([]);
    // Without the flag the same policy accepts it.
    expect((await runCli(["--policy", insecure, "copy", "-q", `dir:${signed}`, `dir:${fresh()}`])).code).toBe(0);
  });

  it("copy: a signedBy policy with a valid signature passes; an unsigned image is refused", async () => {
    const dst = fresh();
    const ok = await runCli(["--policy", trustSigner, "--require-signed", "copy", "-q", `dir:${signed}`, `dir:${dst}`]);
    expect(ok, ok.stderr).toMatchObject({ code: 0, stderr: "" });
    expect(readdirSync(dst)).toContain("signature-1");
    const unsigned = await runCli(["--policy", trustSigner, "--require-signed", "copy", "-q", `oci:${FIX}/oci:single`, `dir:${fresh()}`]);
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/Source image rejected: A signature was required, but no signature exists/);
  });

  it("copy: the scope that applies must verify a signature (a policy signing only dir: images)", async () => {
    expect((await runCli(["--policy", mixed, "--require-signed", "copy", "-q", `dir:${signed}`, `dir:${fresh()}`])).code).toBe(0);
    const r = await runCli(["--policy", mixed, "--require-signed", "copy", "-q", `oci:${FIX}/oci:single`, `dir:${fresh()}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--require-signed");
  });

  it("is refused together with --insecure-policy", async () => {
    const dst = fresh();
    const r = await runCli(["--insecure-policy", "--require-signed", "copy", "-q", `dir:${signed}`, `dir:${dst}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("--require-signed and --insecure-policy are mutually exclusive");
    expect(existsSync(dst)).toBe(false);
  });

  it("sync: an insecureAcceptAnything policy is refused; a signedBy policy passes", async () => {
    const bad = await runCli(["--policy", insecure, "--require-signed", "sync", "-q", "--src", "dir", "--dest", "dir", signed, fresh()]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("Signature verification was required (--require-signed)");
    const dst = fresh();
    const ok = await runCli(["--policy", trustSigner, "--require-signed", "sync", "-q", "--src", "dir", "--dest", "dir", signed, dst]);
    expect(ok, ok.stderr).toMatchObject({ code: 0 });
  });

  it("import: the bundle's signatures must satisfy a requirement that verifies them", async () => {
    const yaml = join(work, "images.yaml");
    writeFileSync(yaml, `version: 1\nimages:\n  - source: dir:${signed}\n    as: demo/app:1\n`);
    const bundle = join(work, "signed.tar");
    const e = await runCli(["--insecure-policy", "export", "-q", "-f", yaml, "-o", bundle]);
    expect(e, e.stderr).toMatchObject({ code: 0 });
    const bad = await runCli(["--policy", insecure, "--require-signed", "import", "-q", bundle, "--to", `oci:${fresh()}`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("Signature verification was required (--require-signed)");
    const ok = await runCli(["--policy", trustSigner, "--require-signed", "import", "-q", bundle, "--to", `oci:${fresh()}`]);
    expect(ok, ok.stderr).toMatchObject({ code: 0 });
  });
});
