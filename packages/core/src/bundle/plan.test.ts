import { mkdtemp, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Digest } from "../digest.js";
import { digestOf } from "../digest.js";
import { volumeDescriptionPath } from "./format.js";
import { type BundlePlan, checkSpace, exportSpaceNeeds, importSpace, type LayoutItem, planLayout, volumeAt, volumeDescriptionBytes } from "./plan.js";
import { END_OF_ARCHIVE_SIZE, paddedSize } from "./tar.js";

/** A small deterministic PRNG, so the property tests are reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function items(sizes: number[]): LayoutItem[] {
  const out: LayoutItem[] = [{ path: "oci-layout", size: 30, kind: "file", digest: digestOf("x") }];
  for (const [i, size] of sizes.entries()) {
    const digest = digestOf(`blob ${i}`) as Digest;
    out.push({ path: `blobs/sha256/${digest.slice(7)}`, size, kind: "blob", digest });
  }
  out.push({ path: "airlock/bundle.json", size: 3000, kind: "metadata" });
  return out;
}

/** Checks the invariants every plan must hold. */
function checkPlan(plan: BundlePlan, input: LayoutItem[], limit?: number): void {
  // Volumes tile the logical file.
  let pos = 0;
  for (const [i, v] of plan.volumes.entries()) {
    expect(v.number).toBe(i);
    expect(v.offset).toBe(pos);
    pos += v.size;
    if (limit !== undefined) expect(v.size).toBeLessThanOrEqual(limit);
  }
  expect(plan.size).toBe(pos);
  expect(plan.endOffset + END_OF_ARCHIVE_SIZE).toBe(plan.size);
  // Entries are contiguous, in input order, with descriptions where volumes start.
  let at = 0;
  const nonDesc = plan.entries.filter((e) => e.kind !== "description");
  expect(nonDesc.map((e) => e.path)).toEqual(input.map((i) => i.path));
  for (const e of plan.entries) {
    expect(e.headerOffset).toBe(at);
    expect(e.dataOffset).toBe(e.headerOffset + e.header.length);
    expect(volumeAt(plan.volumes, e.headerOffset)).toBe(e.volume);
    at = e.dataOffset + paddedSize(e.size);
    const v = plan.volumes[e.volume];
    if (!v) throw new Error("no volume");
    if (e.kind === "description") {
      expect(e.headerOffset).toBe(v.offset);
      expect(e.path).toBe(volumeDescriptionPath(v.number));
    }
    // An entry crosses a cut point only when it continues in continuation volumes.
    const end = e.dataOffset + paddedSize(e.size);
    if (end > v.offset + v.size) {
      expect(v.continuedIn.length).toBeGreaterThan(0);
      expect(v.entries.at(-1)).toBe(e);
      const last = plan.volumes[v.continuedIn.at(-1) as number];
      expect(last && last.offset + last.size).toBe(end);
    }
  }
  expect(at).toBe(plan.endOffset);
  // Every volume that is not a continuation starts with a description that fits its reservation.
  const continuations = new Set(plan.volumes.flatMap((v) => v.continuedIn));
  for (const v of plan.volumes) {
    expect(v.description === undefined).toBe(continuations.has(v.number));
    if (v.description) {
      const bytes = volumeDescriptionBytes(plan, v, "11111111-2222-3333-4444-555555555555");
      expect(bytes.length).toBe(v.description.size);
      const json = JSON.parse(bytes.toString("utf8"));
      expect(json.volume).toBe(v.number);
      expect(json.count).toBe(plan.volumes.length);
      expect(json.size).toBe(v.size);
      expect(json.entries.map((x: { path: string }) => x.path)).toEqual(v.entries.map((x) => x.path));
    }
  }
}

