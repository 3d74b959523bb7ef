/**
 * How lock, plan and export end when something fails, through the CLI: `export --locked
 * --keep-going` with an image its source lost, exit codes of --keep-going (2 only when every
 * failure is a missing image), the summary and --report of a failed run, the note on an index
 * rewritten for a platform list, and --retry-times/--retry-delay reaching every registry request.
 * Sources are copies of the committed OCI layouts, and a real docker-registry behind a fault proxy.
 */
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { copyImage, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultProxy, type ProxiedRequest, startFaultProxy } from "../harness/proxy.js";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runBin, runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const EXAMPLE = join(import.meta.dirname, "../../manifests/examples/fixtures.yaml");
const MULTI = "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01";
const sha = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const skopeo = async (...args: string[]) => (await promisify(execFile)("skopeo", args, { encoding: "utf8", maxBuffer: 64 << 20 })).stdout;

const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-failures-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A fresh copy of the committed OCI layout, and an images.yaml beside it. */
function workspace(name: string, images: string): { dir: string; yaml: string; layout: string } {
  const dir = join(tmp, name);
  const layout = join(dir, "layout");
  cpSync(join(FIX, "oci"), layout, { recursive: true });
  const yaml = join(dir, "images.yaml");
  writeFileSync(yaml, `version: 1\nimages:\n${images}`);
  return { dir, yaml, layout };
}

/** Removes the image named `name` from the layout's index.json (its blobs stay). */
function dropFromLayout(layout: string, name: string): void {
  const file = join(layout, "index.json");
  const index = JSON.parse(readFileSync(file, "utf8"));
  index.manifests = index.manifests.filter((d: { annotations?: Record<string, string> }) => d.annotations?.["org.opencontainers.image.ref.name"] !== name);
  writeFileSync(file, JSON.stringify(index));
}

/** The last line of stderr (the error line) and the line before it. */
const lastTwo = (stderr: string) => stderr.trim().split("\n").slice(-2);

describe("export --locked --keep-going", () => {
  it("exports what is still there and lists an image its source lost with its real reason (exit 2: not found)", async () => {
    const w = workspace("locked", "  - source: oci:layout:base-a\n    as: t/base-a:1\n  - source: oci:layout:base-b\n    as: t/base-b:1\n");
    expect((await runCli(["lock", "-f", w.yaml])).code).toBe(0);
    dropFromLayout(w.layout, "base-a");
    const out = join(w.dir, "b.tar");
    const report = join(w.dir, "report.json");
    const r = await runBin(["export", "-q", "-f", w.yaml, "--locked", "--keep-going", "-o", out, "--report", report]);
    expect(r.code).toBe(2);
    // Named by its images.yaml entry (FILE:LINE:COL), then the source's own reason.
    expect(r.stdout).toMatch(/^FAILED t\/base-a:1: .*images\.yaml:3:5: no image named "base-a"/m);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/no longer selected/);
    expect(r.stdout).toMatch(/^Exported 1 image\(s\)/m);
    expect(sha(await skopeo("inspect", "--raw", `oci-archive:${out}:t/base-b:1`))).toBe("sha256:25f5f9854655269565b0f3b51c958aaeca9561ed49726c1e5de4a871fcca8cef");
    expect((await runCli(["verify", out])).code).toBe(0);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep.ok).toBe(false);
    expect(rep.images.map((i: { name: string }) => i.name)).toEqual(["t/base-b:1"]);
    expect(rep.failures).toEqual([{ image: "t/base-a:1", code: "ERR_IMAGE_NOT_FOUND", error: expect.stringMatching(/no image named "base-a"/) }]);
  });

  it("still refuses an image that images.yaml no longer selects", async () => {
    const w = workspace("deselected", "  - source: oci:layout:base-a\n    as: t/base-a:1\n  - source: oci:layout:base-b\n    as: t/base-b:1\n");
    expect((await runCli(["lock", "-f", w.yaml])).code).toBe(0);
    writeFileSync(w.yaml, "version: 1\nimages:\n  - source: oci:layout:base-b\n    as: t/base-b:1\n");
    const r = await runBin(["export", "-q", "-f", w.yaml, "--locked", "--keep-going", "-o", join(w.dir, "b.tar")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/t\/base-a:1: in the lock but no longer selected by images\.yaml/);
    expect(existsSync(join(w.dir, "b.tar"))).toBe(false);
  });
});

