/**
 * images.yaml's per-registry settings end to end: two real docker-registry instances that demand
 * basic auth, their credentials given as `registries."HOST".credentials.env` (the names of
 * environment variables), and `airlock lock` + `export` through the built binary. With
 * --keep-going, an image whose registry gets the wrong password is listed with an auth message
 * while the other is exported (exit 1: not a missing image).
 */
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { copyImage, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runBin } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const BASE_B = "sha256:25f5f9854655269565b0f3b51c958aaeca9561ed49726c1e5de4a871fcca8cef";
const sha = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const skopeo = async (...args: string[]) => (await promisify(execFile)("skopeo", args, { encoding: "utf8", maxBuffer: 64 << 20 })).stdout;

const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-auth-"));
let a: RunningRegistry;
let b: RunningRegistry;
let yaml: string;

/** The environment images.yaml names: A's and B's usernames and passwords. */
const env = (bPassword?: string): NodeJS.ProcessEnv => ({
  AIRLOCK_TEST_A_USER: a.username,
  AIRLOCK_TEST_A_PASS: a.password,
  AIRLOCK_TEST_B_USER: b.username,
  AIRLOCK_TEST_B_PASS: bPassword ?? b.password,
  REGISTRY_AUTH_FILE: join(tmp, "no-auth.json"), // no credentials from anywhere else
});

beforeAll(async () => {
  [a, b] = await Promise.all([startRegistry({ mode: "basic" }), startRegistry({ mode: "basic" })]);
  const push = (reg: RunningRegistry, name: string, to: string) =>
    copyImage(parseImageName(`oci:${FIX}/oci:${name}`), parseImageName(`docker://${reg.host}/${to}`), {
      destinationContext: { docker: { credentials: { username: reg.username as string, password: reg.password as string } } },
    });
  await Promise.all([push(a, "single", "team/single:1.0.0"), push(a, "single", "team/single:0.9.0"), push(b, "base-b", "team/base-b:1")]);
  writeFileSync(join(tmp, "no-auth.json"), "{}");
  yaml = join(tmp, "images.yaml");
  writeFileSync(
    yaml,
    `version: 1
registries:
  "${a.host}":
    tlsVerify: false
    credentials: { env: { username: AIRLOCK_TEST_A_USER, password: AIRLOCK_TEST_A_PASS } }
  "${b.host}":
    tlsVerify: false
    credentials: { env: { username: AIRLOCK_TEST_B_USER, password: AIRLOCK_TEST_B_PASS } }
images:
  - name: ${a.host}/team/single
    tags: { semver: ">=1" }
  - name: ${b.host}/team/base-b
    tags: ["1"]
`,
  );
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

describe("registry credentials from the environment (images.yaml registries.HOST.credentials.env)", () => {
  it("a variable that is not set is named", async () => {
    const r = await runBin(["lock", "-f", yaml, "-o", join(tmp, "anonymous.lock.yaml")], { env: { ...env(), AIRLOCK_TEST_A_USER: "", AIRLOCK_TEST_B_USER: "" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/AIRLOCK_TEST_A_USER .*not set/);
  });

  it("lock lists tags and pins both images with each registry's own credentials; the lock holds no secret", async () => {
    const r = await runBin(["lock", "-f", yaml], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n").sort()).toEqual([`${a.host}/team/single:1.0.0 ${SINGLE}`, `${b.host}/team/base-b:1 ${BASE_B}`].sort());
    const lock = readFileSync(join(tmp, "images.lock.yaml"), "utf8");
    expect(lock).not.toContain(a.password as string);
    expect(`${r.stdout}${r.stderr}`).not.toContain(a.password as string);
  });

  it("export --locked reads both registries; the bundle has both images (checked by skopeo) and no secret", async () => {
    const out = join(tmp, "bundle.tar");
    const r = await runBin(["export", "-q", "-f", yaml, "--locked", "-o", out], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Exported 2 image\(s\)/m);
    expect(sha(await skopeo("inspect", "--raw", `oci-archive:${out}:${a.host}/team/single:1.0.0`))).toBe(SINGLE);
    expect(sha(await skopeo("inspect", "--raw", `oci-archive:${out}:${b.host}/team/base-b:1`))).toBe(BASE_B);
    expect(readFileSync(out).includes(a.password as string)).toBe(false);
    expect((await runBin(["verify", out])).code).toBe(0);
  });

  it("--keep-going: wrong credentials for one registry fail its image with an auth message, the other is exported, exit 1", async () => {
    const out = join(tmp, "partial.tar");
    const report = join(tmp, "partial.json");
    const r = await runBin(["export", "-q", "-f", yaml, "--keep-going", "-o", out, "--report", report], { env: env("wrong-password") });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^FAILED ${b.host}/team/base-b:1: .*(unauthorized|authentication|credentials)`, "im"));
    expect(r.stdout).toMatch(/^Exported 1 image\(s\)/m);
    expect(`${r.stdout}${r.stderr}`).not.toContain("wrong-password");
    expect(sha(await skopeo("inspect", "--raw", `oci-archive:${out}:${a.host}/team/single:1.0.0`))).toBe(SINGLE);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep.ok).toBe(false);
    expect(rep.images.map((i: { name: string }) => i.name)).toEqual([`${a.host}/team/single:1.0.0`]);
    expect(rep.failures).toEqual([expect.objectContaining({ image: `${b.host}/team/base-b:1`, code: "ERR_UNAUTHORIZED" })]);
  });
});
