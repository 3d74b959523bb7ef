/**
 * The registry verbs end to end against the real CNCF distribution registry in its four modes
 * (plain HTTP, basic auth, TLS with a private CA, bearer tokens): copy, inspect, list-tags,
 * delete, login and logout, interop with skopeo, and the failures users meet.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, type RegistryMode, startRegistry } from "../harness/registry.js";
import { runBin, runCli } from "../support/cli.js";
import { nonLoopbackIPv4 } from "../support/tools.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const MULTI = "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01";
const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const tmp = mkdtempSync(join(tmpdir(), "airlock-cli-reg-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Flags that let airlock and skopeo reach `reg` (credentials, CA). */
function access(reg: RunningRegistry, side: "" | "src-" | "dest-" = ""): string[] {
  const flags: string[] = [];
  if (reg.username) flags.push(`--${side}creds`, `${reg.username}:${reg.password}`);
  if (reg.certDir) flags.push(`--${side}cert-dir`, reg.certDir);
  if (reg.mode === "plain" || reg.mode === "basic") flags.push(`--${side}tls-verify=false`);
  return flags;
}

describe.each<RegistryMode>(["plain", "basic", "tls", "token"])("against docker-registry (%s)", (mode) => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("copy to the registry, inspect, list-tags, copy back, delete", async () => {
    const repo = `docker://${reg.host}/fixtures/single`;
    let r = await runCli(["copy", "-q", ...access(reg, "dest-"), `oci:${FIX}/oci:single`, `${repo}:1.0`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect((await runCli(["copy", "-q", ...access(reg, "dest-"), `oci:${FIX}/oci:single`, `${repo}:latest`])).code).toBe(0);

    r = await runCli(["inspect", ...access(reg), `${repo}:1.0`]);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info).toMatchObject({ Name: `${reg.host}/fixtures/single`, Digest: SINGLE, Architecture: "amd64" });
    // As skopeo: Tag comes only from a schema 1 manifest, never from the reference.
    expect(info).not.toHaveProperty("Tag");
    expect(info.RepoTags.sort()).toEqual(["1.0", "latest"]);

    r = await runCli(["list-tags", ...access(reg), repo]);
    expect(JSON.parse(r.stdout)).toEqual({ Repository: `${reg.host}/fixtures/single`, Tags: expect.arrayContaining(["1.0", "latest"]) });

    const back = join(tmp, `${mode}-back`);
    expect((await runCli(["copy", "-q", ...access(reg, "src-"), `${repo}:1.0`, `oci:${back}:x`])).code).toBe(0);
    expect(sha(readFileSync(join(back, "blobs/sha256", SINGLE.slice(7))))).toBe(SINGLE);

    expect((await runCli(["delete", ...access(reg), `${repo}:1.0`])).code).toBe(0);
    r = await runCli(["inspect", ...access(reg), `${repo}:latest`]);
    expect(r.code).toBe(2); // the manifest is gone, and with it every tag pointing at it
  });

  it("copies a whole index with --all, same digest", async () => {
    const dst = `docker://${reg.host}/fixtures/multi:1`;
    expect((await runCli(["copy", "-q", "--all", ...access(reg, "dest-"), `oci:${FIX}/oci:multi`, dst])).code).toBe(0);
    const r = await runCli(["inspect", "--raw", ...access(reg), dst]);
    expect(sha(r.stdout)).toBe(MULTI);
  });

  it("login checks the credentials, writes a 0600 auth file that copy then uses; logout removes them", async () => {
    const authfile = join(tmp, `${mode}-auth.json`);
    const tls = reg.certDir ? ["--cert-dir", reg.certDir] : reg.mode === "plain" || reg.mode === "basic" ? ["--tls-verify=false"] : [];
    if (reg.username) {
      const bad = await runBin(["login", "--authfile", authfile, "-u", reg.username, "--password-stdin", ...tls, reg.host], { input: "wrong-password\n" });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/unauthorized|credentials|password/i);
      expect(bad.stderr).not.toContain("wrong-password");
      expect(() => statSync(authfile)).toThrow();
      const ok = await runBin(["login", "--authfile", authfile, "-u", reg.username, "--password-stdin", ...tls, reg.host], { input: `${reg.password}\n` });
      expect(ok).toMatchObject({ code: 0, stdout: "Login Succeeded!\n" });
      expect(statSync(authfile).mode & 0o777).toBe(0o600);
      expect(readFileSync(authfile, "utf8")).not.toContain(reg.password as string);
      expect((await runBin(["login", "--authfile", authfile, "--get-login", reg.host])).stdout).toBe(`${reg.username}\n`);
      const tlsFlags = tls.map((f) => f.replace("--", "--dest-"));
      const r = await runBin(["copy", "-q", "--authfile", authfile, ...tlsFlags, `oci:${FIX}/oci:base-a`, `docker://${reg.host}/auth/base-a:1`]);
      expect(r).toMatchObject({ code: 0 });
      expect((await runBin(["logout", "--authfile", authfile, reg.host])).stdout).toBe(`Removed login credentials for ${reg.host}\n`);
      const denied = await runBin(["copy", "-q", "--authfile", authfile, ...tlsFlags, `oci:${FIX}/oci:base-b`, `docker://${reg.host}/auth/base-b:1`]);
      expect(denied.code).toBe(1);
      expect(denied.stderr.trim().split("\n")).toHaveLength(1);
      expect(denied.stderr).toMatch(/auth|credentials|login/i);
    } else {
      const r = await runBin(["copy", "-q", ...tls.map((f) => f.replace("--", "--dest-")), `oci:${FIX}/oci:base-a`, `docker://${reg.host}/auth/base-a:1`]);
      expect(r.code).toBe(0);
    }
  });

  it("skopeo reads what airlock pushed, and airlock reads what skopeo pushed, same digests", async () => {
    // Asynchronous: in token mode the token server runs in this process and must keep answering.
    const sk = async (args: string[]) => (await promisify(execFile)("skopeo", args, { encoding: "utf8" })).stdout;
    const skAccess = (side: "src-" | "dest-" | "") => {
      const f: string[] = [];
      if (reg.username) f.push(`--${side}creds`, `${reg.username}:${reg.password}`);
      if (reg.certDir) f.push(`--${side}cert-dir`, reg.certDir);
      else f.push(`--${side}tls-verify=false`);
      return f;
    };
    expect((await runCli(["copy", "-q", ...access(reg, "dest-"), `oci:${FIX}/oci:base-b`, `docker://${reg.host}/interop/a:1`])).code).toBe(0);
    expect(sha(await sk(["inspect", "--raw", ...skAccess(""), `docker://${reg.host}/interop/a:1`]))).toBe("sha256:25f5f9854655269565b0f3b51c958aaeca9561ed49726c1e5de4a871fcca8cef");
    await sk(["copy", "-q", "--all", ...skAccess("dest-"), `oci:${FIX}/oci:multi`, `docker://${reg.host}/interop/b:1`]);
    const r = await runCli(["inspect", "--raw", ...access(reg), `docker://${reg.host}/interop/b:1`]);
    expect(sha(r.stdout)).toBe(MULTI);
  });

  it("a tag that does not exist exits 2", async () => {
    const r = await runBin(["inspect", ...access(reg), `docker://${reg.host}/fixtures/single:no-such-tag`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no-such-tag/);
  });

  it("--debug logs one line per registry request (as skopeo's), never a credential", async () => {
    const ref = `docker://${reg.host}/debug/log:1`;
    expect((await runCli(["copy", "-q", ...access(reg, "dest-"), `oci:${FIX}/oci:single`, ref])).code).toBe(0);
    const r = await runBin(["--debug", "inspect", ...access(reg), ref]);
    expect(r.code).toBe(0);
    const debug = r.stderr.split("\n").filter((l) => l.startsWith("airlock: debug: "));
    const origin = `http${reg.mode === "tls" ? "s" : ""}://${reg.host}`;
    expect(debug).toContain(`airlock: debug: GET ${origin}/v2/ → ${reg.mode === "basic" || reg.mode === "token" ? 401 : 200}`);
    expect(debug).toContain(`airlock: debug: GET ${origin}/v2/debug/log/manifests/1 → 200`);
    // The config blob (inspect reads it); a token request or a redirect would add lines of their own.
    expect(debug.some((l) => l.startsWith(`airlock: debug: GET ${origin}/v2/debug/log/blobs/sha256:`) && l.endsWith(" → 200"))).toBe(true);
    if (reg.password) expect(r.stderr).not.toContain(reg.password);
    expect(r.stderr).not.toMatch(/basic |bearer |authorization|token=|password/i);
  });
});

