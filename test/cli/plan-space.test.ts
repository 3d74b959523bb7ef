/**
 * `airlock plan` states and checks the disk space of the whole job: the export (bundle or each
 * volume, journal, checksum file), and the import — which needs no temporary space (checked here
 * by importing with TMPDIR on a 64 KiB file system), while an oci:/dir: destination takes the
 * images themselves (checked with --to). "Not enough" is shown on a small tmpfs.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyImage, parseImageName, type SpaceCheck } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";
import { generatedImage } from "../support/generated-image.js";

const tmp = mkdtempSync(join(tmpdir(), "airlock-plan-space-"));
const LAYER = 1024 * 1024;
let reg: RunningRegistry;
let yaml: string;
/** Small tmpfs mounts made by this test (mounting needs root; the tests that need one skip without it). */
const mounts: string[] = [];

/** Mounts a tmpfs of `size` bytes at a new directory; undefined when this machine does not allow it. */
function smallFileSystem(name: string, size: number): string | undefined {
  const dir = join(tmp, name);
  mkdirSync(dir);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  mounts.push(dir);
  return dir;
}

interface PlanReport {
  size: number;
  blobs: number;
  duplicateBytes: number;
  volumes: { path: string; size: number }[];
  space: SpaceCheck[];
  import: { temporaryBytes: number; reason: string };
}

async function plan(args: string[]): Promise<{ code: number; stdout: string; stderr: string; report: PlanReport }> {
  const report = join(tmp, `report-${Math.random().toString(36).slice(2)}.json`);
  const r = await runCli(["plan", "-f", yaml, "--report", report, ...args]);
  return { ...r, report: JSON.parse(readFileSync(report, "utf8")) as PlanReport };
}

beforeAll(async () => {
  reg = await startRegistry({ mode: "plain" });
  // Two images, and a second tag of the first: its blobs are referenced twice (a dir: import stores them twice).
  for (const [i, tags] of [["a", ["1", "2"]], ["b", ["1"]]] as const) {
    const img = await generatedImage(`plan-space-${i}`, LAYER);
    for (const tag of tags) await copyImage(img, parseImageName(`docker://${reg.host}/up/${i}:${tag}`), {});
  }
  yaml = join(tmp, "images.yaml");
  writeFileSync(yaml, `version: 1\nregistries:\n  "${reg.host}": { tlsVerify: false }\nimages:\n  - name: ${reg.host}/up/a\n    tags: ["1", "2"]\n  - name: ${reg.host}/up/b\n    tags: ["1"]\n`);
}, 60_000);

afterAll(async () => {
  for (const m of mounts) execFileSync("umount", [m]);
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("airlock plan: space", () => {
  it("states the export's needs — bundle, journal, checksum file — on the bundle's file system, and that import needs no temporary space", async () => {
    const out = join(tmp, "out", "bundle.tar");
    const r = await plan(["-o", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.report.space).toHaveLength(1);
    const [check] = r.report.space as [SpaceCheck];
    expect(check.directory).toBe(tmp); // out/ does not exist yet: its nearest existing parent
    expect(check.needs.map((n) => n.what)).toEqual(["bundle", "export journal", "checksum file"]);
    expect(check.needs[0]?.bytes).toBe(r.report.size);
    expect(check.bytes).toBe(check.needs.reduce((n, x) => n + x.bytes, 0));
    expect(check.bytes).toBeGreaterThan(r.report.size);
    expect(check.ok).toBe(true);
    expect(check.free).toBeGreaterThan(0);
    expect(r.report.import.temporaryBytes).toBe(0);
    expect(r.stdout).toMatch(/space: bundle 2\.0 MiB, export journal [\d.]+ KiB, checksum file \d+ B in .*: 2\.0 MiB needed, [\d.]+ \w+ free\n/);
    expect(r.stdout).toMatch(/space: import needs no temporary space: blobs stream out of the bundle/);
  });

  it("with --split-size, counts every volume", async () => {
    const r = await plan(["-o", join(tmp, "split.tar"), "--split-size", "700K"]);
    expect(r.code, r.stderr).toBe(0);
    const needs = r.report.space.flatMap((c) => c.needs);
    const volumes = needs.filter((n) => n.what.startsWith("volume "));
    expect(volumes.length).toBe(r.report.volumes.length);
    expect(volumes.length).toBeGreaterThan(2);
    expect(volumes.map((v) => v.path)).toEqual(r.report.volumes.map((v) => v.path));
    expect(volumes.reduce((n, v) => n + v.bytes, 0)).toBe(r.report.size);
  });

  it("fails when the bundle's file system is too small, naming what does not fit", async (ctx) => {
    const small = smallFileSystem("small-out", 1024 * 1024);
    if (!small) return ctx.skip("cannot mount a tmpfs here (needs root)");
    const r = await plan(["-o", join(small, "bundle.tar")]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not enough space in .*small-out for bundle, export journal, checksum file: 2\.0 MiB needed, 1\.0 MiB free/);
    expect(r.stdout).toMatch(/NOT ENOUGH/);
    expect(r.report.space[0]?.ok).toBe(false);
  });

  it("with --to oci:DIR or dir:DIR, checks the space the imported images take there (dir: stores shared blobs once per image)", async (ctx) => {
    const small = smallFileSystem("small-dest", 1024 * 1024);
    const out = join(tmp, "bundle.tar");
    const oci = await plan(["-o", out, "--to", `oci:${join(tmp, "layout")}`]);
    expect(oci.code, oci.stderr).toBe(0);
    const ociNeed = oci.report.space.flatMap((c) => c.needs).find((n) => n.what.startsWith("import into oci:"));
    expect(ociNeed?.bytes).toBe(oci.report.size);
    const dir = await plan(["-o", out, "--to", `dir:${join(tmp, "dirs")}`]);
    const dirNeed = dir.report.space.flatMap((c) => c.needs).find((n) => n.what.startsWith("import into dir:"));
    expect(dir.report.duplicateBytes).toBeGreaterThan(LAYER);
    expect(dirNeed?.bytes).toBe(dir.report.size + dir.report.duplicateBytes);
    if (!small) return ctx.skip("cannot mount a tmpfs here (needs root)");
    const tooSmall = await plan(["-o", out, "--to", `oci:${join(small, "layout")}`]);
    expect(tooSmall.code).not.toBe(0);
    expect(tooSmall.stderr).toMatch(/not enough space in .*small-dest for import into oci:/);
  });

  it("import really needs no temporary space: it succeeds with TMPDIR on a 64 KiB file system, leaving it empty", async (ctx) => {
    const bundle = join(tmp, "real.tar");
    const e = await runCli(["export", "-f", yaml, "-o", bundle, "-q"]);
    expect(e.code, e.stderr).toBe(0);
    const small = smallFileSystem("small-tmp", 64 * 1024);
    if (!small) return ctx.skip("cannot mount a tmpfs here (needs root)");
    // os.tmpdir() reads TMPDIR on every call; the import journal goes to the state directory.
    const env: Record<string, string> = { TMPDIR: small, XDG_STATE_HOME: join(tmp, "state") };
    const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
    Object.assign(process.env, env);
    try {
      for (const to of [`${reg.host}/imported`, `oci:${join(tmp, "imported-layout")}`, `dir:${join(tmp, "imported-dirs")}`]) {
        const r = await runCli(["import", bundle, "--to", to, "--dest-tls-verify=false", "-q"]);
        expect(r.code, `${to}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toMatch(/3 image\(s\)/);
      }
    } finally {
      for (const [k, v] of saved) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    expect(readdirSync(small)).toEqual([]);
  });
});
