/**
 * `airlock export` when a source lacks a blob while several blobs are in flight: the run stops its
 * other downloads, and the user gets the one-line error (exit status 2, the image cannot be
 * exported) — never a stack trace from an 'error' event nobody listened to (an aborted file
 * stream made the process die with `Unhandled 'error' event … AbortError`). The partial bundle is
 * kept for a resume and does not look finished; once the blob is back, the same command resumes.
 * Run through the built binary: an unhandled 'error' event kills the process, which only a child
 * process shows. Sources: an OCI layout written here, and a real docker-registry that lost a blob.
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, promises as fs, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { type CliRun, runBin } from "../support/cli.js";
import { type LayoutBlob, putLayoutBlob, putLayoutImage, writeLayoutIndex } from "../support/oci-layout.js";

const LAYERS = 8;

let work: string;
let layout: string;
let images: string;
/** A complete image of the same layout sharing the three smallest layers with `app`. */
let good: { digest: string; layers: string[] };
/** The layer removed from the layout: the largest, so it is among the first blobs opened. */
let missing: { digest: string; path: string; bytes: Buffer };

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "airlock-export-failures-"));
  // An OCI image layout with one image of several layers (256 KiB and up: each takes a few reads),
  // and a second image sharing the three smallest.
  layout = join(work, "layout");
  const layers: (LayoutBlob & { bytes: Buffer })[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const bytes = randomBytes(256 * 1024 + i * 4096);
    layers.push({ ...(await putLayoutBlob(layout, bytes)), bytes });
  }
  const manifest = await putLayoutImage(layout, layers);
  const shared = layers.slice(0, 3);
  const goodManifest = await putLayoutImage(layout, shared, "arm64");
  good = { digest: goodManifest.digest, layers: [goodManifest.config, ...shared.map((l) => l.digest)] };
  await writeLayoutIndex(layout, { app: manifest, good: goodManifest });
  const largest = layers[LAYERS - 1] as (typeof layers)[number];
  missing = { digest: largest.digest, path: join(layout, "blobs", "sha256", largest.digest.slice("sha256:".length)), bytes: largest.bytes };
  await fs.rm(missing.path);
  images = join(work, "images.yaml");
  await fs.writeFile(images, `version: 1\nimages:\n  - source: oci:${layout}:app\n    as: team/app:1.0\n`);
});

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** Asserts the failure as the user must see it: exit 2, one `airlock:` line naming blob and image, no stack trace. */
function expectOneLineNotFound(r: CliRun, advice = "copy the image into it again"): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).not.toMatch(/Unhandled|node:events|AbortError|^\s+at /m);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  const errors = lines.filter((l) => l.startsWith("airlock: "));
  expect(errors, r.stderr).toHaveLength(1);
  expect(lines.at(-1)).toBe(errors[0]);
  const line = errors[0] as string;
  expect(line).toContain(`blob ${missing.digest}`);
  expect(line).toContain("team/app:1.0");
  expect(line).toContain(advice);
  expect(line).toContain(".partial");
}

