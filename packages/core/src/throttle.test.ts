import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseImageName } from "./transports/index.js";
import "./transports/all.js";
import { parseRate, RateLimiter, registryHostOf, Throttle } from "./throttle.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("parseRate", () => {
  it.each([
    ["2000000", 2_000_000],
    ["500K", 500 * 1024],
    ["10M", 10 * 1024 ** 2],
    ["1G", 1024 ** 3],
    ["10MB/s", 10 * 1024 ** 2],
    ["1.5MiB/s", 1.5 * 1024 ** 2],
    ["2mbps", 2 * 1024 ** 2],
  ])("%s is %d bytes per second", (text, bytes) => expect(parseRate(text)).toBe(bytes));

  it.each(["", "fast", "0", "-1M", "10X", "M"])("refuses %j", (text) => expect(() => parseRate(text)).toThrow(/invalid rate/));
});

describe("registryHostOf", () => {
  it("names the registry of docker:// references and nothing for local transports", () => {
    expect(registryHostOf(parseImageName("docker://registry.example.com:5000/app:1"))).toBe("registry.example.com:5000");
    expect(registryHostOf(parseImageName("docker://busybox"))).toBe("docker.io");
    expect(registryHostOf(parseImageName("oci:/tmp/layout:app"))).toBeUndefined();
  });
});

describe("Throttle.transfer", () => {
  /** Runs `n` transfers between `refs(i)`; returns the most that were running at once per host. */
  async function peak(throttle: Throttle, n: number, refs: (i: number) => string[]): Promise<Map<string, number>> {
    const running = new Map<string, number>();
    const most = new Map<string, number>();
    await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const names = refs(i);
        return throttle.transfer(
          names.map((r) => parseImageName(r)),
          async () => {
            const hosts = names.map((r) => r.split("/")[2] as string);
            for (const h of hosts) {
              running.set(h, (running.get(h) ?? 0) + 1);
              most.set(h, Math.max(most.get(h) ?? 0, running.get(h) as number));
            }
            await sleep(5);
            for (const h of hosts) running.set(h, (running.get(h) ?? 0) - 1);
          },
        );
      }),
    );
    return most;
  }

  it("runs at most N transfers per registry host, across callers", async () => {
    const most = await peak(new Throttle({ maxParallelPerRegistry: 2 }), 12, (i) => [`docker://${i % 2 ? "a.example:5000" : "b.example:5000"}/x:1`]);
    expect(most.get("a.example:5000")).toBe(2);
    expect(most.get("b.example:5000")).toBe(2);
  });

  it("holds a slot at both registries of a registry-to-registry transfer, without deadlock in either direction", async () => {
    const most = await peak(new Throttle({ maxParallelPerRegistry: 1 }), 10, (i) => (i % 2 ? ["docker://a.example/x:1", "docker://b.example/x:1"] : ["docker://b.example/x:1", "docker://a.example/x:1"]));
    expect(most.get("a.example")).toBe(1);
    expect(most.get("b.example")).toBe(1);
  });

  it("does not limit without a cap", async () => {
    const most = await peak(new Throttle({}), 6, () => ["docker://a.example/x:1"]);
    expect(most.get("a.example")).toBe(6);
  });

  it("refuses a cap that is not a positive integer", () => {
    expect(() => new Throttle({ maxParallelPerRegistry: 0 })).toThrow(/positive integer/);
  });
});

describe("RateLimiter", () => {
  it("lets bytes through at the rate, shared by concurrent streams", async () => {
    const throttle = new Throttle({ bytesPerSecond: 1024 * 1024 });
    const chunk = Buffer.alloc(16 * 1024);
    const started = performance.now();
    let received = 0;
    // Two streams of 192 KiB: 384 KiB at 1 MiB/s, minus the 100 KiB burst, is at least ~0.27 s.
    await Promise.all(
      [0, 1].map(() =>
        pipeline(
          throttle.stream(Readable.from(Array.from({ length: 12 }, () => chunk))),
          new Writable({
            write(c: Buffer, _e, cb) {
              received += c.length;
              cb();
            },
          }),
        ),
      ),
    );
    expect(received).toBe(384 * 1024);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
  });

  it("passes a stream unchanged without a rate", () => {
    const s = Readable.from([Buffer.from("x")]);
    expect(new Throttle({ maxParallelPerRegistry: 1 }).stream(s)).toBe(s);
  });

  it("stops waiting when the signal aborts", async () => {
    const limiter = new RateLimiter(1024, 1024);
    await limiter.take(1024);
    const controller = new AbortController();
    const waiting = limiter.take(10 * 1024, controller.signal);
    controller.abort(new Error("cancelled"));
    await expect(waiting).rejects.toThrow("cancelled");
  });

  it("carries a source error to the reader", async () => {
    const throttle = new Throttle({ bytesPerSecond: 1024 * 1024 });
    const failing = new Readable({
      read() {
        this.destroy(new Error("connection reset"));
      },
    });
    await expect(pipeline(throttle.stream(failing), new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow("connection reset");
  });
});
