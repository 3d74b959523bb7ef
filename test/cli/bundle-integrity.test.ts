/**
 * A bundle altered after export, and a damaged bundle without its sidecar, through the CLI:
 *
 * - an entry appended to the tar with a path it already holds (index.json, a blob) — what every
 *   tar reader (skopeo, `tar -x`) then takes instead of the exported one: verify names it in one
 *   line and import refuses it before pushing anything to a real docker-registry;
 * - an entry appended after airlock/bundle.json that no volume description lists;
 * - a plain OCI archive written by skopeo (no airlock files): read without complaint, and a
 *   duplicate in it named too;
 * - verify's per-volume and per-image "ok" when no checksum is recorded (no sidecar): a truncated
 *   volume or an altered index.json is DAMAGED / BROKEN, not "ok".
 *
 * Entries are appended with Python's tarfile (append mode), an independent tar writer.
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { BundleReader, verifyBundle } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const EXAMPLE = join(import.meta.dirname, "../../manifests/examples/fixtures.yaml");
const FIX = join(import.meta.dirname, "../../fixtures");
const REF_NAME = "org.opencontainers.image.ref.name";
const sha = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const skopeo = async (...args: string[]) => (await promisify(execFile)("skopeo", args, { encoding: "utf8", maxBuffer: 64 << 20 })).stdout;

/** Appends one regular file `path` with the bytes of file `data` to the tar `archive` (Python tarfile, mode "a"). */
function appendEntry(archive: string, path: string, data: Buffer): void {
  const file = join(tmp, `data-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, data);
  const script = [
    "import sys, tarfile",
    "archive, path, file = sys.argv[1:4]",
    "with tarfile.open(archive, 'a', format=tarfile.USTAR_FORMAT) as t:",
    "    t.add(file, arcname=path)",
  ].join("\n");
  execFileSync("python3", ["-c", script, archive, path, file]);
}

/** The data of entry `path` of `archive` (GNU tar; the last copy when there are several). */
const tarRead = (archive: string, path: string) => execFileSync("tar", ["-xOf", archive, path]);

interface IndexJSON {
  manifests: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[];
}

const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-integrity-"));
let registry: RunningRegistry;
let bundle: string;
let index: IndexJSON;
const named = (name: string) => index.manifests.find((d) => d.annotations?.[REF_NAME] === name) as IndexJSON["manifests"][number];

/** A copy of the exported bundle as `name` (with its sidecar, renamed, unless `sidecar` is false). */
function copyBundle(name: string, sidecar = true): string {
  const copy = join(tmp, name);
  copyFileSync(bundle, copy);
  if (sidecar) writeFileSync(`${copy}.sha256`, readFileSync(`${bundle}.sha256`, "utf8").replace("b.tar", name));
  return copy;
}

/** What the registry holds: its catalog, and whether any blob reached its storage. */
async function registryContent(): Promise<{ repositories: string[]; blobs: boolean }> {
  const res = await fetch(`${registry.url}/v2/_catalog`);
  const { repositories } = (await res.json()) as { repositories: string[] };
  return { repositories, blobs: existsSync(join(registry.dataDir, "docker/registry/v2/blobs")) };
}

beforeAll(async () => {
  registry = await startRegistry({ mode: "plain" });
  bundle = join(tmp, "b.tar");
  const r = await runCli(["export", "-q", "-f", EXAMPLE, "-o", bundle]);
  if (r.code !== 0) throw new Error(`export failed: ${r.stderr}`);
  index = JSON.parse(tarRead(bundle, "index.json").toString("utf8"));
});

afterAll(async () => {
  await registry?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("entries appended to an exported bundle", () => {
  it("the exported bundle is intact: verify says ok for its volume and every image", async () => {
    const r = await runCli(["verify", bundle]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^volume 0 \S+: ok sha256:/m);
    expect(r.stdout).not.toMatch(/BROKEN|DAMAGED|error:/);
  });

  it("a second index.json (another image's manifest under fixtures/single:1.0): verify names it, import pushes nothing", async () => {
    const c = copyBundle("dup-index.tar");
    const altered = structuredClone(index);
    const other = named("fixtures/base-a:1.0");
    const target = altered.manifests.find((d) => d.annotations?.[REF_NAME] === "fixtures/single:1.0") as IndexJSON["manifests"][number];
    Object.assign(target, { digest: other.digest, size: other.size, mediaType: other.mediaType });
    appendEntry(c, "index.json", Buffer.from(JSON.stringify(altered)));
    // The alteration is real: skopeo (as any tar reader) takes the later index.json.
    expect(sha(await skopeo("inspect", "--raw", `oci-archive:${c}:fixtures/single:1.0`))).toBe(other.digest);

    const reader = await BundleReader.open(c);
    const dups = reader.problems.filter((p) => p.kind === "entry-duplicate");
    const first = reader.entries().find((e) => e.path === "index.json");
    const later = reader.entries().findLast((e) => e.path === "index.json");
    expect(() => reader.entry("index.json")).toThrow(/holds index\.json 2 times .*a tar reader would take the last one/);
    await reader.close();
    expect(dups).toHaveLength(1);
    expect(later?.headerOffset).toBeGreaterThan(first?.headerOffset ?? Number.MAX_SAFE_INTEGER);

    const v = await runCli(["verify", c]);
    expect(v.code).toBe(1);
    const lines = v.stdout.split("\n").filter((l) => /index\.json/.test(l));
    expect(lines).toEqual([`error: duplicate entry index.json at offset ${later?.headerOffset} (the first is at offset ${first?.headerOffset}): a tar reader would take the later one; the bundle was altered`]);
    expect(v.stdout).toMatch(/^BROKEN +fixtures\/single:1\.0 /m);
    expect(v.stdout).toMatch(/^volume 0 \S+: DAMAGED/m);

    const i = await runCli(["import", c, "--to", registry.host]);
    expect(i.code).toBe(1);
    expect(i.stderr).toMatch(/^airlock: bundle \S+ is not as it was exported: duplicate entry index\.json at offset \d+ .*the bundle was altered; nothing was imported/m);
    expect(await registryContent()).toEqual({ repositories: [], blobs: false });
  });

  it("a second copy of a layer with other bytes: verify names it, import pushes nothing", async () => {
    const c = copyBundle("dup-blob.tar");
    const manifest = JSON.parse(tarRead(bundle, `blobs/sha256/${named("fixtures/single:1.0").digest.slice(7)}`).toString("utf8"));
    const layer = manifest.layers[0] as { digest: string; size: number };
    const path = `blobs/sha256/${layer.digest.slice(7)}`;
    appendEntry(c, path, Buffer.alloc(layer.size, 0x41));
    expect(sha(tarRead(c, path))).not.toBe(layer.digest); // what a tar reader now extracts

    const v = await runCli(["verify", c]);
    expect(v.code).toBe(1);
    const lines = v.stdout.split("\n").filter((l) => l.includes(layer.digest.slice(7)));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^error: duplicate entry ${path} at offset \\d+ \\(the first is at offset \\d+\\): a tar reader would take the later one; the bundle was altered$`));
    expect(v.stdout).toMatch(/^BROKEN +fixtures\/single:1\.0 /m);
    expect(v.stdout).toMatch(/^ok +fixtures\/multi:1\.0 /m); // does not use that layer

    const i = await runCli(["import", c, "--to", registry.host]);
    expect(i.code).toBe(1);
    expect(i.stderr).toMatch(new RegExp(`^airlock: bundle \\S+ is not as it was exported: duplicate entry ${path} at offset \\d+ .*; nothing was imported`, "m"));
    expect(await registryContent()).toEqual({ repositories: [], blobs: false });
  });

  it("an entry after airlock/bundle.json that no volume description lists", async () => {
    const c = copyBundle("appended.tar");
    appendEntry(c, "airlock/tool/airlock-linux-x64", Buffer.from("#!/bin/sh\necho not airlock\n"));
    const reader = await BundleReader.open(c);
    const e = reader.entry("airlock/tool/airlock-linux-x64");
    await reader.close();
    const v = await runCli(["verify", c]);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain(
      `error: entry airlock/tool/airlock-linux-x64 at offset ${e?.headerOffset} is not listed by airlock/volume-000.json, and comes after the last entry it lists (airlock/bundle.json): it was added to the tar after the export; the bundle was altered\n`,
    );
    // No image reads the appended entry: import refuses the altered bundle all the same.
    const i = await runCli(["import", c, "--to", registry.host]);
    expect(i.code).toBe(1);
    expect(i.stderr).toMatch(new RegExp(`^airlock: bundle ${c} is not as it was exported: entry airlock/tool/airlock-linux-x64 .*nothing was imported`, "m"));
    expect(await registryContent()).toEqual({ repositories: [], blobs: false });
  });
});

