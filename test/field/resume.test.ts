/**
 * Resume: the real `airlock` binary runs an export and an import and is killed with SIGKILL once
 * some blobs are done (known from the --json progress events); the same command runs again (in
 * this process, which is faster to start). The results equal an
 * uninterrupted run, and a counting proxy in front of docker-registry shows that no blob finished
 * before the kill was fetched (export) or pushed (import) a second time.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyImage, parseImageName, RegistryClient } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { AIRLOCK_BIN, runCli } from "../support/cli.js";
import { generatedImage } from "../support/generated-image.js";
import { describeBundle } from "./bundle-compare.js";
import { type CountingProxy, startCountingProxy } from "./counting-proxy.js";

const tmp = mkdtempSync(join(tmpdir(), "airlock-resume-"));
const IMAGES = 6;
const LAYER = 2 * 1024 * 1024;
let src: RunningRegistry;
let dst: RunningRegistry;
let up: CountingProxy;
let down: CountingProxy;
let yaml: string;
const blobPathRe = /\/blobs\/(sha256:[a-f0-9]{64})/;

beforeAll(async () => {
  [src, dst] = await Promise.all([startRegistry({ mode: "plain" }), startRegistry({ mode: "plain" })]);
  for (let i = 0; i < IMAGES; i++) await copyImage(await generatedImage(`resume-${i}`, LAYER), parseImageName(`docker://${src.host}/up/img${i}:1`), {});
  // Blob downloads and upload completions are held back a little, so a kill lands mid-run.
  up = await startCountingProxy(src.url, (m, url) => (m === "GET" && blobPathRe.test(url) ? 150 : 0));
  down = await startCountingProxy(dst.url, (m, url) => (m === "PUT" && url.includes("digest=") ? 150 : 0));
  yaml = join(tmp, "images.yaml");
  writeFileSync(yaml, `version: 1\nregistries:\n  "${up.host}": { tlsVerify: false }\nimages:\n${Array.from({ length: IMAGES }, (_, i) => `  - name: ${up.host}/up/img${i}\n    tags: ["1"]\n`).join("")}`);
}, 60_000);

afterAll(async () => {
  await Promise.all([up?.stop(), down?.stop(), src?.stop(), dst?.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs the binary with --json and SIGKILLs it after `after` blob-done events; returns the digests done by then. */
function killAfter(args: string[], after: number): Promise<{ done: string[]; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AIRLOCK_BIN, ...args, "--json"], { stdio: ["ignore", "ignore", "pipe"] });
    const done: string[] = [];
    let buf = "";
    let killed = false;
    child.stderr.on("data", (c: Buffer) => {
      buf += c.toString();
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
        let e: { type?: string; digest?: string };
        try {
          e = JSON.parse(line);
        } catch {
          continue;
        }
        if (e.type === "blob-done" && e.digest) done.push(e.digest);
        if (done.length >= after && !killed) {
          killed = child.kill("SIGKILL");
        }
      }
    });
    child.on("error", reject);
    child.on("close", () => resolve({ done: [...done], killed }));
  });
}

const count = (reqs: string[], method: string, digest: string, extra?: (r: string) => boolean) => reqs.map(decodeURIComponent).filter((r) => r.startsWith(`${method} `) && r.includes(digest) && (!extra || extra(r))).length;

describe("resume after SIGKILL", () => {
  it("export: rerun finishes the same bundle, fetching no finished blob twice", async () => {
    const ref = join(tmp, "ref", "bundle.tar");
    mkdirSync(join(tmp, "ref"));
    mkdirSync(join(tmp, "resumed"));
    const a = await runCli(["export", "-f", yaml, "-o", ref, "-q"]);
    expect(a.stderr).toBe("");
    const out = join(tmp, "resumed", "bundle.tar");
    const before = up.requests.length;
    const first = await killAfter(["export", "-f", yaml, "-o", out, "--concurrency", "1"], 3);
    expect(first.killed).toBe(true);
    expect(existsSync(out)).toBe(false); // nothing half-done looks done
    expect(existsSync(`${out}.partial`)).toBe(true);
    expect(existsSync(`${out}.journal.json`)).toBe(true);
    const second = await runCli(["export", "-f", yaml, "-o", out, "--concurrency", "1"]);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/blob\(s\) resumed from an earlier run/);
    expect(existsSync(`${out}.journal.json`)).toBe(false);
    const reqs = up.requests.slice(before);
    for (const d of first.done) expect(count(reqs, "GET", d), `GETs of ${d}`).toBe(1);
    expect((await runCli(["verify", out])).code).toBe(0);
    expect(await describeBundle(out)).toEqual(await describeBundle(ref));
  });

  it("import: rerun pushes only what is missing; every digest right", async () => {
    const bundle = join(tmp, "ref", "bundle.tar");
    const to = `${down.host}/mirror`;
    const before = down.requests.length;
    const first = await killAfter(["import", bundle, "--to", to, "--dest-tls-verify=false", "--concurrency", "1"], 3);
    expect(first.killed).toBe(true);
    const second = await runCli(["import", bundle, "--to", to, "--dest-tls-verify=false", "--concurrency", "1", "-q"]);
    expect(second.code).toBe(0);
    const reqs = down.requests.slice(before);
    for (const d of first.done) expect(count(reqs, "PUT", d, (r) => r.includes("digest=")), `PUTs of ${d}`).toBe(1);
    const c = new RegistryClient(src.host, { tlsVerify: false });
    const d = new RegistryClient(dst.host, { tlsVerify: false });
    try {
      for (let i = 0; i < IMAGES; i++) {
        const want = (await c.repository(`up/img${i}`).headManifest("1"))?.digest;
        expect(want).toBeDefined();
        expect((await d.repository(`mirror/${up.host.replace(":", "_")}/up/img${i}`).headManifest("1"))?.digest).toBe(want);
      }
    } finally {
      await c.close();
      await d.close();
    }
  });
});
