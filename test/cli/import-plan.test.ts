/**
 * `airlock import --dry-run` prints the real plan, and import's counts are exact: against a real
 * docker-registry, an oci: layout and dir: directories, with the bundle of the committed fixtures
 * (manifests/examples/fixtures.yaml: 7 images; blobs shared inside a repository — an index and a
 * platform subset of it —, across repositories — base-a and base-b —, and two images with one
 * digest). The expected numbers are derived from the bundle's own manifests: per store a blob is
 * uploaded once and every other reference to it is "shared"; "already present" is only what the
 * destination held before the run. A dry run writes nothing, carries the same plan in --report and
 * in its --json summary event, and does not hash blob contents (it says to run airlock verify).
 */
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { BundleReader, type Descriptor, digestOf } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const ROOT = join(import.meta.dirname, "../..");
const BLOB_LOCATIONS = "AIRLOCK_BLOB_LOCATIONS";
const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), "airlock-import-plan-"));
let reg: RunningRegistry;
let bundle: string;
/** The bundle's images: name, top-level digest, child manifests, distinct blobs. */
let images: { name: string; digest: string; children: string[]; blobs: Descriptor[] }[];

afterAll(async () => {
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

beforeAll(async () => {
  // Registry destinations mount blobs between repositories only with the blob-locations cache,
  // which the test configuration (vitest.config.ts) turns off: each repository gets its own upload.
  expect(process.env[BLOB_LOCATIONS]).toBe("off");
  bundle = join(tmp, "b.tar");
  const [exported, started] = await Promise.all([runCli(["export", "-q", "-f", join(ROOT, "manifests/examples/fixtures.yaml"), "-o", bundle]), startRegistry({ mode: "plain" })]);
  reg = started;
  expect(exported.code, exported.stderr).toBe(0);
  const reader = await BundleReader.open(bundle);
  try {
    images = [];
    for (const { name, descriptor } of await reader.images()) {
      const top = await reader.getManifest(descriptor);
      const children = top.isIndex ? await Promise.all(top.index.manifests.map((d) => reader.getManifest(d))) : [];
      const blobs = new Map<string, Descriptor>();
      for (const m of top.isIndex ? children : [top]) for (const b of m.blobs()) blobs.set(b.digest, b);
      images.push({ name: name as string, digest: top.digest, children: children.map((c) => c.digest), blobs: [...blobs.values()] });
    }
  } finally {
    await reader.close();
  }
  expect(images).toHaveLength(7);
}, 60_000);

/** A first import's totals when `scope(name)` names where an image's blobs and manifests are stored (one upload per scope). */
function firstImport(scope: (name: string) => string) {
  const uploads = new Set<string>();
  const children = new Set<string>();
  let refs = 0;
  let bytes = 0;
  for (const i of images) {
    for (const b of i.blobs) {
      refs++;
      const key = `${scope(i.name)} ${b.digest}`;
      if (!uploads.has(key)) bytes += b.size;
      uploads.add(key);
    }
    for (const c of i.children) children.add(`${scope(i.name)} ${c}`);
  }
  return { blobsPushed: uploads.size, bytesPushed: bytes, blobsShared: refs - uploads.size, blobsSkipped: 0, manifestsPushed: images.length + children.size, tagsWritten: images.length };
}

/** Every blob reference of every image. */
const references = () => images.reduce((n, i) => n + i.blobs.length, 0);
const complete = () => ({ blobsPushed: 0, bytesPushed: 0, blobsShared: 0, blobsSkipped: references(), manifestsPushed: 0, tagsWritten: 0 });
const repository = (name: string) => name.slice(0, name.lastIndexOf(":"));

let seq = 0;
/** Runs import with --report (and --json), returning the run, the report and the --json summary event. */
async function importRun(to: string, ...args: string[]) {
  const report = join(tmp, `report-${seq++}.json`);
  const r = await runCli(["import", "--json", bundle, "--to", to, "--report", report, ...args]);
  const rep = JSON.parse(readFileSync(report, "utf8"));
  const events = r.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
  const last = events.at(-1);
  expect(last?.type).toBe("summary");
  const { time: _t, type: _y, ...summary } = last;
  expect(summary).toEqual(rep);
  return { r, rep };
}

const totals = (rep: Record<string, unknown>) => ({
  blobsPushed: rep.blobsPushed,
  bytesPushed: rep.bytesPushed,
  blobsShared: rep.blobsShared,
  blobsSkipped: rep.blobsSkipped,
  manifestsPushed: rep.manifestsPushed,
  tagsWritten: rep.tagsWritten,
});

async function catalog(): Promise<string[]> {
  const res = await fetch(`${reg.url}/v2/_catalog`);
  return ((await res.json()) as { repositories: string[] }).repositories;
}

describe("import --dry-run and the import's counts, into a registry", () => {
  it("an empty registry: the dry run plans every image's push with exact numbers and writes nothing", async () => {
    const want = firstImport(repository);
    expect(want.blobsShared).toBeGreaterThan(0);
    const { r, rep } = await importRun(`${reg.host}/m`, "--dry-run");
    expect(r.code, r.stderr).toBe(0);
    expect(rep).toMatchObject({ ok: true, dryRun: true });
    expect(totals(rep)).toEqual(want);
    expect(rep.images.map((i: { action: string; status: string }) => [i.action, i.status])).toEqual(images.map(() => ["push", "planned"]));
    const lines = r.stdout.split("\n");
    expect(lines.filter((l) => l.startsWith(`would push  docker://${reg.host}/m/fixtures/`))).toHaveLength(7);
    expect(r.stdout).toContain(
      `Dry run: 7 image(s) (7 to push, 0 to retag, 0 present); ${want.blobsPushed} blob(s) to push (${(want.bytesPushed / 1024).toFixed(1)} KiB), ${want.blobsShared} shared by several images (pushed once), 0 already present; ${want.manifestsPushed} manifest(s) and 7 tag(s) to write; nothing was written`,
    );
    expect(r.stdout).toContain(`run airlock verify ${bundle} to check every byte`);
    expect(await catalog()).toEqual([]);
  });

  it("the import then does what the dry run said: a blob shared by several images is pushed once, not 'already present'", async () => {
    const want = firstImport(repository);
    const { r, rep } = await importRun(`${reg.host}/m`, "-q");
    expect(r.code, r.stderr).toBe(0);
    expect(totals(rep)).toEqual(want);
    expect(rep.images.map((i: { status: string }) => i.status)).toEqual(images.map(() => "pushed"));
    // Per image: its blobs are pushed, or shared with an earlier image's upload; none was there before.
    for (const i of rep.images) expect([i.blobsPushed + i.blobsShared, i.blobsPresent]).toEqual([i.blobs, 0]);
    expect(r.stdout).toContain(`7 image(s); ${want.blobsPushed} blob(s) pushed (${(want.bytesPushed / 1024).toFixed(1)} KiB), ${want.blobsShared} shared by several images (pushed once), 0 already present; ${want.manifestsPushed} manifest(s), 7 tag(s) written in`);
  });

  it("a full registry: the dry run and the import both find everything present", async () => {
    const dry = await importRun(`${reg.host}/m`, "--dry-run");
    expect(dry.r.code, dry.r.stderr).toBe(0);
    expect(totals(dry.rep)).toEqual(complete());
    expect(dry.rep.images.map((i: { action: string }) => i.action)).toEqual(images.map(() => "none"));
    expect(dry.r.stdout.split("\n").filter((l) => l.startsWith("present     docker://"))).toHaveLength(7);
    expect(dry.r.stdout).toContain(`Dry run: 7 image(s) (0 to push, 0 to retag, 7 present); 0 blob(s) to push (0 B), 0 shared by several images (pushed once), ${references()} already present; 0 manifest(s) and 0 tag(s) to write`);
    const real = await importRun(`${reg.host}/m`, "-q");
    expect(totals(real.rep)).toEqual(complete());
    expect(real.rep.images.map((i: { status: string }) => i.status)).toEqual(images.map(() => "present"));
  });

  it("a moved tag: the dry run plans a re-tag, the import re-tags and reports it so", async () => {
    const baseA = images.find((i) => i.name === "fixtures/base-a:1.0") as (typeof images)[number];
    // Point base-a's tag at base-b's image (skopeo pushes base-b's blobs into that repository).
    await run("skopeo", ["copy", "-q", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false", `docker://${reg.host}/m/fixtures/base-b:1.0`, `docker://${reg.host}/m/fixtures/base-a:1.0`]);
    const moved = { ...complete(), manifestsPushed: 1, tagsWritten: 1 };
    const dry = await importRun(`${reg.host}/m`, "--dry-run");
    expect(dry.r.code, dry.r.stderr).toBe(0);
    expect(totals(dry.rep)).toEqual(moved);
    expect(dry.rep.images.map((i: { name: string; action: string }) => [i.name, i.action]).filter(([, a]: string[]) => a !== "none")).toEqual([[baseA.name, "retag"]]);
    expect(dry.r.stdout).toContain(`would retag docker://${reg.host}/m/fixtures/base-a:1.0 ${baseA.digest}`);
    expect(dry.r.stdout).toContain("(0 to push, 1 to retag, 6 present)");
    const real = await importRun(`${reg.host}/m`, "-q");
    expect(totals(real.rep)).toEqual(moved);
    expect(real.rep.images.find((i: { name: string }) => i.name === baseA.name)).toMatchObject({ status: "retagged", action: "retag" });
    expect(real.r.stdout).toContain(`retagged docker://${reg.host}/m/fixtures/base-a:1.0 ${baseA.digest}`);
    const { stdout } = await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${reg.host}/m/fixtures/base-a:1.0`], { encoding: "buffer" });
    expect(digestOf(stdout)).toBe(baseA.digest);
  });
});

/** Every file under `dir` with its size and modification time. */
function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((e) => join(e.parentPath, e.name))
    .map((p) => `${p} ${statSync(p).size} ${statSync(p).mtimeMs}`)
    .sort();
}

describe("import --dry-run into oci: and dir:", () => {
  for (const [kind, scope] of [
    ["oci", () => "the layout"],
    ["dir", (name: string) => name],
  ] as const) {
    it(`${kind}: creates nothing, plans what the import then does, and finds a full destination complete`, async () => {
      const dest = join(tmp, `${kind}-dest`);
      const want = firstImport(scope);
      const dry = await importRun(`${kind}:${dest}`, "--dry-run");
      expect(dry.r.code, dry.r.stderr).toBe(0);
      expect(totals(dry.rep)).toEqual(want);
      expect(existsSync(dest)).toBe(false);
      const real = await importRun(`${kind}:${dest}`, "-q");
      expect(real.r.code, real.r.stderr).toBe(0);
      expect(totals(real.rep)).toEqual(want);
      const before = snapshot(dest);
      const again = await importRun(`${kind}:${dest}`, "--dry-run");
      expect(totals(again.rep)).toEqual(complete());
      expect(snapshot(dest)).toEqual(before);
    });
  }
});

/** A copy of the bundle with one byte flipped in the middle of `desc`'s data. */
async function flipped(desc: Pick<Descriptor, "digest" | "size">, file: string): Promise<string> {
  const out = join(tmp, file);
  copyFileSync(bundle, out);
  const reader = await BundleReader.open(out);
  const [seg] = reader.locateBlob(desc);
  await reader.close();
  if (!seg) throw new Error(`${desc.digest} is not in the bundle`);
  const bytes = readFileSync(seg.path);
  const at = seg.start + (seg.length >> 1);
  bytes[at] = (bytes[at] as number) ^ 0xff;
  writeFileSync(seg.path, bytes);
  return out;
}

describe("a damaged bundle", () => {
  it("a flipped blob byte: the dry run (sizes only, by design) plans as for the intact bundle and says to run verify; the import names the file and what to do", async () => {
    const baseB = images.find((i) => i.name === "fixtures/base-b:1.0") as (typeof images)[number];
    const baseA = images.find((i) => i.name === "fixtures/base-a:1.0") as (typeof images)[number];
    const victim = baseB.blobs.find((b) => !baseA.blobs.some((a) => a.digest === b.digest)) as Descriptor;
    const bad = await flipped(victim, "flipped-blob.tar");
    const dest = join(tmp, "damaged-dest");
    const intact = await runCli(["import", "-q", bundle, "--to", `oci:${dest}`, "--dry-run"]);
    const dry = await runCli(["import", "-q", bad, "--to", `oci:${dest}`, "--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout.replace(/\(\d+\.\d s\)/, "").replaceAll(bad, "B")).toBe(intact.stdout.replace(/\(\d+\.\d s\)/, "").replaceAll(bundle, "B"));
    expect(dry.stdout).toContain(`run airlock verify ${bad} to check every byte`);
    expect((await runCli(["verify", bad])).code).toBe(1);

    const r = await runCli(["import", "-q", bad, "--to", `oci:${dest}`]);
    expect(r.code).toBe(1);
    const error = r.stderr.trim().split("\n").at(-1) as string;
    expect(error).toMatch(
      new RegExp(
        `^airlock: blob ${victim.digest} of image fixtures/base-b:1\\.0 in bundle file ${bad.replace(/[.]/g, "\\.")} does not match its digest \\(content has digest sha256:[0-9a-f]{64}, expected ${victim.digest}\\): the bundle file is damaged; no manifest was written — copy ${bad.replace(/[.]/g, "\\.")} again from the source media, or run airlock verify ${bad.replace(/[.]/g, "\\.")}`,
      ),
    );
    // No image at the destination.
    expect(existsSync(join(dest, "index.json"))).toBe(false);
  });

  it("a flipped manifest byte: the dry run fails, naming the manifest, as the import's check does", async () => {
    const baseB = images.find((i) => i.name === "fixtures/base-b:1.0") as (typeof images)[number];
    const reader = await BundleReader.open(bundle);
    const desc = (await reader.images()).find((i) => i.name === baseB.name)?.descriptor as Descriptor;
    await reader.close();
    const bad = await flipped(desc, "flipped-manifest.tar");
    const r = await runCli(["import", "-q", bad, "--to", `${reg.host}/never`, "--dry-run"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`manifest ${baseB.digest} .*expected ${baseB.digest}.*nothing was imported`));
    expect(await catalog()).not.toContain("never/fixtures/base-b");
  });
});