describe("exit status of export --keep-going", () => {
  it("is 1 when a failure is not a missing image, 2 when every failure is one", async () => {
    const w = workspace(
      "codes",
      "  - source: oci:layout:single\n    as: t/single:1\n  - source: oci:layout:gone\n    as: t/gone:1\n  - source: oci:layout:multi\n    as: t/multi:s390x\n    platforms: [linux/s390x]\n",
    );
    const mixed = await runBin(["export", "-q", "-f", w.yaml, "--keep-going", "-o", join(w.dir, "mixed.tar")]);
    expect(mixed.code).toBe(1);
    expect(mixed.stdout).toMatch(/^FAILED t\/gone:1: /m);
    expect(mixed.stdout).toMatch(/^FAILED t\/multi:s390x: .*linux\/s390x/m);
    expect(mixed.stdout).toMatch(/^Exported 1 image\(s\)/m);

    writeFileSync(w.yaml, "version: 1\nimages:\n  - source: oci:layout:single\n    as: t/single:1\n  - source: oci:layout:gone\n    as: t/gone:1\n");
    const missing = await runBin(["export", "-q", "-f", w.yaml, "--keep-going", "-o", join(w.dir, "missing.tar")]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toMatch(/^FAILED t\/gone:1: /m);
  });
});

describe("a failed run still ends with a summary and its --report", () => {
  it("export: a corrupt blob stops it; stderr says how far it got before the error line, the report has ok: false", async () => {
    const w = workspace("corrupt", "  - source: oci:layout:single\n    as: t/single:1\n  - source: oci:layout:base-b\n    as: t/base-b:1\n");
    // A layer only base-b has, overwritten with bytes of the same size.
    const manifest = async (name: string) => (await (await parseImageName(`oci:${w.layout}:${name}`).newSource({})).getManifest()).image;
    const [a, b] = await Promise.all([manifest("base-a"), manifest("single")]);
    const baseB = await manifest("base-b");
    const shared = new Set([...a.layers, ...b.layers].map((l) => l.digest));
    const victim = baseB.layers.find((l) => !shared.has(l.digest))?.digest ?? "";
    expect(victim).not.toBe("");
    const file = join(w.layout, "blobs", "sha256", victim.slice(7));
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(file, bytes);

    const report = join(w.dir, "report.json");
    const r = await runBin(["export", "-q", "-f", w.yaml, "-o", join(w.dir, "b.tar"), "--concurrency", "1", "--report", report]);
    expect(r.code).toBe(1);
    const [summary, error] = lastTwo(r.stderr);
    expect(summary).toMatch(/^Export failed after \d+\.\d s: \d of 2 image\(s\) done, \d+ of \d+ blob\(s\) written \(.+ of .+\)/);
    expect(error).toMatch(/^airlock: .*sha256:/);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep.ok).toBe(false);
    expect(rep.code).toBe("ERR_DIGEST_MISMATCH");
    expect(error).toContain(rep.error);
    expect(rep.planned).toMatchObject({ images: 2 });
    expect(rep.failures).toEqual([]);
    expect(rep.blobsWritten).toBeLessThan(rep.planned.blobs);
    // The images done so far, if any: never the one with the corrupt layer.
    for (const i of rep.images) expect(i.name).toBe("t/single:1");
    expect(existsSync(join(w.dir, "b.tar"))).toBe(false);
  });

  it("export: an images.yaml that fails to resolve still writes the report", async () => {
    const w = workspace("unresolved", "  - source: oci:layout:gone\n    as: t/gone:1\n");
    const report = join(w.dir, "report.json");
    const r = await runBin(["export", "-q", "-f", w.yaml, "-o", join(w.dir, "b.tar"), "--report", report]);
    expect(r.code).toBe(2);
    // Nothing moved: only the error line says what failed.
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^airlock: .*gone/)]);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep).toMatchObject({ ok: false, code: "ERR_IMAGE_NOT_FOUND", images: [], blobsWritten: 0 });
  });

  it("plan: a missing lock with --locked", async () => {
    const w = workspace("plan", "  - source: oci:layout:single\n    as: t/single:1\n");
    const report = join(w.dir, "report.json");
    const r = await runBin(["plan", "-f", w.yaml, "--locked", "-o", join(w.dir, "b.tar"), "--report", report]);
    expect(r.code).toBe(1);
    const [summary, error] = lastTwo(r.stderr);
    expect(summary).toMatch(/^Plan failed after .* while checking 1 image\(s\) against the lock: nothing is planned$/);
    expect(error).toMatch(/^airlock: cannot read lock file .*images\.lock\.yaml/);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep).toMatchObject({ ok: false, code: "ERR_IO", imagesResolved: 1 });
    // The same plan without --locked succeeds, and says so in its report.
    expect((await runBin(["plan", "-f", w.yaml, "-o", join(w.dir, "b.tar"), "--report", report])).code).toBe(0);
    expect(JSON.parse(readFileSync(report, "utf8"))).toMatchObject({ ok: true, images: [{ name: "t/single:1" }] });
  });
});

