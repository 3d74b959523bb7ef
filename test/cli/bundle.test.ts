/**
 * The air-gap job end to end through the CLI, against the real CNCF distribution registry:
 * images.yaml → lock → export → verify → import, with skopeo checking the results, split volumes,
 * damaged bundles, YAML errors, --keep-going, and a 1 GiB layer.
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { copyImage, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { AIRLOCK_BIN, runBin, runCli } from "../support/cli.js";
import { generatedImage } from "../support/generated-image.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const DIGESTS = {
  single: "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952",
  multi: "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01",
  "base-a": "sha256:ec3bbc6cac42279c72c4dab2711918c31ef1fb8917d7e95190983ad50a18776b",
  "base-b": "sha256:25f5f9854655269565b0f3b51c958aaeca9561ed49726c1e5de4a871fcca8cef",
  docker: "sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625",
} as const;
const sha = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const skopeo = async (...args: string[]) => (await promisify(execFile)("skopeo", args, { encoding: "utf8", maxBuffer: 64 << 20 })).stdout;

const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-cli-"));
let src: RunningRegistry;
let dst: RunningRegistry;

beforeAll(async () => {
  [src, dst] = await Promise.all([startRegistry({ mode: "plain" }), startRegistry({ mode: "plain" })]);
  // Upstream: the fixtures under several tags, as a connected registry would have them.
  for (const [name, tags] of [
    ["single", ["1.0.0", "1.1.0", "1.2.0-rc1", "2.0.0", "latest"]],
    ["multi", ["1.0"]],
    ["base-a", ["1.0"]],
    ["base-b", ["1.0"]],
    ["docker", ["1.0"]],
  ] as const) {
    for (const tag of tags) await copyImage(parseImageName(`oci:${FIX}/oci:${name}`), parseImageName(`docker://${src.host}/up/${name}:${tag}`), { multiArch: "all" });
  }
}, 120_000);

afterAll(async () => {
  await Promise.all([src?.stop(), dst?.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

function imagesYaml(name: string, body: string): string {
  const file = join(tmp, name);
  writeFileSync(file, `version: 1\nregistries:\n  "${src.host}": { tlsVerify: false }\n${body}`);
  return file;
}

describe("images.yaml → lock → export → verify → import", () => {
  let yaml: string;
  let bundle: string;

  it("locks tag selections (semver range) to digests", async () => {
    yaml = imagesYaml(
      "images.yaml",
      `destination: { naming: strip-registry }
images:
  - name: ${src.host}/up/single
    tags: { semver: ">=1.0.0 <2", exclude: ["-rc"] }
  - name: ${src.host}/up/multi
    tags: ["1.0"]
  - name: ${src.host}/up/base-a
    tags: ["1.0"]
  - name: ${src.host}/up/base-b
    tags: ["1.0"]
  - name: ${src.host}/up/docker
    tags: ["1.0"]
`,
    );
    const r = await runCli(["lock", "-f", yaml]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n").sort()).toEqual(
      [
        `${src.host}/up/base-a:1.0 ${DIGESTS["base-a"]}`,
        `${src.host}/up/base-b:1.0 ${DIGESTS["base-b"]}`,
        `${src.host}/up/docker:1.0 ${DIGESTS.docker}`,
        `${src.host}/up/multi:1.0 ${DIGESTS.multi}`,
        `${src.host}/up/single:1.0.0 ${DIGESTS.single}`,
        `${src.host}/up/single:1.1.0 ${DIGESTS.single}`,
      ].sort(),
    );
    expect(readFileSync(join(tmp, "images.lock.yaml"), "utf8")).toContain(DIGESTS.multi);
  });

  it("plans: images, blobs, bytes and the free space", async () => {
    const r = await runCli(["plan", "-f", yaml, "-o", join(tmp, "planned.tar")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/6 image\(s\), \d+ manifest\(s\), \d+ blob\(s\)/);
    expect(r.stdout).toMatch(/free there/);
    expect(existsSync(join(tmp, "planned.tar"))).toBe(false);
  });

  it("exports one archive with --locked, writing a JSON report and NDJSON progress", async () => {
    bundle = join(tmp, "bundle.tar");
    const report = join(tmp, "report.json");
    const r = await runBin(["export", "-f", yaml, "--locked", "-o", bundle, "--json", "--report", report]);
    expect(r.code).toBe(0);
    const events = r.stderr.trim().split("\n").map((l) => JSON.parse(l));
    expect(events.some((e) => e.type === "bundle-plan")).toBe(true);
    expect(events.filter((e) => e.type === "image-done")).toHaveLength(6);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep.images).toHaveLength(6);
    expect(rep.duplicateBlobs).toBeGreaterThan(0); // base-a/base-b share a layer; single twice
    expect(readdirSync(tmp).filter((f) => f.startsWith("bundle.tar"))).toEqual(["bundle.tar", "bundle.tar.sha256"]);
  });

  it("reads each manifest from the registry once: the export reuses what locking read (--debug lists every request)", async () => {
    const r = await runBin(["--debug", "export", "-q", "-f", yaml, "-o", join(tmp, "once.tar")]);
    expect(r.code).toBe(0);
    const gets = r.stderr.split("\n").filter((l) => /^airlock: debug: GET \S+\/manifests\/\S+ → 200$/.test(l));
    expect(gets.length).toBeGreaterThanOrEqual(7); // six tags, and the children of the index
    expect(gets.some((l) => l.includes("/up/multi/manifests/sha256:"))).toBe(true);
    expect(new Set(gets).size).toBe(gets.length);
    // The top-level manifests were read by tag while locking, not again by their pinned digest.
    for (const d of [DIGESTS.single, DIGESTS.multi, DIGESTS.docker]) expect(gets.some((l) => l.includes(`/manifests/${d} `))).toBe(false);
    rmSync(join(tmp, "once.tar"), { force: true });
    rmSync(join(tmp, "once.tar.sha256"), { force: true });
  });

  it("skopeo reads every OCI image of the bundle without airlock", async () => {
    for (const [name, digest] of [
      [`${src.host}/up/single:1.1.0`, DIGESTS.single],
      [`${src.host}/up/multi:1.0`, DIGESTS.multi],
      [`${src.host}/up/base-b:1.0`, DIGESTS["base-b"]],
    ] as const) {
      expect(sha(await skopeo("inspect", "--raw", `oci-archive:${bundle}:${name}`))).toBe(digest);
    }
  });

  it("verifies offline; --report writes the same report as --json prints", async () => {
    const report = join(tmp, "verify-reports", "v.json");
    const r = await runCli(["verify", bundle, "--report", report]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/bundle OK: 6 image\(s\)/);
    const written = JSON.parse(readFileSync(report, "utf8"));
    const printed = JSON.parse((await runCli(["verify", bundle, "--json"])).stdout);
    expect({ ...written, durationMs: 0 }).toEqual({ ...printed, durationMs: 0 });
    expect(written).toMatchObject({ ok: true, images: expect.arrayContaining([expect.objectContaining({ ok: true })]) });
  });

  it("import --dry-run pushes nothing", async () => {
    const r = await runCli(["import", bundle, "--to", `${dst.host}/dry`, "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Dry run/);
    expect((await runCli(["list-tags", `docker://${dst.host}/dry/up/single`])).code).toBe(2);
  });

  it("imports into an empty registry with every digest equal to the source's (checked by skopeo), and again moves nothing", async () => {
    let r = await runCli(["import", bundle, "--to", `${dst.host}/mirror`]);
    expect(r.code).toBe(0);
    for (const [path, digest] of [
      ["up/single:1.0.0", DIGESTS.single],
      ["up/single:1.1.0", DIGESTS.single],
      ["up/multi:1.0", DIGESTS.multi],
      ["up/base-a:1.0", DIGESTS["base-a"]],
      ["up/base-b:1.0", DIGESTS["base-b"]],
      ["up/docker:1.0", DIGESTS.docker],
    ] as const) {
      expect(sha(await skopeo("inspect", "--raw", "--tls-verify=false", `docker://${dst.host}/mirror/${path}`))).toBe(digest);
    }
    r = await runCli(["import", bundle, "--to", `${dst.host}/mirror`]);
    expect(r.stdout).toMatch(/0 blob\(s\) pushed \(0 B\)/);
    expect(r.stdout).not.toMatch(/^pushed /m);
  });

  it("pushes each manifest once: an image's top-level manifest by its tag only, as skopeo does", async () => {
    const r = await runBin(["--debug", "import", "-q", bundle, "--to", `${dst.host}/once`]);
    expect(r.code).toBe(0);
    const puts = r.stderr.split("\n").filter((l) => /^airlock: debug: PUT \S+\/manifests\/\S+ → 201$/.test(l));
    expect(new Set(puts).size).toBe(puts.length);
    expect(puts).toContain(`airlock: debug: PUT http://${dst.host}/v2/once/up/multi/manifests/1.0 → 201`);
    expect(puts.some((l) => l.includes(`/manifests/${DIGESTS.multi}`))).toBe(false);
    expect(puts.some((l) => l.includes("/once/up/multi/manifests/sha256:"))).toBe(true); // its children, by digest
    expect(sha(await skopeo("inspect", "--raw", "--tls-verify=false", `docker://${dst.host}/once/up/multi:1.0`))).toBe(DIGESTS.multi);
  });

  it("imports into an OCI layout and a dir: tree", async () => {
    const layout = join(tmp, "imported-layout");
    expect((await runCli(["import", bundle, "--to", `oci:${layout}`, "-q"])).code).toBe(0);
    expect(sha(await skopeo("inspect", "--raw", `oci:${layout}:${src.host}/up/multi:1.0`))).toBe(DIGESTS.multi);
    const dirs = join(tmp, "imported-dirs");
    expect((await runCli(["import", bundle, "--to", `dir:${dirs}`, "-q"])).code).toBe(0);
    expect(readdirSync(dirs)).toHaveLength(6);
  });

  it("export --locked refuses when a tag moved since the lock, naming it", async () => {
    await copyImage(parseImageName(`oci:${FIX}/oci:base-b`), parseImageName(`docker://${src.host}/up/base-a:1.0`));
    try {
      const r = await runBin(["export", "-f", yaml, "--locked", "-o", join(tmp, "drift.tar")]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no longer matches/);
      expect(r.stderr).toMatch(/up\/base-a:1\.0/);
      expect(existsSync(join(tmp, "drift.tar"))).toBe(false);
    } finally {
      await copyImage(parseImageName(`oci:${FIX}/oci:base-a`), parseImageName(`docker://${src.host}/up/base-a:1.0`));
    }
  });
});

describe("split volumes and damaged bundles", () => {
  let yaml: string;
  const base = () => join(tmp, "split", "b.tar");

  beforeAll(async () => {
    const big = await generatedImage("split-layer", 300 * 1024);
    await copyImage(big, parseImageName(`docker://${src.host}/up/big:1`));
    yaml = imagesYaml(
      "split.yaml",
      `images:
  - name: ${src.host}/up/big
    tags: ["1"]
  - name: ${src.host}/up/single
    tags: ["latest"]
  - name: ${src.host}/up/multi
    tags: ["1.0"]
`,
    );
  });

  const exportSplit = async () => {
    rmSync(join(tmp, "split"), { recursive: true, force: true });
    const r = await runCli(["export", "-q", "-f", yaml, "-o", base(), "--split-size", "100K"]);
    expect(r.code).toBe(0);
    const volumes = readdirSync(join(tmp, "split")).filter((f) => /\.\d{3}$/.test(f)).sort();
    expect(volumes.length).toBeGreaterThanOrEqual(2);
    return volumes.map((v) => join(tmp, "split", v));
  };

  it("writes volumes whose concatenation is a valid tar, each verifiable, named in a sha256 sidecar", async () => {
    const volumes = await exportSplit();
    const whole = join(tmp, "split", "whole.tar");
    writeFileSync(whole, Buffer.concat(volumes.map((v) => readFileSync(v))));
    expect(sha(await skopeo("inspect", "--raw", `oci-archive:${whole}:${src.host}/up/multi:1.0`))).toBe(DIGESTS.multi);
    const sums = readFileSync(`${base()}.sha256`, "utf8");
    for (const v of volumes) expect(sums).toContain(sha(readFileSync(v)).slice(7));
    expect((await runCli(["verify", ...volumes])).code).toBe(0);
  });

  it("a missing volume is named by verify, and import pushes nothing", async () => {
    const volumes = await exportSplit();
    const gone = volumes[1] as string;
    unlinkSync(gone);
    const v = await runBin(["verify", base()]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/volume 1 .*MISSING/);
    const i = await runBin(["import", base(), "--to", `${dst.host}/split-missing`]);
    expect(i.code).toBe(1);
    // Nothing under the prefix: the catalog lists every repository that received a blob or a manifest.
    const catalog = (await (await fetch(`http://${dst.host}/v2/_catalog?n=1000`)).json()) as { repositories?: string[] };
    expect((catalog.repositories ?? []).filter((r) => r.startsWith("split-missing/"))).toEqual([]);
  });

  it("a corrupted volume and a flipped blob byte are named, and import pushes nothing wrong", async () => {
    const volumes = await exportSplit();
    const victim = volumes.at(-1) as string;
    const size = readFileSync(victim).length;
    const fd = openSync(victim, "r+");
    writeSync(fd, Buffer.from([0x42]), 0, 1, Math.floor(size / 3));
    const v = await runBin(["verify", base()]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/DAMAGED|checksum|digest/);
    expect(v.stdout).toMatch(new RegExp(`volume ${volumes.length - 1}`));
    const i = await runBin(["import", base(), "--to", `${dst.host}/split-damaged`]);
    expect(i.code).toBe(1);
    expect(i.stderr.trim().split("\n").at(-1)).toMatch(/^airlock: /);
  });
});

describe("failures", () => {
  it("malformed images.yaml: file, line and column, exit 1", async () => {
    const file = imagesYaml("bad.yaml", "images:\n  - name: Docker.io/UPPER\n    tags: [1]\n  - nmae: x\n");
    const r = await runBin(["export", "-f", file, "-o", join(tmp, "bad.tar")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml:5:\d+: /);
    expect(r.stderr).toMatch(/bad\.yaml:\d+:\d+: .*nmae/);
    expect(existsSync(join(tmp, "bad.tar"))).toBe(false);
  });

  it("--keep-going exports the images that exist, lists the missing one, exits non-zero", async () => {
    const file = imagesYaml("keep.yaml", `images:\n  - name: ${src.host}/up/single\n    tags: ["latest"]\n  - name: ${src.host}/up/nope\n    tags: ["1"]\n`);
    const out = join(tmp, "keep.tar");
    const without = await runBin(["export", "-q", "-f", file, "-o", out]);
    expect(without.code).not.toBe(0);
    expect(existsSync(out)).toBe(false);
    const r = await runBin(["export", "-q", "-f", file, "-o", out, "--keep-going"]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/FAILED .*up\/nope/);
    expect(r.stdout).toMatch(/Exported 1 image/);
    expect((await runCli(["verify", out])).code).toBe(0);
  });
});

describe("a 1 GiB layer", () => {
  it("goes through export and import with bounded memory and the same digest", async () => {
    const GiB = 1024 ** 3;
    const image = await generatedImage("one-gib", GiB);
    await copyImage(image, parseImageName(`docker://${src.host}/up/huge:1`));
    const file = imagesYaml("huge.yaml", `destination: { naming: strip-registry }\nimages:\n  - name: ${src.host}/up/huge\n    tags: ["1"]\n`);
    const out = join(tmp, "huge.tar");
    const rss = async (args: string[]) => {
      const child = spawn("/usr/bin/time", ["-f", "%M", process.execPath, AIRLOCK_BIN, ...args], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (c) => {
        stderr += c;
      });
      const code = await new Promise<number | null>((res) => child.on("close", res));
      expect(code, stderr).toBe(0);
      return Number(stderr.trim().split("\n").at(-1)) / 1024;
    };
    const exportRss = await rss(["export", "-q", "-f", file, "-o", out]);
    const importRss = await rss(["import", "-q", out, "--to", `${dst.host}/huge`]);
    const head = await runCli(["inspect", "--raw", `docker://${dst.host}/huge/up/huge:1`]);
    expect(sha(head.stdout)).toBe(image.manifest.digest);
    // Memory stays bounded (nothing holds the blob): far below the layer's size.
    process.stderr.write(`1 GiB layer: peak RSS export ${exportRss.toFixed(0)} MiB, import ${importRss.toFixed(0)} MiB\n`);
    expect(exportRss).toBeLessThan(300);
    expect(importRss).toBeLessThan(300);
    rmSync(out, { force: true });
  }, 300_000);
});
