/**
 * `--max-parallel` and `--rate-limit`: the run-wide limits on blob transfers, shared by every image
 * a command moves (copy, sync, export, import). They map onto one @airlock/core Throttle.
 */
import { isAirlockError, parseRate, Throttle } from "@airlock/core";
import type { Command } from "commander";
import { UsageError } from "./errors.js";

/** Adds `--max-parallel N` and `--rate-limit RATE` to `cmd`. */
export function addThrottleFlags(cmd: Command): Command {
  return cmd
    .option("--max-parallel <n>", "blob transfers at once per registry host, across all images of the run", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--max-parallel takes a whole number ≥ 1, got ${JSON.stringify(v)}`);
      return n;
    })
    .option("--rate-limit <rate>", "bytes per second for all blob transfers together, e.g. 500K, 10M, 1G, 10MB/s (1024-based)", (v) => {
      try {
        return parseRate(v);
      } catch (err) {
        throw isAirlockError(err) ? new UsageError(`--rate-limit: ${err.message}`) : err;
      }
    });
}

/** The Throttle the flags ask for, or undefined when neither is given. */
export function throttleFrom(opts: Record<string, unknown>): Throttle | undefined {
  const maxParallelPerRegistry = opts.maxParallel as number | undefined;
  const bytesPerSecond = opts.rateLimit as number | undefined;
  if (maxParallelPerRegistry === undefined && bytesPerSecond === undefined) return undefined;
  return new Throttle({ maxParallelPerRegistry, bytesPerSecond });
}

/** `{ throttle }` when the flags ask for one, else `{}`: spread into copy, sync, export or import options. */
export function withThrottle(opts: Record<string, unknown>): { throttle?: Throttle } {
  const throttle = throttleFrom(opts);
  return throttle ? { throttle } : {};
}