describe("failures users meet", () => {
  let tls: RunningRegistry;
  let plain: RunningRegistry;
  beforeAll(async () => {
    [tls, plain] = await Promise.all([startRegistry({ mode: "tls" }), startRegistry({ mode: "plain" })]);
  });
  afterAll(async () => {
    await Promise.all([tls?.stop(), plain?.stop()]);
  });

  it("an unknown CA: the message names --tls-verify=false and --cert-dir", async () => {
    const r = await runBin(["copy", `oci:${FIX}/oci:single`, `docker://${tls.host}/x/y:1`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--dest-tls-verify=false|--tls-verify=false/);
    expect(r.stderr).toMatch(/cert-dir/);
  });

  it("a TLS registry whose CA is skipped with --dest-tls-verify=false works", async () => {
    const r = await runBin(["copy", "-q", "--dest-tls-verify=false", `oci:${FIX}/oci:single`, `docker://${tls.host}/x/y:1`]);
    expect(r.code).toBe(0);
  });

  it("a plain-HTTP registry under a non-loopback name needs --tls-verify=false, and then works (skopeo's 'HTTP response to HTTPS client')", async (ctx) => {
    // airlock allows plain HTTP to loopback without flags (as Docker does), so this needs the
    // registry on an address of this machine that is not loopback; CI runners may have none.
    const address = nonLoopbackIPv4();
    if (address === undefined) return ctx.skip("this machine has no non-loopback IPv4 address to bind docker-registry to");
    const remote = await startRegistry({ mode: "plain", address });
    try {
      const dest = `docker://${remote.host}/seed/x:1`;
      const refused = await runBin(["copy", "-q", `oci:${FIX}/oci:single`, dest]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(remote.host);
      expect(refused.stderr).toMatch(/--dest-tls-verify=false/);
      const pushed = await runBin(["copy", "-q", "--dest-tls-verify=false", `oci:${FIX}/oci:single`, dest]);
      expect(pushed.stderr).toBe("");
      expect(pushed.code).toBe(0);
      const pulled = await runBin(["copy", "-q", "--src-tls-verify=false", dest, `oci:${join(tmp, "http")}:x`]);
      expect(pulled.code).toBe(0);
      expect(JSON.parse(readFileSync(join(tmp, "http", "index.json"), "utf8")).manifests[0].digest).toBe(SINGLE);
    } finally {
      await remote.stop();
    }
  });

  it("credentials never appear in output, even with --debug", async () => {
    const r = await runBin(["--debug", "inspect", "--creds", "someone:TopSecret123", "--tls-verify=false", `docker://${plain.host}/nothing/here:1`]);
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).not.toContain("TopSecret123");
  });
});
