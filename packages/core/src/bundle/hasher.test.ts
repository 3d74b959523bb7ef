import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { Worker } from "node:worker_threads";
import { afterAll, describe, expect, it, vi } from "vitest";
import { generatedImage } from "../../../../test/support/generated-image.js";
import { digestOf } from "../digest.js";
import { HashWorker } from "../hash-worker.js";
import { exportBundle } from "./export.js";
import { type BundleMetadata, checksumFileName } from "./format.js";
import { VolumeHasher, type VolumeHasherOptions } from "./hasher.js";
import { type LayoutItem, type PlannedEntry, planLayout } from "./plan.js";
import { paddedSize } from "./tar.js";
import { verifyBundle } from "./verify.js";
import { VolumeFiles } from "./volumes.js";

const tmp = mkdtempSync(join(tmpdir(), "airlock-hasher-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Waits a random little while: nothing, a microtask, a macrotask or a timer. */
function jitter(r: () => number): Promise<void> {
  const x = r();
  if (x < 0.25) return Promise.resolve();
  if (x < 0.5) return new Promise((res) => queueMicrotask(res));
  if (x < 0.75) return new Promise((res) => setImmediate(res));
  return new Promise((res) => setTimeout(res, Math.floor(r() * 3)));
}

const sha256Of = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/** The bytes of an entry's region: header, data (a pattern from its path) and zero padding. */
function region(e: PlannedEntry): Buffer {
  const out = Buffer.alloc(e.header.length + paddedSize(e.size));
  e.header.copy(out);
  const seed = createHash("sha256").update(e.path).digest();
  for (let i = 0; i < e.size; i++) out[e.header.length + i] = (seed[i % 32] as number) ^ (i & 0xff);
  return out;
}

describe("VolumeHasher", () => {
  it("does not lose a change that arrives just as a run of the frontier ends", async () => {
    const items: LayoutItem[] = [
      { path: "oci-layout", size: 30, kind: "file", digest: digestOf("a") },
      { path: "index.json", size: 3000, kind: "file", digest: digestOf("b") },
      { path: "airlock/bundle.json", size: 700, kind: "metadata" },
    ];
    const plan = planLayout(items, { mtime: 0 });
    const path = join(tmp, "race");
    const files = await VolumeFiles.open(plan.volumes, [path], "w+");
    const hasher = new VolumeHasher(plan, files);
    try {
      for (const e of plan.entries) {
        const b = region(e);
        await files.write(b, 0, b.length, e.headerOffset);
      }
      await files.write(Buffer.alloc(1024), 0, 1024, plan.endOffset);
      const last = plan.entries.find((e) => e.path === "index.json") as PlannedEntry;
      for (const e of plan.entries) if (e !== last) hasher.written(e);
      hasher.endWritten();
      // Resumes in the microtask right after the run reached `last` and found it not written.
      await hasher.reach(last.headerOffset);
      hasher.written(last);
      const timeout = new Promise<string>((res) => setTimeout(() => res("stuck"), 2000));
      expect(await Promise.race([hasher.reach(plan.size).then(() => "done"), timeout])).toBe("done");
    } finally {
      await files.close();
    }
    expect(hasher.sums[0]).toBe(createHash("sha256").update(readFileSync(path)).digest("hex"));
  });

  it("computes every volume's sha256 whatever the order and timing of writes", async () => {
    for (let round = 0; round < 25; round++) {
      const { hasher, paths } = await randomExport(1000 + round, { workerMinSize: Number.POSITIVE_INFINITY });
      expect(hasher.valid).toBe(true);
      for (const [i, p] of paths.entries()) expect(hasher.sums[i], `round ${round}, volume ${i}`).toBe(sha256Of(p));
    }
  });

  it("computes the same sums on a worker thread", async () => {
    const start = vi.spyOn(HashWorker, "start");
    try {
      for (let round = 0; round < 8; round++) {
        const { hasher, paths } = await randomExport(2000 + round, { workerMinSize: 0 });
        expect(hasher.valid).toBe(true);
        for (const [i, p] of paths.entries()) expect(hasher.sums[i], `round ${round}, volume ${i}`).toBe(sha256Of(p));
      }
      expect(start).toHaveBeenCalledTimes(8);
      for (const r of start.mock.results) expect(r.value).toBeInstanceOf(HashWorker);
    } finally {
      start.mockRestore();
    }
  });

  it("never gives a wrong sum when the worker thread dies: the volume it was hashing turns invalid, later ones are hashed here", async () => {
    const start = vi.spyOn(HashWorker, "start");
    try {
      const { hasher, paths } = await randomExport(3000, { workerMinSize: 0, splitSize: 64 * 1024 }, async () => {
        // The first volume is being hashed on the worker: its thread goes away.
        const w = start.mock.results[0]?.value as HashWorker;
        await (w as unknown as { worker: Worker }).worker.terminate();
        await new Promise((res) => setImmediate(res));
        expect(w.failed?.message).toMatch(/hash worker thread exited/);
      });
      expect(paths.length).toBeGreaterThan(2);
      expect(hasher.valid).toBe(false);
      expect(hasher.sums[0]).toBeUndefined();
      // Later volumes fall back to this thread: their sums are there, and right.
      expect(hasher.sums.at(-1)).toBeDefined();
      for (const [i, p] of paths.entries()) if (hasher.sums[i] !== undefined) expect(hasher.sums[i], `volume ${i}`).toBe(sha256Of(p));
    } finally {
      start.mockRestore();
    }
  });
});

describe("exportBundle with the volume sums computed on a worker thread", () => {
  it("records and reports each volume's sha256sum, and the bundle verifies", async () => {
    const start = vi.spyOn(HashWorker, "start");
    const saved = [VolumeHasher.workerMinSize, VolumeHasher.workerMinCpus] as const;
    // A small bundle on any machine, hashed off-thread all the same.
    VolumeHasher.workerMinSize = 0;
    VolumeHasher.workerMinCpus = 1;
    try {
      const sources = await Promise.all(
        [
          ["worker-a", 3_000_000],
          ["worker-b", 1_200_000],
          ["worker-c", 150_000],
        ].map(([seed, size]) => generatedImage(seed as string, size as number)),
      );
      const out = join(mkdtempSync(join(tmp, "export-")), "bundle.tar");
      const r = await exportBundle(
        sources.map((source, i) => ({ source, name: `worker.example/img${i}:1` })),
        out,
        { splitSize: 1024 * 1024 },
      );
      expect(start).toHaveBeenCalledTimes(1);
      expect(start.mock.results[0]?.value).toBeInstanceOf(HashWorker);
      expect(r.volumes.length).toBeGreaterThan(3);
      // Reported sums = sha256sum of the files; the sidecar passes `sha256sum -c`.
      const sha256sum = execFileSync("sha256sum", r.volumes.map((v) => v.path), { encoding: "utf8" });
      expect(r.volumes.map((v) => v.sha256)).toEqual(sha256sum.trim().split("\n").map((l) => l.split(/\s+/)[0]));
      execFileSync("sha256sum", ["-c", "--quiet", basename(checksumFileName(out))], { cwd: dirname(out) });
      // Recorded sums (the volumes before bundle.json's) too.
      const whole = Buffer.concat(r.volumes.map((v) => readFileSync(v.path)));
      const meta = JSON.parse(execFileSync("tar", ["-xOf", "-", "airlock/bundle.json"], { input: whole }).toString()) as BundleMetadata;
      const recorded = meta.volumes.filter((v) => v.sha256 !== null);
      expect(recorded.length).toBeGreaterThan(1);
      for (const v of recorded) expect(v.sha256, `volume ${v.volume}`).toBe(r.volumes[v.volume]?.sha256);
      expect((await verifyBundle(out)).problems).toEqual([]);
    } finally {
      [VolumeHasher.workerMinSize, VolumeHasher.workerMinCpus] = saved;
      start.mockRestore();
    }
  });
});

/**
 * Writes a random bundle plan (seeded) the way an export does — small entries first, blobs in
 * parallel, some whole, some in chunks followed live, random timing — and returns the hasher.
 * `midway` runs once the frontier is inside the first volume.
 */
async function randomExport(seed: number, options: VolumeHasherOptions & { splitSize?: number }, midway?: () => Promise<void>): Promise<{ hasher: VolumeHasher; paths: string[] }> {
  const r = rng(seed);
  const items: LayoutItem[] = [{ path: "oci-layout", size: 30, kind: "file", digest: digestOf("x") }];
  const n = 2 + Math.floor(r() * 12);
  for (let i = 0; i < n; i++) {
    const size = r() < 0.2 ? Math.floor(r() * 300_000) : Math.floor(r() * 20_000);
    const d = digestOf(`${seed}/${i}`);
    items.push({ path: `blobs/sha256/${d.slice(7)}`, size, kind: "blob", digest: d });
  }
  items.push({ path: "airlock/bundle.json", size: 700, kind: "metadata" });
  const splitSize = "splitSize" in options ? options.splitSize : r() < 0.3 ? undefined : 64 * 1024;
  const plan = planLayout(items, { mtime: 0, splitSize });
  const paths = plan.volumes.map((v) => join(tmp, `r${seed}.${v.number}`));
  const files = await VolumeFiles.open(plan.volumes, paths, "w+");
  const hasher = new VolumeHasher(plan, files, { workerMinSize: options.workerMinSize });
  try {
    const writeWhole = async (e: PlannedEntry) => {
      const b = region(e);
      await files.write(b, 0, b.length, e.headerOffset);
      await jitter(r);
      hasher.written(e);
    };
    // Small entries first, as the export does; blobs in parallel, some in chunks followed live.
    await Promise.all(plan.entries.filter((e) => e.kind === "description" || e.kind === "file").map(writeWhole));
    if (midway) {
      await hasher.reach(1);
      await midway();
    }
    const blobs = plan.entries.filter((e) => e.kind === "blob").sort(() => r() - 0.5);
    await Promise.all(
      blobs.map(async (e) => {
        await jitter(r);
        if (r() < 0.5) return writeWhole(e);
        const b = region(e);
        const chunk = 1 + Math.floor(r() * 40_000);
        for (let off = e.header.length; off < b.length; off += chunk) {
          const k = Math.min(chunk, b.length - off);
          const pos = e.headerOffset + off;
          await files.write(b, off, k, pos);
          hasher.blobWrite(e, pos, b.subarray(off, off + k), k);
          await jitter(r);
        }
        await files.write(b, 0, e.header.length, e.headerOffset);
        hasher.written(e);
      }),
    );
    const meta = plan.entries.find((e) => e.kind === "metadata") as PlannedEntry;
    await hasher.reach(meta.headerOffset);
    await writeWhole(meta);
    await files.write(Buffer.alloc(1024), 0, 1024, plan.endOffset);
    hasher.endWritten();
    await hasher.reach(plan.size);
  } finally {
    hasher.close();
    await files.close();
  }
  return { hasher, paths };
}
