/**
 * `airlock sync` and signatures, as `copy`: the trust policy (global --policy) is checked for
 * every image copied, with the signatures of registry images read from the lookaside storage
 * registries.d names; signatures are copied (to a registry's lookaside-staging), or dropped with
 * --remove-signatures.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const KEYS = join(FIX, "keys");
const SINGLE_HEX = "9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const tmp = mkdtempSync(join(tmpdir(), "airlock-sync-sigs-"));
let reg: RunningRegistry;
let H: string;
let registriesD: string;
let emptyD: string;
let sigstore: string;
let policy: string;

beforeAll(async () => {
  reg = await startRegistry({ mode: "plain" });
  H = reg.host;
  sigstore = join(tmp, "sigstore");
  registriesD = join(tmp, "registries.d");
  emptyD = join(tmp, "empty.d");
  mkdirSync(registriesD);
  mkdirSync(emptyD);
  const url = pathToFileURL(sigstore).href;
  writeFileSync(join(registriesD, "test.yaml"), `docker:\n  "${H}":\n    lookaside: ${url}\n    lookaside-staging: ${url}\n`);
  policy = join(tmp, "policy.json");
  const signedBy = { type: "signedBy", keyType: "GPGKeys", keyPath: join(KEYS, "signer.pub.asc") };
  writeFileSync(policy, JSON.stringify({ default: [{ type: "reject" }], transports: { docker: { [`${H}/signed`]: [signedBy] }, dir: { "": [{ type: "insecureAcceptAnything" }] } } }));
  const signed = await runCli(["--registries.d", registriesD, "copy", "-q", "--sign-by-key", join(KEYS, "signer.sec.asc"), `oci:${FIX}/oci:single`, `docker://${H}/signed/app:1`]);
  expect(signed.code, signed.stderr).toBe(0);
  const unsigned = await runCli(["--registries.d", registriesD, "copy", "-q", `oci:${FIX}/oci:base-a`, `docker://${H}/signed/unsigned:1`]);
  expect(unsigned.code, unsigned.stderr).toBe(0);
});

afterAll(async () => {
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const sync = (globals: string[], args: string[]) => runCli([...globals, "sync", ...args]);

describe("trust policy and signatures", () => {
  it("accepts a signed registry image (signature read from lookaside storage) and copies its signature; refuses an unsigned one, writing nothing", async () => {
    const dir = join(tmp, "accepted");
    const globals = ["--policy", policy, "--registries.d", registriesD];
    const r = await sync(globals, ["--src", "docker", "--dest", "dir", `${H}/signed/app`, dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(join(dir, "app:1")).sort()).toContain("signature-1");
    expect((await sync(globals, ["--src", "docker", "--dest", "dir", `${H}/signed/app`, dir])).stderr).toMatch(/skipped: already present/);

    const refused = await sync(globals, ["--src", "docker", "--dest", "dir", `${H}/signed/unsigned`, join(tmp, "refused")]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Source image rejected/);
    expect(existsSync(join(tmp, "refused", "unsigned:1", "manifest.json"))).toBe(false);

    // Without the lookaside configuration the signature cannot be found: the policy refuses.
    const blind = await sync(["--policy", policy, "--registries.d", emptyD], ["--src", "docker", "--dest", "dir", `${H}/signed/app`, join(tmp, "blind")]);
    expect(blind.code).not.toBe(0);
    expect(blind.stderr).toMatch(/Source image rejected/);
  });

  it("copies signatures to a registry's lookaside-staging; without one, refuses unless --remove-signatures", async () => {
    const src = join(tmp, "accepted");
    const none = await sync(["--registries.d", emptyD], ["--src", "dir", "--dest", "docker", src, `${H}/nostaging`]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/Can not copy signatures .*--remove-signatures/);
    const dropped = await sync(["--registries.d", emptyD], ["--src", "dir", "--dest", "docker", "--remove-signatures", src, `${H}/nostaging`]);
    expect(dropped.code, dropped.stderr).toBe(0);

    const kept = await sync(["--registries.d", registriesD], ["--src", "dir", "--dest", "docker", src, `${H}/mirror`]);
    expect(kept.code, kept.stderr).toBe(0);
    expect(readdirSync(join(sigstore, `mirror/app@sha256=${SINGLE_HEX}`))).toEqual(["signature-1"]);
  });
});
