/**
 * Node built-ins that most runs never use, loaded on their first use rather than with airlock.
 * Each costs a run 1–2 ms to load (node:tls, node:zlib, node:child_process, node:worker_threads):
 * `airlock import` with everything present, a 0.3 s job, would pay ~5 ms for nothing. Only the
 * modules are lazy; their types are imported as usual (`import type`).
 */
import type * as ChildProcess from "node:child_process";
import { createRequire } from "node:module";
import type * as Tls from "node:tls";
import type * as WorkerThreads from "node:worker_threads";
import type * as Zlib from "node:zlib";

const load = createRequire(import.meta.url);

/** Returns a function that loads the built-in `name` on its first call and returns it. */
function lazy<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= load(name) as T;
    return loaded;
  };
}

/** node:child_process, loaded on first use (credential helpers, storage lock helpers). */
export const childProcess = lazy<typeof ChildProcess>("node:child_process");
/** node:tls, loaded on first use (the first HTTPS connection or TLS setting). */
export const tls = lazy<typeof Tls>("node:tls");
/** node:worker_threads, loaded on first use (the hash worker). */
export const workerThreads = lazy<typeof WorkerThreads>("node:worker_threads");
/** node:zlib, loaded on first use (layer compression and decompression). */
export const zlib = lazy<typeof Zlib>("node:zlib");
