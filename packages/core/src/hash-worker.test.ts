import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Worker } from "node:worker_threads";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { isAirlockError } from "./errors.js";
import { HashWorker } from "./hash-worker.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const tmp = mkdtempSync(join(tmpdir(), "airlock-hash-worker-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const workers: HashWorker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close()));
});

function start(options?: Parameters<typeof HashWorker.start>[0]): HashWorker {
  const w = HashWorker.start(options);
  if (!w) throw new Error("no hash worker on this runtime");
  workers.push(w);
  return w;
}

describe("HashWorker", () => {
  it("computes the same sha256 as createHash for chunks of any size, the caller's buffer reused", async () => {
    const w = start({ batchSize: 64 * 1024 });
    const r = rng(7);
    const data = randomBytes(400_000);
    const scratch = Buffer.alloc(200_000);
    const h = w.hash();
    const ref = createHash("sha256");
    // 0-length, small, exactly a batch, and larger than a batch; scratch is overwritten after each update.
    const sizes = [0, 1, 65_536, 150_000, 0, 3];
    for (let i = 0; i < 40; i++) sizes.push(Math.floor(r() * 200_000));
    for (const n of sizes) {
      const off = Math.floor(r() * (data.length - n));
      data.copy(scratch, 0, off, off + n);
      h.update(scratch.subarray(0, n));
      ref.update(data.subarray(off, off + n));
      scratch.fill(0xaa);
    }
    expect(await h.digest()).toBe(ref.digest("hex"));
    // An empty hash, and another algorithm.
    expect(await w.hash().digest()).toBe(createHash("sha256").digest("hex"));
    expect(await w.hash("sha512").update(data).digest()).toBe(createHash("sha512").update(data).digest("hex"));
  });

  it("keeps several hashes apart, interleaved on one worker, even with fewer batches than hashes", async () => {
    for (const maxInFlight of [4 * 1024 * 1024, 20_000]) {
      // 20 000 bytes: two batches for three hashes, so a hash that needs one posts another's half-filled batch.
      const w = start({ batchSize: 10_000, maxInFlight });
      const r = rng(11);
      const hs = [w.hash(), w.hash(), w.hash()];
      const refs = hs.map(() => createHash("sha256"));
      for (let i = 0; i < 120; i++) {
        const k = Math.floor(r() * hs.length);
        const b = randomBytes(Math.floor(r() * 30_000));
        hs[k]?.update(b);
        refs[k]?.update(b);
      }
      const got = await Promise.all(hs.map((h) => h.digest()));
      expect(got).toEqual(refs.map((h) => h.digest("hex")));
    }
  });

  it("blocks the producer while every batch is in flight, instead of queueing more", async () => {
    // One batch: every update past the first waits until the worker has hashed the one before.
    const w = start({ batchSize: 4096, maxInFlight: 4096 });
    const h = w.hash();
    const ref = createHash("sha256");
    const chunk = Buffer.alloc(8192);
    let most = 0;
    for (let i = 0; i < 2000; i++) {
      chunk.fill(i & 0xff);
      h.update(chunk);
      ref.update(chunk);
      most = Math.max(most, w.inFlight);
    }
    expect(most).toBe(1);
    expect(w.waits).toBeGreaterThan(0);
    expect(await h.digest()).toBe(ref.digest("hex"));
    expect(w.failed).toBeUndefined();
  });

  it("rejects the digests with an AirlockError when the worker thread dies, and drops later bytes", async () => {
    const w = start();
    const h = w.hash();
    h.update(randomBytes(100_000));
    // The thread goes away as if it crashed (not through close()).
    await (w as unknown as { worker: Worker }).worker.terminate();
    await new Promise((res) => setImmediate(res));
    expect(w.failed?.message).toMatch(/hash worker thread exited/);
    h.update(randomBytes(5 * 1024 * 1024));
    const err = await h.digest().catch((e: unknown) => e);
    expect(isAirlockError(err, "ERR_IO")).toBe(true);
    expect((err as Error).message).toMatch(/must be computed again/);
  });

  it("rejects the digests still awaited when the worker stops, and drops later bytes", async () => {
    const w = start();
    const h = w.hash();
    h.update(randomBytes(3 * 1024 * 1024));
    const pending = h.digest().catch((e: unknown) => e);
    await w.close();
    const err = await pending;
    expect(isAirlockError(err)).toBe(true);
    expect(w.failed).toBeDefined();
    const late = w.hash();
    late.update(Buffer.from("ignored"));
    await expect(late.digest()).rejects.toThrow(/closed before the digest was computed/);
  });

  it("reads file ranges itself, in order with the bytes given to update()", async () => {
    const a = randomBytes(3 * 1024 * 1024 + 17);
    const b = randomBytes(100_000);
    const files = [join(tmp, "a"), join(tmp, "b")];
    writeFileSync(files[0] as string, a);
    writeFileSync(files[1] as string, b);
    const w = start({ batchSize: 64 * 1024, files });
    const r = rng(5);
    const h = w.hash();
    const ref = createHash("sha256");
    for (let i = 0; i < 30; i++) {
      const which = r() < 0.5 ? 0 : 1;
      const data = which === 0 ? a : b;
      const pos = Math.floor(r() * data.length);
      const n = Math.floor(r() * (data.length - pos + 1));
      h.updateFromFile(which, pos, n);
      ref.update(data.subarray(pos, pos + n));
      const extra = randomBytes(Math.floor(r() * 70_000));
      h.update(extra);
      ref.update(extra);
    }
    h.updateFromFile(0, 0, a.length); // longer than one read command
    ref.update(a);
    expect(await h.digest()).toBe(ref.digest("hex"));
  });

  it("rejects the digest of a hash whose file range cannot be read, and keeps the other hashes", async () => {
    const path = join(tmp, "short");
    writeFileSync(path, Buffer.alloc(1000, 1));
    const w = start({ files: [path, join(tmp, "missing")] });
    const short = w.hash().updateFromFile(0, 500, 1000);
    const missing = w.hash().updateFromFile(1, 0, 10);
    const good = w.hash().updateFromFile(0, 0, 1000);
    await expect(short.digest()).rejects.toThrow(/short at offset 1000: the file ends there/);
    const err = await missing.digest().catch((e: unknown) => e);
    expect(isAirlockError(err, "ERR_IO")).toBe(true);
    expect((err as Error).message).toMatch(/missing/);
    expect(await good.digest()).toBe(createHash("sha256").update(Buffer.alloc(1000, 1)).digest("hex"));
  });

  it("refuses update() after digest()", async () => {
    const w = start();
    const h = w.hash();
    await h.digest();
    expect(() => h.update(Buffer.from("z"))).toThrow(/after digest/);
  });
});
