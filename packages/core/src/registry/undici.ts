/**
 * The two pieces of undici the registry client uses — `Agent` and `request` — loaded on first use
 * and from their own modules. undici's index loads everything (fetch, WebSocket, caches, mocks):
 * about 3× the start-up CPU (~230 ms against ~75 ms here), which every CLI run would pay, registry
 * or not. If undici's file layout ever changes, the index is loaded instead.
 *
 * Always by file path, never the bare name: Bun answers a bare "undici" with its own stub whose
 * Agent ignores TLS options and has no close(); a path loads the real undici on Node, Bun and Deno.
 */
import { createRequire } from "node:module";
import type { Agent, Dispatcher } from "undici";

/** What the registry client needs from undici. */
export interface UndiciParts {
  Agent: typeof Agent;
  /** `Dispatcher.request` on `dispatcher` for an absolute URL. */
  request(dispatcher: Dispatcher, url: URL, options: Omit<Dispatcher.RequestOptions, "origin" | "path">): Promise<Dispatcher.ResponseData>;
}

type RequestFn = (this: Dispatcher, options: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;

let parts: UndiciParts | undefined;

/** Returns undici's Agent and request, loading them the first time. */
export function undici(): UndiciParts {
  if (parts) return parts;
  // Bun has a global require, and `bun build --compile` bundles only what a literal require()
  // names (never what a createRequire function loads); Node's and Deno's ES modules have none —
  // except in the CLI's bundle (scripts/build-cli.mjs), which defines one and maps these paths.
  const bun = typeof require === "function";
  const nodeRequire = bun ? require : createRequire(import.meta.url);
  try {
    const AgentClass = (bun ? require("undici/lib/dispatcher/agent.js") : nodeRequire("undici/lib/dispatcher/agent.js")) as typeof Agent;
    const apiRequest = (bun ? require("undici/lib/api/api-request.js") : nodeRequire("undici/lib/api/api-request.js")) as RequestFn;
    if (typeof AgentClass !== "function" || typeof apiRequest !== "function") throw new Error("unexpected undici layout");
    parts = {
      Agent: AgentClass,
      request: (dispatcher, url, options) => apiRequest.call(dispatcher, { ...options, origin: url.origin, path: `${url.pathname}${url.search}` }),
    };
  } catch {
    const full = (bun ? require("undici/index.js") : nodeRequire("undici/index.js")) as typeof import("undici");
    parts = { Agent: full.Agent, request: (dispatcher, url, options) => full.request(url, { ...options, dispatcher }) };
  }
  // After loading undici, whose code the bin's code cache can then keep (see below), and before
  // its parser is compiled, which undici does on its first connection.
  if (process.versions?.bun === undefined) baselineWasmOnly(nodeRequire);
  return parts;
}

/**
 * Has V8 compile WebAssembly — undici's HTTP parser, llhttp — with its baseline compiler only. By
 * default V8 recompiles hot wasm functions with TurboFan on a background thread, and Node waits
 * for those compilations before it exits: after a run of many small requests (a no-op sync or
 * import) that held the exit 0.2–1 s on a loaded 2-core machine, for a parser that is not the
 * bottleneck (a body of known length passes through it in one step). Node only: on Deno the flag
 * is not V8's to set at run time, and Bun does not run V8.
 *
 * Code that V8 compiles after the change no longer fits a cache made before it: the bin's code
 * cache (apps/airlock/bin/load-bundle.js) takes its code when `airlock:before-v8-flags` is emitted.
 */
function baselineWasmOnly(nodeRequire: NodeJS.Require): void {
  if (typeof process === "undefined" || process.versions?.deno !== undefined) return;
  try {
    (process as NodeJS.EventEmitter).emit("airlock:before-v8-flags");
    (nodeRequire("node:v8") as typeof import("node:v8")).setFlagsFromString("--liftoff-only");
  } catch {
    // Not settable here: the default tiering is only slower to exit.
  }
}
