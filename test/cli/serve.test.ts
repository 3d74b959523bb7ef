/**
 * `airlock serve` as a user runs it: the real binary on a free port, pushed to and pulled from by
 * skopeo and by airlock, stopped with SIGTERM.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { AIRLOCK_BIN, runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const MULTI = "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01";
const sha = (b: string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const skopeo = async (...args: string[]) => (await promisify(execFile)("skopeo", args, { encoding: "utf8" })).stdout;
const tmp = mkdtempSync(join(tmpdir(), "airlock-serve-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

/** Starts `airlock serve ARGS --listen 127.0.0.1:0` and resolves with its host and stderr so far. */
function startServe(args: string[]): Promise<{ host: string; child: ChildProcess; log: () => string }> {
  const child = spawn(process.execPath, [AIRLOCK_BIN, "serve", ...args, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stderr = "";
  return new Promise((resolve, reject) => {
    child.stderr.on("data", (c) => {
      stderr += c;
      const m = /listening on https?:\/\/([\d.]+:\d+)/.exec(stderr);
      if (m) resolve({ host: m[1] as string, child, log: () => stderr });
    });
    child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
}

describe("airlock serve", () => {
  it("serves a store: skopeo pushes and pulls, airlock copies, the access log records requests, SIGTERM stops it", async () => {
    const { host, child, log } = await startServe(["--root", join(tmp, "store")]);
    await skopeo("copy", "-q", "--dest-tls-verify=false", `oci:${FIX}/oci:single`, `docker://${host}/app/single:1.0`);
    expect(sha(await skopeo("inspect", "--raw", "--tls-verify=false", `docker://${host}/app/single:1.0`))).toBe(SINGLE);
    expect((await runCli(["copy", "-q", "--all", `oci:${FIX}/oci:multi`, `docker://${host}/app/multi:1`])).code).toBe(0);
    const r = await runCli(["inspect", "--raw", `docker://${host}/app/multi:1`]);
    expect(sha(r.stdout)).toBe(MULTI);
    const tags = JSON.parse((await runCli(["list-tags", `docker://${host}/app/single`])).stdout);
    expect(tags.Tags).toEqual(["1.0"]);
    expect(log()).toMatch(/"(GET|HEAD) \/v2\/app\/single\/manifests\/1\.0[^"]*" 200/);
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("serves the committed fixtures layout read-only and refuses pushes", async () => {
    const { host, child } = await startServe(["--root", join(FIX, "oci"), "--read-only"]);
    expect(sha(await skopeo("inspect", "--raw", "--tls-verify=false", `docker://${host}/single:latest`))).toBe(SINGLE);
    const push = await runCli(["copy", "-q", `oci:${FIX}/oci:single`, `docker://${host}/other:1`]);
    expect(push.code).toBe(1);
    expect(push.stderr).toMatch(/denied|read-only|not allowed/i);
    child.kill("SIGTERM");
  });

  it("podman pulls from it (rootful, vfs storage), from a store and straight from a bundle, same digests", async () => {
    const storage = mkdtempSync(join(tmp, "podman-"));
    const podman = async (...args: string[]) =>
      (await promisify(execFile)("podman", ["--root", join(storage, "root"), "--runroot", join(storage, "run"), "--storage-driver", "vfs", ...args], { encoding: "utf8" })).stdout;
    const store = await startServe(["--root", join(FIX, "oci"), "--read-only"]);
    await podman("pull", "-q", "--tls-verify=false", `${store.host}/multi:latest`);
    const layout = join(tmp, "bundle-src");
    expect((await runCli(["copy", "-q", `oci:${FIX}/oci:base-a`, `oci:${layout}:example.com/base-a:1`])).code).toBe(0);
    const bundle = join(tmp, "podman.tar");
    const images = join(tmp, "podman.yaml");
    writeFileSync(images, `version: 1\nimages:\n  - source: oci:${layout}:example.com/base-a:1\n    as: example/base-a:1\n`);
    expect((await runCli(["export", "-q", "-f", images, "-o", bundle])).code).toBe(0);
    const served = await startServe([bundle]);
    await podman("pull", "-q", "--tls-verify=false", `${served.host}/example/base-a:1`);
    const listed = await podman("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}");
    expect(listed).toContain(`${store.host}/multi:latest ${MULTI}`);
    expect(listed).toContain(`${served.host}/example/base-a:1 sha256:ec3bbc6cac42279c72c4dab2711918c31ef1fb8917d7e95190983ad50a18776b`);
    store.child.kill("SIGTERM");
    served.child.kill("SIGTERM");
  });

  it("refuses contradictory options with one line", async () => {
    const r = await runCli(["serve", "--root", tmp, "bundle.tar"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/either --root DIR or a bundle/);
  });
});
