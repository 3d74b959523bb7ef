/**
 * Signatures of registry images: airlock signs on push and writes the signature to the lookaside
 * storage registries.d configures (a file:// staging directory), skopeo with the same registries.d
 * and a signedBy policy accepts the pushed image, airlock's policy accepts what skopeo signed on
 * push, and copies refuse to push what they cannot sign or whose signatures they cannot store.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";
import { FIX, type GnuPG, gnupgWith, key, run, signedBy, workDir, writePolicy } from "./support.js";

const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const hex = (d: string) => d.slice("sha256:".length);

let reg: RunningRegistry;
let gpg: GnuPG;
let work: string;
let sigstore: string;
let registriesD: string;
let emptyRegistriesD: string;
let trustSigner: string;
let trustProtected: string;
let insecure: string;
let n = 0;
const fresh = (name = "t") => join(work, `${name}-${n++}`);

beforeAll(async () => {
  [reg, gpg] = await Promise.all([startRegistry({ mode: "plain" }), gnupgWith(["signer"])]);
  work = workDir("airlock-sign-registry-");
  sigstore = join(work, "sigstore");
  registriesD = join(work, "registries.d");
  emptyRegistriesD = join(work, "empty.d");
  mkdirSync(registriesD);
  mkdirSync(emptyRegistriesD);
  const url = pathToFileURL(sigstore).href;
  writeFileSync(join(registriesD, "test.yaml"), `docker:\n  "${reg.host}":\n    lookaside: ${url}\n    lookaside-staging: ${url}\n`);
  const scoped = (req: unknown) => ({ default: [{ type: "reject" }], transports: { docker: { [`${reg.host}/signed`]: [req] }, dir: { "": [{ type: "insecureAcceptAnything" }] } } });
  trustSigner = writePolicy(work, "signer", scoped(signedBy("signer.pub.asc")));
  trustProtected = writePolicy(work, "protected", scoped(signedBy("protected.pub.asc")));
  insecure = writePolicy(work, "insecure", { default: [{ type: "insecureAcceptAnything" }] });
});
afterAll(async () => {
  await Promise.all([reg?.stop(), gpg?.close()]);
});

const airlock = (args: string[]) => runCli(["--registries.d", registriesD, ...args]);
const skopeo = (args: string[]) => run("skopeo", ["--registries.d", registriesD, ...args], gpg.env);
const pushed = async (ref: string) => (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", ref])).code === 0;

describe("signing on push (lookaside storage)", () => {
  it("airlock signs; skopeo with the same registries.d and a signedBy policy accepts it, a wrong key is refused", async () => {
    const image = `docker://${reg.host}/signed/app:1`;
    const r = await airlock(["copy", "-q", "--dest-tls-verify=false", "--sign-by-key", key("signer.sec.asc"), `oci:${FIX}/oci:single`, image]);
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: "" });
    const stored = join(sigstore, `signed/app@sha256=${hex(SINGLE)}`);
    expect(readdirSync(stored)).toEqual(["signature-1"]);

    const dir = fresh();
    const ok = await skopeo(["--policy", trustSigner, "copy", "-q", "--src-tls-verify=false", image, `dir:${dir}`]);
    expect(ok.stderr).toBe("");
    expect(readFileSync(join(dir, "signature-1"))).toEqual(readFileSync(join(stored, "signature-1")));
    const wrong = await skopeo(["--policy", trustProtected, "copy", "-q", "--src-tls-verify=false", image, `dir:${fresh()}`]);
    expect(wrong.stderr).toMatch(/Source image rejected/);
    // The signature names the pushed reference: skopeo standalone-verify agrees.
    const v = await run("skopeo", ["standalone-verify", join(dir, "manifest.json"), `${reg.host}/signed/app:1`, await gpg.fingerprint("signer@airlock.test"), join(dir, "signature-1")], gpg.env);
    expect(v.stdout.trim()).toBe(`Signature verified, digest ${SINGLE}`);

    // airlock reads it back from the lookaside storage, checks it, and keeps it in an OCI layout.
    const layout = fresh();
    expect((await airlock(["--policy", trustSigner, "copy", "-q", "--src-tls-verify=false", image, `oci:${layout}:app`])).code).toBe(0);
    expect(existsSync(join(layout, "signatures", "sha256", hex(SINGLE), "signature-1"))).toBe(true);
    const refused = await airlock(["--policy", trustProtected, "copy", "-q", "--src-tls-verify=false", image, `oci:${fresh()}:app`]);
    expect(refused.stderr).toMatch(/^airlock: Source image rejected: signature made by key/);
  });

  it("airlock's policy refuses an unsigned image and a signature for another identity, as skopeo's does; nothing is written", async () => {
    const unsigned = `docker://${reg.host}/signed/unsigned:1`;
    expect((await airlock(["copy", "-q", "--dest-tls-verify=false", `oci:${FIX}/oci:base-a`, unsigned])).code).toBe(0);
    const otherIdentity = `docker://${reg.host}/signed/app:2`;
    const s = await airlock(["copy", "-q", "--dest-tls-verify=false", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", `${reg.host}/signed/other:2`, `oci:${FIX}/oci:base-b`, otherIdentity]);
    expect(s.code, s.stderr).toBe(0);
    for (const [image, re] of [
      [unsigned, /Source image rejected: A signature was required, but no signature exists/],
      [otherIdentity, /Source image rejected: Signature for identity .*signed\/other:2 is not accepted/],
    ] as const) {
      const dst = fresh();
      const r = await airlock(["--policy", trustSigner, "copy", "-q", "--src-tls-verify=false", image, `dir:${dst}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(re);
      expect(existsSync(dst)).toBe(false);
      expect((await skopeo(["--policy", trustSigner, "copy", "-q", "--src-tls-verify=false", image, `dir:${fresh()}`])).stderr).toMatch(/Source image rejected/);
    }
  });

  it("airlock accepts what skopeo copy --sign-by (gpg) pushed with the same registries.d", async () => {
    const image = `docker://${reg.host}/signed/by-skopeo:1`;
    const fpr = await gpg.fingerprint("signer@airlock.test");
    const s = await skopeo(["--policy", insecure, "copy", "-q", "--dest-tls-verify=false", "--sign-by", fpr, `dir:${join(FIX, "dir", "docker")}`, image]);
    expect(s.code, s.stderr).toBe(0);
    const dir = fresh();
    const r = await airlock(["--policy", trustSigner, "copy", "-q", "--src-tls-verify=false", image, `dir:${dir}`]);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(existsSync(join(dir, "signature-1"))).toBe(true);
    expect((await airlock(["--policy", trustProtected, "copy", "-q", "--src-tls-verify=false", image, `dir:${fresh()}`])).stderr).toMatch(/Source image rejected/);
  });
});

describe("what cannot be signed or stored is not pushed", () => {
  it("signing a push with no lookaside configured fails before copying, saying how to configure registries.d", async () => {
    const image = `docker://${reg.host}/unconfigured/app:1`;
    const r = await runCli(["--registries.d", emptyRegistriesD, "copy", "-q", "--dest-tls-verify=false", "--sign-by-key", key("signer.sec.asc"), `oci:${FIX}/oci:single`, image]);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`no lookaside storage is configured for ${reg.host}/unconfigured/app in ${emptyRegistriesD}.*lookaside-staging`));
    expect(await pushed(image)).toBe(false);
  });

  it("a signed source needs a destination that stores signatures, or --remove-signatures", async () => {
    const signedDir = fresh();
    const identity = ["--sign-identity", "registry.example.com/app:1"];
    expect((await runCli(["copy", "-q", "--sign-by-key", key("signer.sec.asc"), ...identity, `oci:${FIX}/oci:single`, `dir:${signedDir}`])).code).toBe(0);
    const image = `docker://${reg.host}/unconfigured/signed:1`;
    const r = await runCli(["--registries.d", emptyRegistriesD, "copy", "-q", "--dest-tls-verify=false", `dir:${signedDir}`, image]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Can not copy signatures to .*pass --remove-signatures/);
    expect(await pushed(image)).toBe(false);
    // Without the signatures, the push works.
    expect((await runCli(["--registries.d", emptyRegistriesD, "copy", "-q", "--remove-signatures", "--dest-tls-verify=false", `dir:${signedDir}`, image])).code).toBe(0);
    expect(await pushed(image)).toBe(true);
  });
});
