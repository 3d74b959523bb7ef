import { describe, expect, it } from "vitest";
import { runScheduled } from "./schedule.js";

/** A controllable run: each item waits until the test settles it. */
function harness(keys: Record<string, string[]>) {
  const running = new Set<string>();
  const started: string[] = [];
  const waiting = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  let maxRunning = 0;
  const perKeyMax = new Map<string, number>();
  const run = (item: string) =>
    new Promise<void>((resolve, reject) => {
      running.add(item);
      started.push(item);
      maxRunning = Math.max(maxRunning, running.size);
      for (const k of keys[item] ?? []) {
        const n = [...running].filter((i) => (keys[i] ?? []).includes(k)).length;
        perKeyMax.set(k, Math.max(perKeyMax.get(k) ?? 0, n));
      }
      waiting.set(item, {
        resolve: () => {
          running.delete(item);
          resolve();
        },
        reject: (e) => {
          running.delete(item);
          reject(e);
        },
      });
    });
  const tick = () => new Promise((r) => setTimeout(r, 0));
  return { run, running, started, waiting, tick, max: () => maxRunning, perKeyMax };
}

describe("runScheduled", () => {
  it("respects both limits and lets an item for an idle key pass a waiting one", async () => {
    const keys = { a1: ["A"], a2: ["A"], a3: ["A"], b1: ["B"], c1: ["C", "A"], d1: [] };
    const h = harness(keys);
    const done = runScheduled(Object.keys(keys), h.run, { parallel: 3, perKey: 1, keysOf: (i) => keys[i as keyof typeof keys] });
    await h.tick();
    // a2, a3 and c1 wait for A; b1 and d1 do not wait behind them.
    expect([...h.running].sort()).toEqual(["a1", "b1", "d1"]);
    h.waiting.get("a1")?.resolve();
    await h.tick();
    expect([...h.running].sort()).toEqual(["a2", "b1", "d1"]);
    for (const item of ["a2", "b1", "d1", "a3", "c1"]) {
      await h.tick();
      h.waiting.get(item)?.resolve();
    }
    await done;
    expect(h.started).toEqual(["a1", "b1", "d1", "a2", "a3", "c1"]);
    expect(h.max()).toBeLessThanOrEqual(3);
    expect(h.perKeyMax.get("A")).toBe(1);
  });

  it("counts a key an item names twice once (same registry as source and destination)", async () => {
    const keys: Record<string, string[]> = { x: ["R", "R"], y: ["R", "R"] };
    const h = harness(keys);
    const done = runScheduled(["x", "y"], h.run, { parallel: 2, perKey: 2, keysOf: (i) => keys[i] ?? [] });
    await h.tick();
    expect([...h.running].sort()).toEqual(["x", "y"]);
    h.waiting.get("x")?.resolve();
    h.waiting.get("y")?.resolve();
    await done;
  });

  it("after a rejection starts nothing more, waits for the running ones, and rethrows the first error", async () => {
    const h = harness({});
    const items = ["1", "2", "3", "4"];
    const done = runScheduled(items, h.run, { parallel: 2 });
    await h.tick();
    h.waiting.get("1")?.reject(new Error("first"));
    await h.tick();
    expect(h.started).toEqual(["1", "2"]);
    let settled = false;
    done.catch(() => {}).finally(() => {
      settled = true;
    });
    await h.tick();
    expect(settled).toBe(false); // "2" still runs
    h.waiting.get("2")?.reject(new Error("second"));
    await expect(done).rejects.toThrow("first");
    expect(h.started).toEqual(["1", "2"]);
  });

  it("stops starting items when stopped() says so, and resolves", async () => {
    const h = harness({});
    let stop = false;
    const done = runScheduled(["1", "2", "3"], h.run, { parallel: 1, stopped: () => stop });
    await h.tick();
    stop = true;
    h.waiting.get("1")?.resolve();
    await done;
    expect(h.started).toEqual(["1"]);
  });

  it("runs nothing and resolves for no items; treats limits below 1 as 1", async () => {
    await runScheduled([], async () => {}, { parallel: 4 });
    const h = harness({});
    const done = runScheduled(["1", "2"], h.run, { parallel: 0 });
    await h.tick();
    expect(h.started).toEqual(["1"]);
    h.waiting.get("1")?.resolve();
    await h.tick();
    h.waiting.get("2")?.resolve();
    await done;
    expect(h.max()).toBe(1);
  });
});