describe("planLayout", () => {
  it("plans a single volume: description, then the entries in order, then the end marker", () => {
    const input = items([100, 0, 512, 513, 70_000]);
    const plan = planLayout(input, { mtime: 0 });
    expect(plan.volumes).toHaveLength(1);
    expect(plan.entries[0]?.kind).toBe("description");
    checkPlan(plan, input);
  });

  it("cuts volumes at entry boundaries, never above the split size", () => {
    const input = items(Array.from({ length: 40 }, (_, i) => 10_000 + i * 997));
    const limit = 64 * 1024;
    const plan = planLayout(input, { mtime: 0, splitSize: limit });
    expect(plan.volumes.length).toBeGreaterThan(5);
    checkPlan(plan, input, limit);
    for (const v of plan.volumes) expect(v.continuedIn).toEqual([]);
  });

  it("lets an entry larger than a volume start a fresh one and continue in continuation volumes", () => {
    const limit = 64 * 1024;
    const input = items([1000, 300_000, 2000, 65_000, 10]);
    const plan = planLayout(input, { mtime: 0, splitSize: limit });
    checkPlan(plan, input, limit);
    const big = plan.entries.find((e) => e.size === 300_000);
    const v = plan.volumes[big?.volume ?? -1];
    expect(v?.entries).toEqual([big]);
    expect(v?.continuedIn.length).toBe(4);
    // The entry after it starts a new volume with its own description.
    const next = plan.entries.find((e) => e.size === 2000);
    expect(next?.volume).toBe((v?.continuedIn.at(-1) as number) + 1);
  });

  it("holds its invariants for random inputs", () => {
    const r = rng(42);
    for (let round = 0; round < 60; round++) {
      const n = 1 + Math.floor(r() * 60);
      const sizes = Array.from({ length: n }, () => (r() < 0.1 ? Math.floor(r() * 400_000) : Math.floor(r() * 30_000)));
      const limit = r() < 0.2 ? undefined : 64 * 1024 + Math.floor(r() * 200_000);
      const input = items(sizes);
      checkPlan(planLayout(input, { mtime: 1, splitSize: limit }), input, limit);
    }
  });
});

describe("space needs", () => {
  it("an export needs each volume, the journal and the checksum file, beside the bundle", () => {
    const needs = exportSpaceNeeds({ out: "/b/x.tar", volumes: [{ path: "/b/x.tar.000", size: 100 }, { path: "/b/x.tar.001", size: 50 }], blobs: 10 });
    expect(needs.map((n) => [n.what, n.path])).toEqual([
      ["volume 0", "/b/x.tar.000"],
      ["volume 1", "/b/x.tar.001"],
      ["export journal", "/b/x.tar.journal.json"],
      ["checksum file", "/b/x.tar.sha256"],
    ]);
    expect(needs[2]?.bytes).toBeGreaterThan(10 * 75); // a digest per blob, at least
  });

  it("an import needs no temporary space; a directory destination takes the images (dir: once per image)", () => {
    expect(importSpace({ size: 1000, duplicateBytes: 300 })).toMatchObject({ temporaryBytes: 0, needs: [] });
    expect(importSpace({ size: 1000, duplicateBytes: 300 }, "registry.local/mirror").needs).toEqual([]);
    expect(importSpace({ size: 1000, duplicateBytes: 300 }, "oci:/srv/layout").needs).toEqual([{ what: "import into oci:/srv/layout", path: "/srv/layout", bytes: 1000 }]);
    expect(importSpace({ size: 1000, duplicateBytes: 300 }, "dir:/srv/dirs").needs[0]?.bytes).toBe(1300);
  });

  it("adds up the needs of one file system and compares them with its free space", async () => {
    const dir = await mkdtemp(join(tmpdir(), "airlock-space-"));
    try {
      const free = Number((await statfs(dir)).bavail) * Number((await statfs(dir)).bsize);
      const fits = await checkSpace([
        { what: "a", path: join(dir, "a"), bytes: 1 },
        { what: "b", path: join(dir, "not", "yet", "b"), bytes: 2 },
      ]);
      expect(fits).toHaveLength(1);
      expect(fits[0]).toMatchObject({ directory: dir, bytes: 3, ok: true });
      const short = await checkSpace([{ what: "big", path: join(dir, "big"), bytes: free + 1024 ** 3 }]);
      expect(short[0]?.ok).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
