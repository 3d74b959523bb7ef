/**
 * --max-parallel and --rate-limit through the CLI against the real docker-registry: a proxy in front
 * of each registry records how many blob transfers are in flight at once (blob GETs; upload PATCH and
 * PUT requests), holding each back a little so that transfers which may overlap do overlap.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyImage, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";
import { generatedImage } from "../support/generated-image.js";

/** A proxy that counts blob transfers in flight. */
interface PeakProxy {
  host: string;
  /** The most blob transfers in flight at once since the last `reset`. */
  peak: number;
  /** Blob transfers seen since the last `reset`. */
  transfers: number;
  reset(): void;
  stop(): Promise<void>;
}

const isTransfer = (method: string, url: string) => (method === "GET" && /\/blobs\/sha256:/.test(url)) || ((method === "PATCH" || method === "PUT") && url.includes("/blobs/uploads/"));

async function startPeakProxy(target: string): Promise<PeakProxy> {
  const t = new URL(target);
  let inFlight = 0;
  const state = { peak: 0, transfers: 0 };
  const server = createServer((req, res) => {
    const method = req.method ?? "GET";
    const url = req.url ?? "/";
    const counted = isTransfer(method, url);
    if (counted) {
      inFlight++;
      state.transfers++;
      state.peak = Math.max(state.peak, inFlight);
      res.on("close", () => inFlight--);
    }
    const forward = () => {
      const up = httpRequest({ host: t.hostname, port: t.port, method, path: url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    };
    if (counted) setTimeout(forward, 60);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    get peak() {
      return state.peak;
    },
    get transfers() {
      return state.transfers;
    },
    reset() {
      state.peak = 0;
      state.transfers = 0;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const tmp = mkdtempSync(join(tmpdir(), "airlock-throttle-"));
const TAGS = ["1", "2", "3", "4"];
const LAYER = 1024 * 1024;
let src: RunningRegistry;
let dst: RunningRegistry;
let up: PeakProxy;
let down: PeakProxy;
let yaml: string;

beforeAll(async () => {
  [src, dst] = await Promise.all([startRegistry({ mode: "plain" }), startRegistry({ mode: "plain" })]);
  for (const tag of TAGS) await copyImage(await generatedImage(`throttle-${tag}`, LAYER), parseImageName(`docker://${src.host}/up/app:${tag}`), {});
  [up, down] = await Promise.all([startPeakProxy(src.url), startPeakProxy(dst.url)]);
  yaml = join(tmp, "images.yaml");
  writeFileSync(yaml, `version: 1\nregistries:\n  "${up.host}": { tlsVerify: false }\nimages:\n  - name: ${up.host}/up/app\n    tags: [${TAGS.map((t) => `"${t}"`).join(", ")}]\n`);
}, 60_000);

afterAll(async () => {
  await Promise.all([up?.stop(), down?.stop(), src?.stop(), dst?.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

describe("--max-parallel", () => {
  it("export: one blob download at a time from the registry, across all images (without it, several)", async () => {
    up.reset();
    const free = await runCli(["export", "-f", yaml, "-o", join(tmp, "free.tar"), "-q"]);
    expect(free.code, free.stderr).toBe(0);
    expect(up.peak).toBeGreaterThan(1); // the observation can see overlap

    up.reset();
    const one = await runCli(["export", "-f", yaml, "-o", join(tmp, "one.tar"), "-q", "--max-parallel", "1"]);
    expect(one.code, one.stderr).toBe(0);
    expect(up.transfers).toBe(TAGS.length * 2); // a layer and a config per image
    expect(up.peak).toBe(1);
    expect((await runCli(["verify", join(tmp, "one.tar")])).code).toBe(0);
  });

  it("import: one blob upload at a time to the registry, across all images", async () => {
    down.reset();
    const r = await runCli(["import", join(tmp, "one.tar"), "--to", `${down.host}/imported`, "--dest-tls-verify=false", "-q", "--max-parallel", "1"]);
    expect(r.code, r.stderr).toBe(0);
    expect(down.transfers).toBeGreaterThanOrEqual(TAGS.length * 2);
    expect(down.peak).toBe(1);
  });

  it("sync and copy: one transfer at a time at each registry, source and destination", async () => {
    up.reset();
    down.reset();
    const r = await runCli(["sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false", "--dest-tls-verify=false", "--parallel", "4", "--max-parallel", "1", "-q", `${up.host}/up/app`, `${down.host}/synced`]);
    expect(r.code, r.stderr).toBe(0);
    expect(up.transfers).toBe(TAGS.length * 2);
    expect(up.peak).toBe(1);
    expect(down.peak).toBe(1);

    up.reset();
    const c = await runCli(["copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--max-parallel", "1", "-q", `docker://${up.host}/up/app:1`, `docker://${down.host}/copied/app:1`]);
    expect(c.code, c.stderr).toBe(0);
    expect(up.transfers).toBe(2);
    expect(up.peak).toBe(1);
  });

  it("refuses a count below 1", async () => {
    const r = await runCli(["copy", "--max-parallel", "0", "dir:/nonexistent", "dir:/nonexistent2"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--max-parallel takes a whole number ≥ 1/);
  });
});

describe("--rate-limit", () => {
  it("import at 2M moves 4 MiB in no less than ~1.5 s, and the images arrive whole", async () => {
    const started = performance.now();
    const r = await runCli(["import", join(tmp, "one.tar"), "--to", `${dst.host}/limited`, "--dest-tls-verify=false", "-q", "--rate-limit", "2M"]);
    const elapsed = performance.now() - started;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/8 blob\(s\) pushed \(4\.0 MiB\)/);
    // A lower bound: the throttle held the bytes back (4 MiB at 2 MiB/s, less a 0.2 MiB burst, is ~1.9 s).
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    const pushed = /^pushed +(\S+) /m.exec(r.stdout)?.[1] as string;
    expect(pushed, r.stdout).toContain(`${dst.host}/limited/`);
    const check = await runCli(["copy", "--src-tls-verify=false", pushed, `oci:${join(tmp, "check")}:app`]);
    expect(check.code, check.stderr).toBe(0);
  });

  it("export at 2M takes no less than ~1.5 s for 4 MiB", async () => {
    const started = performance.now();
    const r = await runCli(["export", "-f", yaml, "-o", join(tmp, "limited.tar"), "-q", "--rate-limit", "2MB/s"]);
    expect(r.code, r.stderr).toBe(0);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1500);
  });

  it("copy that converts layers (--dest-compress) reads them under the limit too", async () => {
    const started = performance.now();
    const r = await runCli(["copy", "--src-tls-verify=false", "--dest-compress", "--rate-limit", "1M", "-q", `docker://${src.host}/up/app:2`, `oci:${join(tmp, "compressed")}:app`]);
    expect(r.code, r.stderr).toBe(0);
    // 1 MiB at 1 MiB/s, less a 0.1 MiB burst: ~0.9 s.
    expect(performance.now() - started).toBeGreaterThanOrEqual(700);
  });

  it("refuses a rate it cannot read", async () => {
    const r = await runCli(["export", "-f", yaml, "-o", join(tmp, "x.tar"), "--rate-limit", "fast"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--rate-limit: invalid rate "fast"/);
  });
});