describe("a lock written elsewhere (lock -o) and a report in a new directory", () => {
  it("export --lock FILE exports exactly that lock (--locked implied) and detects drift from it; --report makes its directory", async () => {
    const w = workspace("lockfile", "  - source: oci:layout:single\n    as: t/single:1\n");
    const lockFile = join(w.dir, "elsewhere", "pinned.lock.yaml");
    mkdirSync(dirname(lockFile), { recursive: true });
    expect((await runBin(["lock", "-f", w.yaml, "-o", lockFile])).code).toBe(0);
    const report = join(w.dir, "reports", "new", "export.json");
    const r = await runBin(["export", "-q", "-f", w.yaml, "--lock", lockFile, "-o", join(w.dir, "b.tar"), "--report", report]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(report, "utf8"))).toMatchObject({ ok: true, images: [{ name: "t/single:1" }] });
    // images.yaml now selects another image: the lock given drifted, and says so by name.
    writeFileSync(w.yaml, "version: 1\nimages:\n  - source: oci:layout:multi\n    as: t/multi:1\n");
    const drift = await runBin(["plan", "-f", w.yaml, "--lock", lockFile, "-o", join(w.dir, "b.tar")]);
    expect(drift.code).toBe(1);
    expect(drift.stderr).toContain(`airlock: ${lockFile} no longer matches what ${w.yaml} selects`);
  });
});

