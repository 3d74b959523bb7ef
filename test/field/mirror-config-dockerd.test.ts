/**
 * mirror-config for Docker: a real dockerd is started with airlock's generated daemon.json
 * fragment as its --config-file (dockerd refuses a file with an unknown or malformed directive),
 * and `docker info` shows the registry mirrors and insecure registries airlock wrote. Then dockerd
 * pulls an upstream docker.io name through the mirror from a docker-registry that `airlock import`
 * filled (no network: the pull can only have come from the mirror). Skipped when dockerd is not
 * installed.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { exportBundle, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const run = promisify(execFile);
const FIX = join(import.meta.dirname, "../../fixtures");
const haveDockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd", "/usr/local/bin/dockerd"].some(existsSync);

/** A dockerd of this test's own (data, exec root and socket in `dir`). */
interface Daemon {
  socket: string;
  log: () => string;
  stop(): Promise<void>;
}

/** Starts dockerd with `configFile`; rejects with its log when it exits or does not answer within 30 s. */
async function startDockerd(dir: string, configFile: string): Promise<Daemon> {
  const socket = join(dir, "docker.sock");
  let log = "";
  const child: ChildProcess = spawn(
    "dockerd",
    ["--config-file", configFile, "--data-root", join(dir, "root"), "--exec-root", join(dir, "exec"), "--pidfile", join(dir, "pid"), "-H", `unix://${socket}`, "--storage-driver", "vfs", "--iptables=false", "--ip6tables=false", "--bridge=none"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout?.on("data", (c) => (log += c));
  child.stderr?.on("data", (c) => (log += c));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
  };
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`dockerd exited (${child.exitCode}) with --config-file ${configFile}:\n${log}`);
    try {
      await run("docker", ["-H", `unix://${socket}`, "version", "--format", "{{.Server.Version}}"]);
      return { socket, log: () => log, stop };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await stop();
  throw new Error(`dockerd did not answer within 30 s:\n${log}`);
}

interface RegistryConfig {
  Mirrors: string[];
  IndexConfigs: Record<string, { Name: string; Mirrors: string[]; Secure: boolean }>;
}

const registryConfig = async (d: Daemon): Promise<RegistryConfig> => JSON.parse((await run("docker", ["-H", `unix://${d.socket}`, "info", "--format", "{{json .RegistryConfig}}"])).stdout);

// A short directory: dockerd's sockets must fit in a unix socket path.
const tmp = mkdtempSync("/tmp/airlock-mcd-");
let reg: RunningRegistry;
let bundle: string;
const daemons: Daemon[] = [];

beforeAll(async () => {
  if (!haveDockerd) return;
  reg = await startRegistry({ mode: "plain" });
  // A real image (tar layers, so dockerd can unpack it) under an upstream docker.io name.
  bundle = join(tmp, "bundle.tar");
  await exportBundle([{ source: parseImageName(`oci:${FIX}/oci:single`), name: "docker.io/library/airlock-mirror-test:1" }], bundle, { lock: { naming: "strip-registry" } });
}, 60_000);

afterAll(async () => {
  for (const d of daemons) await d.stop();
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!haveDockerd)("mirror-config: dockerd accepts the daemon.json fragment", () => {
  it("registry-mirrors and insecure-registries reach dockerd's registry config, and docker pulls a docker.io name through the mirror", async () => {
    const imp = await runCli(["import", bundle, "--to", reg.host, "--naming", "strip-registry", "--dest-tls-verify=false", "-q"]);
    expect(imp.code, imp.stderr).toBe(0);
    const out = join(tmp, "root-mirror");
    const r = await runCli(["mirror-config", "--registry", reg.host, "--for", "docker", "--from", bundle, "--naming", "strip-registry", "--plain-http", "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    const file = join(out, "docker/daemon.json");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ "registry-mirrors": [`http://${reg.host}`], "insecure-registries": [reg.host] });

    const d = await startDockerd(mkdtempSync(join(tmp, "d")), file);
    daemons.push(d);
    const cfg = await registryConfig(d);
    expect(cfg.Mirrors).toEqual([`http://${reg.host}/`]);
    expect(cfg.IndexConfigs[reg.host]).toMatchObject({ Name: reg.host, Secure: false });
    expect(cfg.IndexConfigs["docker.io"]?.Mirrors).toEqual([`http://${reg.host}/`]);

    // No network here: only the mirror can answer for docker.io.
    const pull = await run("docker", ["-H", `unix://${d.socket}`, "pull", "airlock-mirror-test:1"]).catch((err) => err as { stdout: string; stderr: string; code: number });
    expect((pull as { code?: number }).code ?? 0, `${pull.stdout}${pull.stderr}\n${d.log().slice(-3000)}`).toBe(0);
    const { stdout: id } = await run("docker", ["-H", `unix://${d.socket}`, "image", "inspect", "--format", "{{.Id}}", "airlock-mirror-test:1"]);
    expect(id.trim()).toMatch(/^sha256:[a-f0-9]{64}$/);
    await d.stop();
  });

  it("a namespace below the host: insecure-registries only (registry-mirrors cannot express a path), TLS verification off with --skip-verify", async () => {
    const out = join(tmp, "prefixed");
    const r = await runCli(["mirror-config", "--registry", "mirror.airgap.local:5000/mirror", "--for", "docker", "--from", bundle, "--skip-verify", "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    const file = join(out, "docker/daemon.json");
    const d = await startDockerd(mkdtempSync(join(tmp, "d")), file);
    daemons.push(d);
    const cfg = await registryConfig(d);
    expect(cfg.Mirrors).toEqual([]);
    expect(cfg.IndexConfigs["mirror.airgap.local:5000"]).toMatchObject({ Secure: false });
    expect(cfg.IndexConfigs["docker.io"]?.Mirrors).toEqual([]);
    await d.stop();
  });
});
