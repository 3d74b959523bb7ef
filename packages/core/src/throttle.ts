/**
 * Throttling blob transfers across a whole run (`--max-parallel`, `--rate-limit`): one
 * {@link Throttle} is made per command and handed to every copy, export, import or sync image in
 * it, so its limits hold across images, not per image.
 *
 * - A per-registry cap: at most N blob transfers touch one registry host at once. A transfer that
 *   reads from one registry and writes to another holds a slot at each (taken in name order, so two
 *   transfers can never wait on each other's slot).
 * - A byte rate: one token bucket shared by every blob stream of the run, downloads and uploads
 *   alike (a registry-to-registry copy moves each byte once: it is counted once).
 *
 * No npm package fits both (a shared bucket applied to Node streams, and the same code on Node,
 * Bun and Deno), so this is a small Transform over `node:stream` and the run-wide limiter of
 * progress.ts.
 */
import { Transform, type Readable } from "node:stream";
import { AirlockError } from "./errors.js";
import { limiter } from "./progress.js";
import type { ImageReference } from "./transports/types.js";

/** Options of {@link Throttle}. */
export interface ThrottleOptions {
  /** Blob transfers at once per registry host (`--max-parallel`); undefined: no cap beyond each command's own concurrency. */
  maxParallelPerRegistry?: number | undefined;
  /** Bytes per second for all blob streams together (`--rate-limit`); undefined: unlimited. */
  bytesPerSecond?: number | undefined;
}

/**
 * A token bucket of bytes shared by many streams: `take(n)` resolves when `n` bytes may pass. The
 * bucket holds at most `burst` bytes (default a tenth of a second's worth, at least 16 KiB) and may
 * go into debt, so a chunk larger than the bucket waits its share and concurrent takers are served
 * in turn: over any period the bytes that pass are at most `burst + rate × time`.
 */
export class RateLimiter {
  /** Bytes per second. */
  readonly rate: number;
  /** Most bytes that may pass at once after an idle spell. */
  readonly burst: number;
  private tokens: number;
  private last: number;

  constructor(bytesPerSecond: number, burst = Math.max(16 * 1024, Math.floor(bytesPerSecond / 10))) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new AirlockError("ERR_INVALID_ARGUMENT", `a rate limit must be a positive number of bytes per second, got ${bytesPerSecond}`);
    this.rate = bytesPerSecond;
    this.burst = burst;
    this.tokens = burst;
    this.last = performance.now();
  }

  /** Resolves when `n` bytes may pass (rejects with the signal's reason when it aborts first). */
  take(n: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    this.tokens -= n;
    if (this.tokens >= 0) return Promise.resolve();
    const waitMs = (-this.tokens * 1000) / this.rate;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, waitMs);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** A pass-through stream whose chunks wait for their bytes in this bucket. */
  transform(signal?: AbortSignal): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        this.take(chunk.length, signal).then(
          () => callback(null, chunk),
          (err: unknown) => callback(err instanceof Error ? err : new AirlockError("ERR_ABORTED", "the transfer was cancelled")),
        );
      },
    });
  }
}

/** The registry host a reference reads from or writes to (`registry.example.com:5000`), or undefined for a local transport. */
export function registryHostOf(ref: ImageReference): string | undefined {
  if (ref.transport.name !== "docker") return undefined;
  return ref.dockerReference()?.split("/")[0];
}

/** The limits of one run's blob transfers: a slot per registry host and a shared byte rate. */
export class Throttle {
  /** The per-registry cap, or undefined. */
  readonly maxParallelPerRegistry: number | undefined;
  /** The shared bucket, or undefined when the rate is not limited. */
  readonly rate: RateLimiter | undefined;
  private readonly hosts = new Map<string, <T>(fn: () => Promise<T>) => Promise<T>>();

  constructor(options: ThrottleOptions = {}) {
    const max = options.maxParallelPerRegistry;
    if (max !== undefined && (!Number.isInteger(max) || max < 1)) throw new AirlockError("ERR_INVALID_ARGUMENT", `the number of parallel transfers per registry must be a positive integer, got ${max}`);
    this.maxParallelPerRegistry = max;
    this.rate = options.bytesPerSecond === undefined ? undefined : new RateLimiter(options.bytesPerSecond);
  }

  /**
   * Runs one blob transfer between `refs` (its source and destination) once a slot is free at every
   * registry host among them; slots are taken in host-name order and held until `fn` settles.
   */
  transfer<T>(refs: readonly ImageReference[], fn: () => Promise<T>): Promise<T> {
    if (this.maxParallelPerRegistry === undefined) return fn();
    const hosts = [...new Set(refs.map(registryHostOf).filter((h): h is string => h !== undefined))].sort();
    let run = fn;
    for (const host of hosts.reverse()) {
      const inner = run;
      run = () => this.slot(host)(inner);
    }
    return run();
  }

  /** `stream`, rate-limited when a rate is set (the same stream otherwise). Errors of either end reach the other. */
  stream(stream: Readable, signal?: AbortSignal): Readable {
    if (!this.rate) return stream;
    const limited = this.rate.transform(signal);
    stream.on("error", (err) => limited.destroy(err));
    limited.on("close", () => {
      if (!stream.readableEnded) stream.destroy();
    });
    return stream.pipe(limited);
  }

  private slot(host: string): <T>(fn: () => Promise<T>) => Promise<T> {
    let s = this.hosts.get(host);
    if (!s) {
      s = limiter(this.maxParallelPerRegistry as number);
      this.hosts.set(host, s);
    }
    return s;
  }
}

const RATE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * Parses a transfer rate in bytes per second: `500K`, `10M`, `1G` (binary units), and the same with
 * `B`, `iB` or `/s` (`10MB/s`, `1.5MiB/s`), or plain bytes (`2000000`). Throws ERR_INVALID_ARGUMENT.
 */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?(?:\/s|ps)?$/i.exec(text.trim());
  const bytes = m ? Math.floor(Number(m[1]) * (RATE_UNITS[(m[2] ?? "").toLowerCase()] as number)) : 0;
  if (!m || bytes < 1) throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid rate ${JSON.stringify(text)}: give bytes per second, e.g. 500K, 10M, 1G or 10MB/s (K, M, G are 1024-based)`);
  return bytes;
}