describe("a plain OCI archive written by skopeo", () => {
  it("is read without a problem; a duplicate in it is named, as ambiguous", async () => {
    const plain = join(tmp, "plain.tar");
    await skopeo("copy", "-q", `oci:${join(FIX, "oci")}:single`, `oci-archive:${plain}:single:1`);
    const report = await verifyBundle(plain);
    expect(report.problems.filter((p) => p.severity === "error")).toEqual([]);
    expect(report.ok).toBe(true);

    appendEntry(plain, "oci-layout", Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    const again = await verifyBundle(plain);
    expect(again.problems.filter((p) => p.severity === "error").map((p) => [p.kind, p.path])).toEqual([["entry-duplicate", "oci-layout"]]);
    expect(again.problems[0]?.message).toMatch(/^duplicate entry oci-layout at offset \d+ \(the first is at offset \d+\): a tar reader would take the later one; the archive is ambiguous$/);
  });
});

describe("an OCI layout archived by GNU tar with two long symlink targets (././@LongLink 'K' headers)", () => {
  it("is no duplicate: verify reads it clean and import takes it", async () => {
    const dir = join(tmp, "gnu-layout");
    cpSync(join(FIX, "oci"), dir, { recursive: true });
    mkdirSync(join(dir, "extra"));
    symlinkSync("a".repeat(150), join(dir, "extra", "link1"));
    symlinkSync("b".repeat(150), join(dir, "extra", "link2"));
    const archive = join(tmp, "gnu.tar");
    execFileSync("tar", ["--format=gnu", "-cf", archive, "-C", dir, "."]);
    const report = await verifyBundle(archive);
    expect(report.problems.filter((p) => p.severity === "error")).toEqual([]);
    const i = await runCli(["import", "-q", archive, "--to", `oci:${join(tmp, "gnu-dest")}`]);
    expect(i.code, i.stderr).toBe(0);
  });
});

describe("verify without the sidecar (no checksum recorded for the volume)", () => {
  it("an intact bundle: its volume is ok", async () => {
    const c = copyBundle("nosidecar.tar", false);
    const report = await verifyBundle(c);
    expect(report.ok).toBe(true);
    expect(report.volumes[0]).toMatchObject({ ok: true, present: true });
    expect(report.volumes[0]?.expected).toBeUndefined();
  });

  it("a truncated volume is DAMAGED, not ok", async () => {
    const c = copyBundle("truncated.tar", false);
    truncateSync(c, readFileSync(c).length - 20_000);
    const v = await runCli(["verify", c]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/is truncated/);
    expect(v.stdout).toMatch(/^volume 0 \S+: DAMAGED sha256:/m);
    expect(v.stdout).not.toMatch(/^volume 0 \S+: ok/m);
  });

  it("an altered index.json: the volume is DAMAGED and the renamed image BROKEN", async () => {
    const c = copyBundle("renamed.tar", false);
    const reader = await BundleReader.open(c);
    const e = reader.entry("index.json");
    await reader.close();
    const buf = readFileSync(c);
    const data = buf.subarray(e?.dataOffset, (e?.dataOffset ?? 0) + (e?.size ?? 0));
    const at = data.indexOf("fixtures/single:1.0");
    expect(at).toBeGreaterThanOrEqual(0);
    data.write("fixtures/singlX:1.0", at);
    writeFileSync(c, buf);
    const v = await runCli(["verify", c]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/^BROKEN +fixtures\/singlX:1\.0 /m);
    expect(v.stdout).not.toMatch(/^ok +fixtures\/singlX/m);
    expect(v.stdout).toMatch(/^volume 0 \S+: DAMAGED/m);
  });
});