describe("export with a layer missing from an oci: source, several blobs in flight", () => {
  for (const flags of [[], ["--concurrency", "8"], ["--keep-going"]]) {
    it(`fails with one line and exit 2, keeping the partial bundle (${flags.join(" ") || "default concurrency"})`, async () => {
      const out = join(work, `a${flags.join("")}.tar`);
      const r = await runBin(["export", "-f", images, "-o", out, "--quiet", ...flags]);
      expectOneLineNotFound(r);
      // Nothing looks finished: no bundle, no checksum file; the partial and its journal stay for a resume.
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.sha256`)).toBe(false);
      expect(existsSync(`${out}.partial`)).toBe(true);
      expect(existsSync(`${out}.journal.json`)).toBe(true);
    });
  }

  it("resumes the partial bundle once the blob is back", async () => {
    const out = join(work, "resume.tar");
    expectOneLineNotFound(await runBin(["export", "-f", images, "-o", out, "--quiet"]));
    await fs.writeFile(missing.path, missing.bytes);
    try {
      const r = await runBin(["export", "-f", images, "-o", out, "--quiet"]);
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(out)).toBe(true);
      expect(existsSync(`${out}.partial`)).toBe(false);
      const v = await runBin(["verify", out]);
      expect(v.code, v.stderr + v.stdout).toBe(0);
    } finally {
      await fs.rm(missing.path, { force: true });
    }
  });
});

describe("export from a docker:// source that lost a layer blob, several blobs in flight", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "plain" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("fails with one line and exit 2, keeping the partial bundle", async () => {
    // The complete image into the registry, then the registry loses the largest layer.
    await fs.writeFile(missing.path, missing.bytes);
    try {
      const pushed = await runBin(["copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:app`, `docker://${reg.host}/team/app:1.0`]);
      expect(pushed.code, pushed.stderr).toBe(0);
    } finally {
      await fs.rm(missing.path, { force: true });
    }
    // Deleted through the API (the registry's descriptor cache would still vouch for a file removed underneath it).
    const deleted = await fetch(`${reg.url}/v2/team/app/blobs/${missing.digest}`, { method: "DELETE" });
    expect(deleted.status).toBe(202);
    const yaml = join(work, "images-registry.yaml");
    await fs.writeFile(yaml, `version: 1\nregistries:\n  ${JSON.stringify(reg.host)}:\n    tlsVerify: false\nimages:\n  - source: docker://${reg.host}/team/app:1.0\n    as: team/app:1.0\n`);
    const out = join(work, "registry.tar");
    const r = await runBin(["export", "-f", yaml, "-o", out, "--quiet"]);
    expectOneLineNotFound(r, "push team/app:1.0 to the registry again");
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial`)).toBe(true);
  });
});

/**
 * --keep-going past a blob that cannot be read: the image using it fails alone. The other image,
 * which shares blobs with it, is written into a complete bundle (verify and skopeo read it) from
 * what was already downloaded — no blob is fetched twice — and nothing of the first attempt
 * stays behind.
 */
describe("export --keep-going when one image's blob is missing and another image is complete", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "plain" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  /** Checks the run and the bundle: `team/good:1.0` alone in it, `team/app:1.0` listed as failed. */
  async function expectGoodOnly(r: CliRun, out: string, report: string): Promise<void> {
    expect(r.code, r.stderr).toBe(2); // the one failure is an image that cannot be found
    expect(r.stderr).not.toMatch(/Unhandled|^\s+at /m);
    expect(r.stdout).toContain(`team/good:1.0 ${good.digest}`);
    expect(r.stdout).toMatch(new RegExp(`^FAILED team/app:1\\.0: .*blob ${missing.digest}`, "m"));
    expect(r.stdout).toContain("Exported 1 image(s)");
    const leftovers = (await fs.readdir(work)).filter((f) => f.startsWith(`${out.slice(work.length + 1)}.`));
    expect(leftovers.sort()).toEqual([`${out.slice(work.length + 1)}.sha256`]);
    const v = await runBin(["verify", out]);
    expect(v.code, v.stderr + v.stdout).toBe(0);
    const skopeo = await promisify(execFile)("skopeo", ["inspect", "--raw", `oci-archive:${out}:team/good:1.0`], { encoding: "utf8" });
    expect(`sha256:${createHash("sha256").update(skopeo.stdout).digest("hex")}`).toBe(good.digest);
    const rep = JSON.parse(await fs.readFile(report, "utf8"));
    expect(rep.ok).toBe(false);
    expect(rep.failures.map((f: { image: string }) => f.image)).toEqual(["team/app:1.0"]);
    expect(rep.images.map((i: { name: string }) => i.name)).toEqual(["team/good:1.0"]);
  }

  it("from an oci: layout: writes the complete image and lists the other", async () => {
    const yaml = join(work, "images-two.yaml");
    await fs.writeFile(yaml, `version: 1\nimages:\n  - source: oci:${layout}:app\n    as: team/app:1.0\n  - source: oci:${layout}:good\n    as: team/good:1.0\n`);
    const out = join(work, "two.tar");
    const report = join(work, "two-report.json");
    await expectGoodOnly(await runBin(["export", "-f", yaml, "-o", out, "--quiet", "--keep-going", "--report", report]), out, report);
  });

  it("no room for the others' bundle beside the first attempt: that attempt is put back, the error names both, and a rerun with room resumes it", async (ctx) => {
    const mnt = join(work, "small");
    await fs.mkdir(mnt, { recursive: true });
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=2600k", "tmpfs", mnt], { stdio: "ignore" });
    } catch {
      return ctx.skip("cannot mount a tmpfs here (needs root)");
    }
    try {
      const yaml = join(work, "images-two-small.yaml");
      await fs.writeFile(yaml, `version: 1\nimages:\n  - source: oci:${layout}:app\n    as: team/app:1.0\n  - source: oci:${layout}:good\n    as: team/good:1.0\n`);
      const out = join(mnt, "b.tar");
      // 2.1 MiB planned: the first attempt fits; the 0.8 MiB of the good image's bundle does not fit beside it.
      const r = await runBin(["export", "-q", "-f", yaml, "-o", out, "--keep-going"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^airlock: 1 image\\(s\\) could not be exported \\(team/app:1\\.0: .*blob ${missing.digest}.*\\); then writing the bundle of the others failed: not enough space for bundle ${out}`, "m"));
      expect((await fs.readdir(mnt)).sort()).toEqual(["b.tar.journal.json", "b.tar.partial"]);
      execFileSync("mount", ["-o", "remount,size=4m", mnt]);
      const again = await runBin(["export", "--json", "-f", yaml, "-o", out, "--keep-going"]);
      expect(again.code, again.stderr).toBe(2);
      expect(again.stderr).toContain('"resumed":true');
      expect((await fs.readdir(mnt)).sort()).toEqual(["b.tar", "b.tar.sha256"]);
      expect((await runBin(["verify", out])).code).toBe(0);
    } finally {
      execFileSync("umount", [mnt]);
    }
  });

  it("from a registry: each blob is downloaded once, the bundle's lock lists only the image written", async () => {
    await fs.writeFile(missing.path, missing.bytes);
    try {
      for (const name of ["app", "good"]) {
        const pushed = await runBin(["copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:${name}`, `docker://${reg.host}/team/${name}:1.0`]);
        expect(pushed.code, pushed.stderr).toBe(0);
      }
    } finally {
      await fs.rm(missing.path, { force: true });
    }
    expect((await fetch(`${reg.url}/v2/team/app/blobs/${missing.digest}`, { method: "DELETE" })).status).toBe(202);
    const yaml = join(work, "images-two-registry.yaml");
    await fs.writeFile(
      yaml,
      `version: 1\nregistries:\n  ${JSON.stringify(reg.host)}:\n    tlsVerify: false\nimages:\n  - source: docker://${reg.host}/team/app:1.0\n    as: team/app:1.0\n  - source: docker://${reg.host}/team/good:1.0\n    as: team/good:1.0\n`,
    );
    const out = join(work, "two-registry.tar");
    const report = join(work, "two-registry-report.json");
    const r = await runBin(["export", "-f", yaml, "-o", out, "--keep-going", "--report", report, "--debug"]);
    // --debug logs every request: no blob is fetched twice (the shared ones came from the first attempt's file).
    const gets = r.stderr.split("\n").filter((l) => /debug: GET .*\/blobs\/sha256:/.test(l) && l.endsWith("→ 200"));
    const digests = gets.map((l) => (/\/blobs\/(sha256:[0-9a-f]{64})/.exec(l) as RegExpExecArray)[1]);
    expect(digests.length).toBeGreaterThan(good.layers.length);
    expect(new Set(digests).size).toBe(digests.length);
    for (const d of good.layers) expect(digests).toContain(d);
    // The report and stdout as for any failure; --debug adds lines to stderr only.
    await expectGoodOnly({ ...r, stderr: "" }, out, report);
    const tarList = await promisify(execFile)("tar", ["-xOf", out, "airlock/bundle.json"], { encoding: "utf8", maxBuffer: 16 << 20 });
    const meta = JSON.parse(tarList.stdout);
    expect(meta.images.map((i: { name: string }) => i.name)).toEqual(["team/good:1.0"]);
    expect(meta.lock.images.map((i: { name: string }) => i.name)).toEqual(["team/good:1.0"]);
  });
});
