/**
 * mirror-config for containerd: a real containerd of this test's own (root, state and socket in a
 * temp dir, the CRI plugin off) pulls upstream names with `ctr images pull --hosts-dir` pointed at
 * the certs.d directory airlock generated, from a docker-registry that `airlock import` filled.
 * There is no network here, so a pull can only succeed through the mirror hosts.toml names; the
 * pulled image's digest must be the one import wrote. Covers keep-path under a prefix (the
 * namespace as the host's API path with `override_path`) and strip-registry at the root.
 * Skipped when containerd or ctr is missing, or when not running as root (containerd needs root).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { exportBundle, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const run = promisify(execFile);
const FIX = join(import.meta.dirname, "../../fixtures");
const onPath = (bin: string) => ["/usr/bin", "/usr/local/bin", "/usr/sbin"].some((d) => existsSync(join(d, bin)));
const skipReason = !onPath("containerd") || !onPath("ctr") ? "containerd or ctr is not installed" : process.getuid?.() !== 0 ? "containerd needs root" : "";

/** A containerd of this test's own. */
interface Containerd {
  socket: string;
  log: () => string;
  stop(): Promise<void>;
}

/** Starts containerd with everything (sockets, root, state, opt) in `dir`; rejects with its log if it does not answer within 20 s. */
async function startContainerd(dir: string): Promise<Containerd> {
  const socket = join(dir, "c.sock");
  const config = join(dir, "config.toml");
  const q = (s: string) => JSON.stringify(s);
  writeFileSync(
    config,
    [
      "version = 2",
      `root = ${q(join(dir, "root"))}`,
      `state = ${q(join(dir, "state"))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = ${q(socket)}`,
      "[ttrpc]",
      `  address = ${q(`${socket}.ttrpc`)}`,
      "[debug]",
      '  address = ""',
      "[metrics]",
      '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(join(dir, "opt"))}`,
      "",
    ].join("\n"),
  );
  let log = "";
  const child: ChildProcess = spawn("containerd", ["--config", config, "--root", join(dir, "root"), "--state", join(dir, "state"), "--address", socket], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.on("data", (c) => (log += c));
  child.stderr?.on("data", (c) => (log += c));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
  };
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`containerd exited (${child.exitCode}):\n${log}`);
    try {
      await run("ctr", ["-a", socket, "version"]);
      return { socket, log: () => log, stop };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await stop();
  throw new Error(`containerd did not answer within 20 s:\n${log}`);
}

// A short directory: containerd's sockets must fit in a unix socket path.
const tmp = mkdtempSync("/tmp/airlock-mct-");
const IMAGES = [
  { name: "docker.io/library/airlock-ctd:1", tag: "single", digest: "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952" },
  { name: "registry.example.com:5000/team/api:2", tag: "base-b", digest: "sha256:25f5f9854655269565b0f3b51c958aaeca9561ed49726c1e5de4a871fcca8cef" },
  { name: "quay.io/org/app:1.0", tag: "base-a", digest: "sha256:ec3bbc6cac42279c72c4dab2711918c31ef1fb8917d7e95190983ad50a18776b" },
] as const;
let reg: RunningRegistry;
let ctd: Containerd;
let bundle: string;

beforeAll(async () => {
  if (skipReason) return;
  [reg, ctd] = await Promise.all([startRegistry({ mode: "plain" }), startContainerd(mkdtempSync(join(tmp, "c")))]);
  // Real images (tar layers, so containerd can unpack them) under upstream names.
  bundle = join(tmp, "bundle.tar");
  await exportBundle(
    IMAGES.map((i) => ({ source: parseImageName(`oci:${FIX}/oci:${i.tag}`), name: i.name })),
    bundle,
    { lock: { naming: "keep-path" } },
  );
}, 60_000);

afterAll(async () => {
  await ctd?.stop();
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** `ctr images pull` through the hosts directory; resolves to ctr's exit code and output, plus containerd's log on failure. */
async function pull(hostsDir: string, ref: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run("ctr", ["-a", ctd.socket, "images", "pull", "--hosts-dir", hostsDir, "--snapshotter", "native", ref]);
    return { code: 0, output: `${stdout}${stderr}` };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, output: `${e.stdout}${e.stderr}\n${ctd.log().slice(-3000)}` };
  }
}

/** The digest containerd recorded for `ref` (`ctr images ls`), and whether `ctr images check` finds all its content. */
async function pulled(ref: string): Promise<{ digest: string | undefined; complete: boolean }> {
  const { stdout } = await run("ctr", ["-a", ctd.socket, "images", "ls", `name==${ref}`]);
  const row = stdout.split("\n").find((l) => l.startsWith(`${ref} `));
  const { stdout: check } = await run("ctr", ["-a", ctd.socket, "images", "check", `name==${ref}`]);
  return { digest: row?.split(/\s+/)[2], complete: /\bcomplete \(\d+\/\d+\)/.test(check) };
}

describe.skipIf(skipReason !== "")(`mirror-config: containerd pulls through the generated hosts.toml${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  it("keep-path under a prefix: the namespace is the mirror host's API path (override_path), for docker.io and a registry with a port", async () => {
    const target = `${reg.host}/mirror`;
    const imp = await runCli(["import", bundle, "--to", target, "--dest-tls-verify=false", "-q"]);
    expect(imp.code, imp.stderr).toBe(0);
    const out = join(tmp, "keep");
    const r = await runCli(["mirror-config", "--registry", target, "--for", "containerd", "--from", bundle, "--plain-http", "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    const hostsDir = join(out, "containerd/certs.d");
    for (const { name, digest } of IMAGES.slice(0, 2)) {
      const p = await pull(hostsDir, name);
      expect(p.code, p.output).toBe(0);
      expect(await pulled(name)).toEqual({ digest, complete: true });
    }
  });

  it("strip-registry at the root: the bare mirror host; before import the same pull fails (only the mirror can answer)", async () => {
    const out = join(tmp, "strip");
    const r = await runCli(["mirror-config", "--registry", reg.host, "--for", "containerd", "--from", bundle, "--naming", "strip-registry", "--plain-http", "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    const hostsDir = join(out, "containerd/certs.d");
    const { name, digest } = IMAGES[2];
    expect((await pull(hostsDir, name)).code).not.toBe(0);

    const imp = await runCli(["import", bundle, "--to", reg.host, "--naming", "strip-registry", "--dest-tls-verify=false", "-q"]);
    expect(imp.code, imp.stderr).toBe(0);
    const p = await pull(hostsDir, name);
    expect(p.code, p.output).toBe(0);
    expect(await pulled(name)).toEqual({ digest, complete: true });
  });
});