describe("a platform list that subsets an index", () => {
  it("lock and plan say the index digest changes and how to keep it; the bundle has the digest they name", async () => {
    const dir = join(tmp, "subset");
    mkdirSync(dir, { recursive: true });
    const lock = await runCli(["lock", "-f", EXAMPLE, "-o", join(dir, "images.lock.yaml")]);
    expect(lock.code).toBe(0);
    const line = lock.stdout.split("\n").find((l) => l.startsWith("fixtures/multi:1.0-arm64 ")) ?? "";
    const m = new RegExp(`^fixtures/multi:1\\.0-arm64 ${MULTI} \\(index rewritten for linux/arm64, so the digest changes: ${MULTI} \\(source\\) → (sha256:[0-9a-f]{64}) \\(bundle\\); to keep the source's index and digest, set keepIndex: true \\(every platform moves\\) or platforms: all\\)$`).exec(line);
    expect(m, line).not.toBeNull();
    const bundleDigest = m?.[1] as string;
    expect(bundleDigest).not.toBe(MULTI);
    // The whole index (platforms: all) has no note.
    expect(lock.stdout).toContain(`\nfixtures/multi:1.0 ${MULTI}\n`);

    const plan = await runCli(["plan", "-f", EXAMPLE, "-o", join(dir, "b.tar")]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(new RegExp(`^  fixtures/multi:1\\.0-arm64  ${bundleDigest}  \\(.*\\)\\n    index rewritten for linux/arm64, so the digest changes: ${MULTI} \\(source\\) → ${bundleDigest} \\(bundle\\); .*keepIndex: true`, "m"));
    expect(plan.stdout).not.toMatch(/^ {2}fixtures\/multi:1\.0 {2}.*\n {4}index rewritten/m);

    const out = join(dir, "b.tar");
    const exp = await runCli(["export", "-q", "-f", EXAMPLE, "-o", out]);
    expect(exp.code).toBe(0);
    expect(sha(await skopeo("inspect", "--raw", `oci-archive:${out}:fixtures/multi:1.0-arm64`))).toBe(bundleDigest);
  });
});

describe("--retry-times and --retry-delay", () => {
  let reg: RunningRegistry;
  let proxy: FaultProxy;
  let fault: (r: ProxiedRequest) => boolean = () => false;
  let yaml: string;
  let layer: string;

  beforeAll(async () => {
    reg = await startRegistry({ mode: "plain" });
    await copyImage(parseImageName(`oci:${FIX}/oci:single`), parseImageName(`docker://${reg.host}/up/single:1`));
    const src = await parseImageName(`oci:${FIX}/oci:single`).newSource({});
    const image = (await src.getManifest()).image;
    await src.close();
    layer = [...image.layers].sort((x, y) => y.size - x.size)[0]?.digest as string;
    proxy = await startFaultProxy(reg.url, (r) => (fault(r) ? { respond: { status: 503, body: "busy" } } : undefined));
    mkdirSync(join(tmp, "retry"), { recursive: true });
    yaml = join(tmp, "retry", "images.yaml");
    writeFileSync(yaml, `version: 1\nregistries:\n  "${proxy.host}": { tlsVerify: false }\nimages:\n  - name: ${proxy.host}/up/single\n    tags: ["1"]\n`);
  }, 60_000);
  afterAll(async () => {
    await proxy?.stop();
    await reg?.stop();
  });

  /** Answers 503 to the first `n` requests that `match` picks from now on; returns how many it saw. */
  const failFirst = (n: number, match: (r: ProxiedRequest) => boolean) => {
    let seen = 0;
    fault = (r) => match(r) && ++seen <= n;
    return () => seen;
  };
  const manifestGet = (r: ProxiedRequest) => r.method === "GET" && r.url.includes("/up/single/manifests/");
  const layerGet = (r: ProxiedRequest) => r.method === "GET" && r.url.includes(`/blobs/${layer}`);

  it("lock, plan and export retry a manifest request as often as asked", async () => {
    const out = join(tmp, "retry", "b.tar");
    for (const verb of [["lock"], ["plan", "-o", out], ["export", "-q", "-o", out]]) {
      let seen = failFirst(2, manifestGet);
      const once = await runCli([...verb, "-f", yaml, "--retry-times", "1", "--retry-delay", "10ms"]);
      expect(once.code, verb[0]).toBe(1);
      expect(once.stderr).toMatch(/503/);
      expect(seen(), verb[0]).toBe(2);
      seen = failFirst(2, manifestGet);
      const twice = await runCli([...verb, "-f", yaml, "--retry-times", "2", "--retry-delay", "10ms"]);
      expect(twice.code, `${verb[0]}: ${twice.stderr}`).toBe(0);
      expect(seen(), verb[0]).toBe(3);
    }
    expect((await runCli(["verify", out])).code).toBe(0);
  });

  it("export applies them to blob downloads too", async () => {
    const out = join(tmp, "retry", "blobs.tar");
    // Without client retries, each of the export's three tries of the blob meets a 503.
    let seen = failFirst(3, layerGet);
    const none = await runCli(["export", "-q", "-f", yaml, "-o", out, "--retry-times", "0", "--no-resume"]);
    expect(none.code).toBe(1);
    expect(seen()).toBe(3);
    seen = failFirst(3, layerGet);
    const some = await runCli(["export", "-q", "-f", yaml, "-o", out, "--retry-times", "3", "--retry-delay", "1ms", "--no-resume"]);
    expect(some.code, some.stderr).toBe(0);
    expect(seen()).toBe(4);
  });

  it("rejects a bad value as copy does", async () => {
    const r = await runCli(["lock", "-f", yaml, "--retry-delay", "soon"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid duration "soon"/);
  });
});
