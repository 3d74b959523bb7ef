/**
 * How `airlock import` ends: a successful import's --report has ok: true; a bundle with a tampered
 * blob fails with a one-line summary on stderr before the error line and a report with ok: false,
 * the error, its code and what was done; and the import's `bundle-plan` event counts a blob that
 * two images share once. Bundles are exported from copies of the committed OCI layouts.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProgressBoard } from "../../apps/airlock/src/progress-board.js";
import { exportBaseBundle } from "../support/bundles.js";
import { runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const tmp = mkdtempSync(join(tmpdir(), "airlock-import-report-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let bundle: string;
/** The distinct blobs (config and layers) of base-a and base-b, and how many of them both list. */
let unique: Map<string, number>;
let shared: number;

beforeAll(async () => {
  const exported = await exportBaseBundle(tmp);
  bundle = exported.bundle;
  const { layout } = exported;
  unique = new Map();
  shared = 0;
  for (const name of ["base-a", "base-b"]) {
    const src = await parseImageName(`oci:${layout}:${name}`).newSource({});
    const { image } = await src.getManifest();
    await src.close();
    for (const d of [image.config, ...image.layers]) {
      if (unique.has(d.digest)) shared++;
      unique.set(d.digest, d.size);
    }
  }
  expect(shared).toBeGreaterThan(0);
});

describe("import --report", () => {
  it("a successful import: ok: true; its bundle-plan event counts a shared blob once", async () => {
    const report = join(tmp, "ok.json");
    const r = await runCli(["import", "--json", bundle, "--to", `oci:${join(tmp, "ok-dest")}`, "--report", report]);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep).toMatchObject({ ok: true, images: [expect.objectContaining({ status: "pushed" }), expect.objectContaining({ status: "pushed" })] });
    expect(rep.error).toBeUndefined();
    const events = r.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const plans = events.filter((e) => e.type === "bundle-plan");
    expect(plans).toEqual([
      expect.objectContaining({
        operation: "import",
        images: 2,
        manifests: 2,
        blobs: unique.size,
        bytes: [...unique.values()].reduce((a, n) => a + n, 0),
        duplicateBlobs: shared,
        volumes: 1,
        size: statSync(bundle).size,
        resumed: false,
      }),
    ]);
    // Before any blob is pushed.
    expect(events.findIndex((e) => e.type === "bundle-plan")).toBeLessThan(events.findIndex((e) => e.type === "blob-start" || e.type === "blob-done"));
    // The terminal display's total, once both images announced their bytes: the shared blob once.
    const board = new ProgressBoard(() => 0);
    const announced = events.filter((e) => e.type === "image-start");
    expect(announced).toHaveLength(2);
    for (const e of events.slice(0, events.indexOf(announced[1]) + 1)) board.on(e);
    expect(board.totals().total).toBe(plans[0].bytes);
    expect(announced[0].bytes + announced[1].bytes).toBeGreaterThan(plans[0].bytes);
  });

  it("a tampered blob: a summary line before the error line, and a report with ok: false, the error, its code and what was done", async () => {
    // Flip one byte of the smallest blob inside the tar (same size: the bundle's structure still
    // checks); pushed one at a time, largest first, the others get there before it fails.
    const [victim] = [...unique.entries()].sort((x, y) => x[1] - y[1])[0] as [string, number];
    const bytes = readFileSync(bundle);
    const blob = readFileSync(join(FIX, "oci", "blobs", "sha256", victim.slice(7)));
    const at = bytes.indexOf(blob);
    expect(at).toBeGreaterThan(0);
    const tampered = join(tmp, "tampered.tar");
    bytes[at + (blob.length >> 1)] ^= 0xff;
    writeFileSync(tampered, bytes);

    const report = join(tmp, "failed.json");
    const r = await runCli(["import", "-q", tampered, "--to", `oci:${join(tmp, "bad-dest")}`, "--concurrency", "1", "--report", report]);
    expect(r.code).toBe(1);
    const [summary, error] = r.stderr.trim().split("\n").slice(-2);
    expect(summary).toMatch(/^Import failed after \d+\.\d s: \d of 2 image\(s\) done, [1-9]\d* of \d+ blob\(s\) pushed \(.+ of .+\), \d+ already present$/);
    expect(error).toContain(victim);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep).toMatchObject({ ok: false, code: "ERR_DIGEST_MISMATCH", path: tampered, planned: { images: 2, blobs: unique.size } });
    expect(rep.error).toContain(victim);
    expect(error).toContain(rep.error);
    expect(rep.images).toEqual([]);
    expect(rep.blobsPushed).toBeGreaterThan(0);
    expect(rep.blobsPushed).toBeLessThan(unique.size);
    expect(typeof rep.bytesPushed).toBe("number");
    expect(typeof rep.durationMs).toBe("number");
  });

  it("a bundle that cannot be read: only the error line (nothing moved), and the report has ok: false", async () => {
    const report = join(tmp, "missing.json");
    const r = await runCli(["import", "-q", join(tmp, "nope.tar"), "--to", `oci:${join(tmp, "none")}`, "--report", report]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^airlock: .*nope\.tar/)]);
    expect(JSON.parse(readFileSync(report, "utf8"))).toMatchObject({ ok: false, error: expect.stringContaining("nope.tar"), images: [], blobsPushed: 0 });
  });

  it("an invalid --to prefix is named by itself (not through an image it does not hold)", async () => {
    const upper = await runCli(["import", "-q", bundle, "--to", "127.0.0.1:9/Mirror"]);
    expect(upper.code).toBe(1);
    expect(upper.stderr).toBe('airlock: --to 127.0.0.1:9/Mirror: the repository prefix "Mirror" must be lowercase (use "127.0.0.1:9/mirror")\n');
    const bad = await runCli(["import", "-q", bundle, "--to", "127.0.0.1:9/a/-x"]);
    expect(bad.stderr).toBe('airlock: --to 127.0.0.1:9/a/-x: the repository prefix "a/-x" has the invalid part "-x": use lowercase letters and digits, separated by . _ or -\n');
  });
});
