/**
 * registries.conf(5) end to end, against real docker-registry instances: `insecure = true` (plain
 * HTTP under a non-loopback name, TLS with an unknown CA), `blocked = true`, `location` rewrites,
 * and `[[registry.mirror]]` for pulls — given with `--registries-conf` or
 * $CONTAINERS_REGISTRIES_CONF, as skopeo reads them (and skopeo agreeing on the same file).
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runBin, runCli } from "../support/cli.js";
import { nonLoopbackIPv4 } from "../support/tools.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const tmp = mkdtempSync(join(tmpdir(), "airlock-regconf-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** Writes a registries.conf into the temp dir; returns its path. */
function conf(text: string): string {
  const path = join(tmp, `registries-${++n}.conf`);
  writeFileSync(path, text);
  return path;
}

const digestOf = (stdout: string): string => JSON.parse(stdout).Digest;

describe("registries.conf", () => {
  let plain: RunningRegistry; // 127.0.0.1: the location and mirror targets
  let primary: RunningRegistry; // 127.0.0.1: a mirrored registry's primary
  let tls: RunningRegistry;
  let basic: RunningRegistry;
  beforeAll(async () => {
    [plain, primary, tls, basic] = await Promise.all([startRegistry({ mode: "plain" }), startRegistry({ mode: "plain" }), startRegistry({ mode: "tls" }), startRegistry({ mode: "basic" })]);
    for (const dest of [`${plain.host}/real/app:1`, `${plain.host}/mir/app:1`, `${primary.host}/prim/other:1`]) {
      const r = await runCli(["copy", "-q", `oci:${FIX}/oci:single`, `docker://${dest}`]);
      expect(r.stderr).toBe("");
    }
    const r = await runCli(["copy", "-q", "--dest-cert-dir", tls.certDir as string, `oci:${FIX}/oci:single`, `docker://${tls.host}/t/app:1`]);
    expect(r.stderr).toBe("");
    const b = await runCli(["copy", "-q", "--dest-creds", `${basic.username}:${basic.password}`, `oci:${FIX}/oci:single`, `docker://${basic.host}/b/app:1`]);
    expect(b.stderr).toBe("");
  });
  afterAll(async () => {
    await Promise.all([plain?.stop(), primary?.stop(), tls?.stop(), basic?.stop()]);
  });

  it("insecure = true: a TLS registry with an unknown CA is read without verification; an explicit --tls-verify=true still verifies", async () => {
    const ref = `docker://${tls.host}/t/app:1`;
    const refused = await runCli(["inspect", ref]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/certificate/);
    const file = conf(`[[registry]]\nlocation = "${tls.host}"\ninsecure = true\n`);
    const ok = await runCli(["--registries-conf", file, "inspect", ref]);
    expect(ok.stderr).toBe("");
    expect(digestOf(ok.stdout)).toBe(SINGLE);
    const explicit = await runCli(["--registries-conf", file, "inspect", "--tls-verify=true", ref]);
    expect(explicit.code).toBe(1);
    expect(explicit.stderr).toMatch(/certificate/);
  });

  it("insecure = true: a plain-HTTP registry under a non-loopback name is refused without it and works with it ($CONTAINERS_REGISTRIES_CONF too), as in skopeo", async (ctx) => {
    const address = nonLoopbackIPv4();
    if (address === undefined) return ctx.skip("this machine has no non-loopback IPv4 address to bind docker-registry to");
    const remote = await startRegistry({ mode: "plain", address });
    try {
      const dest = `docker://${remote.host}/seed/x:1`;
      const refused = await runCli(["copy", "-q", `oci:${FIX}/oci:single`, dest]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("HTTP response to HTTPS client");
      const file = conf(`[[registry]]\nprefix = "${remote.host}/seed"\nlocation = "${remote.host}/seed"\ninsecure = true\n`);
      const pushed = await runCli(["--registries-conf", file, "copy", "-q", `oci:${FIX}/oci:single`, dest]);
      expect(pushed.stderr).toBe("");
      expect(pushed.code).toBe(0);
      const viaEnv = await runBin(["inspect", "--no-tags", dest], { env: { CONTAINERS_REGISTRIES_CONF: file } });
      expect(viaEnv.stderr).toBe("");
      expect(digestOf(viaEnv.stdout)).toBe(SINGLE);
      // skopeo login honours insecure too.
      const loginArgs = ["login", "--authfile", join(tmp, "login.json"), "-u", "someone", "--password-stdin", `${remote.host}/seed`];
      expect((await runBin(loginArgs, { input: "pw\n" })).code).toBe(1);
      const loggedIn = await runBin(["--registries-conf", file, ...loginArgs], { input: "pw\n" });
      expect(loggedIn.stderr).toBe("");
      expect(loggedIn.stdout).toContain("Login Succeeded");
      // sync checks what the destination holds before copying: that HEAD honours the file too.
      for (let i = 0; i < 2; i++) {
        const synced = await runCli(["--registries-conf", file, "sync", "-q", "--src", "docker", "--dest", "docker", `${plain.host}/real/app`, `${remote.host}/seed/synced`]);
        expect(synced.stderr).toBe("");
        expect(synced.code).toBe(0);
      }
      // Another repository of the same host is not under the prefix: still refused.
      const other = await runCli(["--registries-conf", file, "inspect", `docker://${remote.host}/other/x:1`]);
      expect(other.code).toBe(1);
      // skopeo reads the same file the same way.
      const sk = await promisify(execFile)("skopeo", ["--registries-conf", file, "inspect", "--no-tags", dest], { encoding: "utf8" });
      expect(digestOf(sk.stdout)).toBe(SINGLE);
    } finally {
      await remote.stop();
    }
  });

  it("inventory of a registry: insecure = true reads a TLS registry with an unknown CA, blocked = true refuses it", async () => {
    const out = join(tmp, "receipt.json");
    const refused = await runCli(["inventory", "--registry", `${tls.host}/t`, "-o", out]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/certificate/);
    const insecure = conf(`[[registry]]\nlocation = "${tls.host}"\ninsecure = true\n`);
    const ok = await runCli(["--registries-conf", insecure, "inventory", "--registry", `${tls.host}/t`, "-o", out]);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    const receipt = JSON.parse(readFileSync(out, "utf8"));
    expect(receipt.repositories).toEqual([{ name: "t/app", tags: { "1": SINGLE } }]);
    const blocked = conf(`[[registry]]\nprefix = "${tls.host}/t"\nlocation = "${tls.host}/t"\nblocked = true\n`);
    const denied = await runCli(["--registries-conf", blocked, "inventory", "--registry", `${tls.host}/t`, "-o", join(tmp, "denied.json")]);
    expect(denied.code).toBe(1);
    expect(denied.stderr.trim().split("\n")).toHaveLength(1);
    expect(denied.stderr).toContain(`registry ${tls.host}/t is blocked in ${blocked}`);
  });

  it("blocked = true refuses copy (both sides) and inspect with skopeo's message", async () => {
    const file = conf(`[[registry]]\nprefix = "${plain.host}/real"\nlocation = "${plain.host}/real"\nblocked = true\n`);
    const msg = `registry ${plain.host}/real is blocked in ${file}`;
    const inspect = await runCli(["--registries-conf", file, "inspect", `docker://${plain.host}/real/app:1`]);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr).toContain(msg);
    expect(inspect.stderr.trim().split("\n")).toHaveLength(1);
    const push = await runCli(["--registries-conf", file, "copy", "-q", `oci:${FIX}/oci:single`, `docker://${plain.host}/real/new:1`]);
    expect(push.code).toBe(1);
    expect(push.stderr).toContain(msg);
    const pull = await runCli(["--registries-conf", file, "copy", "-q", `docker://${plain.host}/real/app:1`, `oci:${join(tmp, "blocked")}:x`]);
    expect(pull.code).toBe(1);
    expect(pull.stderr).toContain(msg);
    const login = await runBin(["--registries-conf", file, "login", "--authfile", join(tmp, "blocked.json"), "-u", "x", "--password-stdin", `${plain.host}/real`], { input: "pw\n" });
    expect(login.code).toBe(1);
    expect(login.stderr).toContain(msg);
    // skopeo refuses too.
    const sk = await promisify(execFile)("skopeo", ["--registries-conf", file, "inspect", "--no-tags", `docker://${plain.host}/real/app:1`]).catch((e) => e);
    expect(sk.stderr).toContain(`registry ${plain.host}/real is blocked in ${file}`);
    // Outside the prefix, the same registry is reachable.
    const outside = await runCli(["--registries-conf", file, "inspect", "--no-tags", `docker://${plain.host}/mir/app:1`]);
    expect(outside.code).toBe(0);
  });

  it("location rewrites pulls (prefix replaced), not pushes, as in skopeo; skopeo reads the same", async () => {
    // insecure: skopeo, unlike airlock, wants it for plain HTTP even on loopback.
    const file = conf(`[[registry]]\nprefix = "example.invalid/team"\nlocation = "${plain.host}/real"\ninsecure = true\n`);
    const r = await runCli(["--registries-conf", file, "inspect", "docker://example.invalid/team/app:1"]);
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout);
    expect(out.Digest).toBe(SINGLE);
    expect(out.RepoTags).toEqual(["1"]);
    const sk = await promisify(execFile)("skopeo", ["--registries-conf", file, "inspect", "--no-tags", "docker://example.invalid/team/app:1"], { encoding: "utf8" });
    expect(digestOf(sk.stdout)).toBe(SINGLE);
    // A push goes where its reference says (containers/image rewrites pulls only): example.invalid does not resolve.
    const pushed = await runCli(["--registries-conf", file, "copy", "-q", "--retry-times", "0", `oci:${FIX}/oci:single`, "docker://example.invalid/team/pushed:2"]);
    expect(pushed.code).toBe(1);
    expect(pushed.stderr).toContain("example.invalid");
    expect((await runCli(["inspect", "--no-tags", `docker://${plain.host}/real/pushed:2`])).code).toBe(2);
  });

  it("mirrors serve pulls (a failing or empty mirror falls through to the primary); pushes go to the primary only", async () => {
    const file = conf(`
[[registry]]
prefix = "example.invalid/m"
location = "${primary.host}/prim"
[[registry.mirror]]
location = "127.0.0.1:1/down"
[[registry.mirror]]
location = "${plain.host}/mir"
`);
    const run = (args: string[]) => runCli(["--registries-conf", file, ...args]);
    // Only the mirror has app:1; the first mirror refuses connections.
    const fromMirror = await run(["copy", "-q", "--retry-times", "0", "docker://example.invalid/m/app:1", `oci:${join(tmp, "mirrored")}:x`]);
    expect(fromMirror.stderr).toBe("");
    expect(fromMirror.code).toBe(0);
    // Only the primary has other:1: both mirrors fail, the primary serves it.
    const fromPrimary = await run(["inspect", "--no-tags", "--retry-times", "0", "docker://example.invalid/m/other:1"]);
    expect(fromPrimary.stderr).toBe("");
    expect(digestOf(fromPrimary.stdout)).toBe(SINGLE);
    // Nowhere: the primary's not-found.
    const missing = await run(["inspect", "--no-tags", "--retry-times", "0", "docker://example.invalid/m/none:1"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`${primary.host}/prim/none`);
    expect(missing.stderr).toMatch(/mirrors also failed: 127\.0\.0\.1:1\/down\/none: .*; 127\.0\.0\.1:\d+\/mir\/none: /);
    // A push lands where its reference says, never on a mirror.
    const direct = conf(`[[registry]]\nprefix = "${primary.host}/prim"\n[[registry.mirror]]\nlocation = "${plain.host}/mir"\n`);
    const pushed = await runCli(["--registries-conf", direct, "copy", "-q", `oci:${FIX}/oci:single`, `docker://${primary.host}/prim/pushed:1`]);
    expect(pushed.stderr).toBe("");
    expect(digestOf((await runCli(["inspect", "--no-tags", `docker://${primary.host}/prim/pushed:1`])).stdout)).toBe(SINGLE);
    expect((await runCli(["inspect", "--no-tags", `docker://${plain.host}/mir/pushed:1`])).code).toBe(2);
  });

  it("credential-helpers: docker-credential-NAME is asked for the registry (instead of the auth files when they are not listed); a missing helper is named", async () => {
    // A credential helper speaking the Docker credential-helper protocol: `get`, the server on stdin, JSON out.
    const bin = join(tmp, "bin");
    mkdirSync(bin, { recursive: true });
    const helper = join(bin, "docker-credential-airlocktest");
    writeFileSync(helper, `#!/bin/sh\n[ "$1" = get ] || exit 1\ncat > "${join(tmp, "asked")}"\nprintf '{"ServerURL":"x","Username":"%s","Secret":"%s"}' "${basic.username}" "${basic.password}"\n`);
    chmodSync(helper, 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}` };
    const noAuth = ["--authfile", join(tmp, "no-auth.json")];
    const ref = `docker://${basic.host}/b/app:1`;
    const without = await runBin(["inspect", "--no-tags", ...noAuth, ref], { env });
    expect(without.code).toBe(1);
    const file = conf('credential-helpers = ["airlocktest"]\n');
    const withHelper = await runBin(["--registries-conf", file, "inspect", "--no-tags", ...noAuth, ref], { env });
    expect(withHelper.stderr).toBe("");
    expect(digestOf(withHelper.stdout)).toBe(SINGLE);
    expect(readFileSync(join(tmp, "asked"), "utf8")).toBe(basic.host);
    // skopeo asks the same helper with the same file.
    rmSync(join(tmp, "asked"));
    const sk = await promisify(execFile)("skopeo", ["--registries-conf", file, "inspect", "--no-tags", "--cert-dir", tmp, "--tls-verify=false", ...noAuth, ref], { encoding: "utf8", env: { ...process.env, ...env } });
    expect(digestOf(sk.stdout)).toBe(SINGLE);
    expect(readFileSync(join(tmp, "asked"), "utf8")).toBe(basic.host);
    const missing = conf('credential-helpers = ["airlock-missing-helper"]\n');
    const r = await runBin(["--registries-conf", missing, "inspect", "--no-tags", ...noAuth, ref], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`docker-credential-airlock-missing-helper (credential-helpers in ${missing}) is not installed`);
  });
});
