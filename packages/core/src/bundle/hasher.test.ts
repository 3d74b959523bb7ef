import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { digestOf } from "../digest.js";
import { VolumeHasher } from "./hasher.js";
import { type LayoutItem, type PlannedEntry, planLayout } from "./plan.js";
import { paddedSize } from "./tar.js";
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
      const r = rng(1000 + round);
      const items: LayoutItem[] = [{ path: "oci-layout", size: 30, kind: "file", digest: digestOf("x") }];
      const n = 2 + Math.floor(r() * 12);
      for (let i = 0; i < n; i++) {
        const size = r() < 0.2 ? Math.floor(r() * 300_000) : Math.floor(r() * 20_000);
        const d = digestOf(`${round}/${i}`);
        items.push({ path: `blobs/sha256/${d.slice(7)}`, size, kind: "blob", digest: d });
      }
      items.push({ path: "airlock/bundle.json", size: 700, kind: "metadata" });
      const plan = planLayout(items, { mtime: 0, splitSize: r() < 0.3 ? undefined : 64 * 1024 });
      const paths = plan.volumes.map((v) => join(tmp, `r${round}.${v.number}`));
      const files = await VolumeFiles.open(plan.volumes, paths, "w+");
      const hasher = new VolumeHasher(plan, files);
      try {
        const writeWhole = async (e: PlannedEntry) => {
          const b = region(e);
          await files.write(b, 0, b.length, e.headerOffset);
          await jitter(r);
          hasher.written(e);
        };
        // Small entries first, as the export does; blobs in parallel, some in chunks followed live.
        await Promise.all(plan.entries.filter((e) => e.kind === "description" || e.kind === "file").map(writeWhole));
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
        await files.close();
      }
      expect(hasher.valid).toBe(true);
      for (const [i, p] of paths.entries()) {
        expect(hasher.sums[i], `round ${round}, volume ${i}`).toBe(createHash("sha256").update(readFileSync(p)).digest("hex"));
      }
    }
  });
});
