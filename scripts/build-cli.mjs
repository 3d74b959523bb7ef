#!/usr/bin/env node
// Bundles the airlock CLI for a short start-up (`npm run build:cli`; the root `prepare` script
// runs it after `tsc -b`, so `npm ci` leaves a current bundle). Input: the JavaScript that
// `tsc -b apps/airlock` wrote (apps/airlock/dist and packages/*/dist); output:
// apps/airlock/dist/bundle/, which apps/airlock/bin/airlock.js loads instead of dist/cli.js.
//
// Why: unbundled, every run resolves and compiles ~150 ES modules and undici's, yaml's and
// commander's CommonJS files before doing anything (~200 ms of CPU, paid once per image by a
// script that runs airlock per image). Bundled, a run reads a few minified files:
//
//   cli.cjs            the entry (the verb dispatcher, commander); `--version` needs nothing else
//   <verb>-HASH.cjs    one chunk per verb module (cli.ts imports each verb's module on demand)
//   chunk-HASH.cjs     code shared by several verbs (@airlock/core, yaml, …), loaded with them
//   openpgp-HASH.cjs   OpenPGP, loaded only when something is signed or verified
//   undici-HASH.cjs    the two pieces of undici the registry client uses (Agent, request; HTTP/1.1
//                      only, see below), loaded by its first registry request (core's
//                      registry/undici.ts require()s them)
//   stamp.json         what the bundle was built from: the bin falls back to dist/cli.js when a
//                      later `tsc -b` rebuilt a package (the bundle is then stale)
//
// The files are CommonJS: esbuild splits the code as ES modules, then each file is turned into
// CommonJS (`import` → `require`, in strict mode as before). On Node the bin compiles them
// through node:vm with a V8 code cache (apps/airlock/bin/load-bundle.js), which Node 20 offers for
// scripts but not for ES modules: compiling the ~600 KiB an import needs took ~40 ms of every run.
//
// Every dependency is inlined; node: built-ins stay require()s. Identifiers are kept (stack traces
// with --debug stay readable, and commander names its errors after their classes).
// Writing is safe while airlock runs: chunks are content-addressed and written before the entry
// and stamp, which are replaced by rename; chunks of earlier builds are removed after an hour.
//
//   node scripts/build-cli.mjs [--out-dir DIR] [--metafile] [--quiet]
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";
import * as esbuild from "esbuild";
import { wrapCommonJS } from "../apps/airlock/bin/load-bundle.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const app = join(root, "apps", "airlock");
const args = process.argv.slice(2);
let outDir = join(app, "dist", "bundle");
let quiet = false;
let metafile = false;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--out-dir") outDir = resolve(args[++i]);
  else if (args[i] === "--quiet") quiet = true;
  else if (args[i] === "--metafile") metafile = true;
  else {
    console.error(`build-cli: unknown argument ${args[i]} (use --out-dir DIR, --metafile, --quiet)`);
    process.exit(2);
  }
}

/** The builds the bundle is made from: tsc rewrites a project's .tsbuildinfo whenever it emits. */
const INPUTS = [join(app, "tsconfig.tsbuildinfo"), ...["core", "sign", "registry"].map((p) => join(root, "packages", p, "tsconfig.tsbuildinfo"))];
/** How long files of an earlier build are kept for airlock processes that may still load them. */
const KEEP_OLD_MS = 60 * 60 * 1000;

const entry = join(app, "dist", "cli.js");
const common = { bundle: true, platform: "node", target: "node20", minifyWhitespace: true, minifySyntax: true, legalComments: "none", logLevel: "warning", write: false, absWorkingDir: root };

// Snapshot the inputs' times before reading any JavaScript: a `tsc -b` that finishes while we
// build then makes the stamp disagree, and the bin uses dist/ until the next build.
const inputs = Object.fromEntries(INPUTS.map((p) => [relative(outDir, p), mtimeOf(p)]));

// 1. undici's Agent and request as one CommonJS file, loaded by require() on first use.
// Without HTTP/2: undici speaks it only when a client sets `allowH2` (its ALPN then offers h2),
// which airlock never does, yet client.js loads client-h2.js and with it node:http2 (~15 ms of a
// 45 ms load). The stub stands in for it and says so should a server ever negotiate h2.
const noHttp2 = {
  name: "undici-no-http2",
  setup(build) {
    build.onResolve({ filter: /^\.\/client-h2\.js$/ }, (a) => (a.importer.includes(join("undici", "lib", "dispatcher")) ? { path: a.path, namespace: "undici-no-h2" } : undefined));
    build.onLoad({ filter: /.*/, namespace: "undici-no-h2" }, () => ({
      contents: 'module.exports = function connectH2() { throw new Error("the server chose HTTP/2, which this build of airlock does not speak"); };',
      loader: "js",
    }));
  },
};
const undiciBuild = await esbuild.build({
  ...common,
  plugins: [noHttp2],
  format: "cjs",
  stdin: {
    contents: 'module.exports = { Agent: require("undici/lib/dispatcher/agent.js"), request: require("undici/lib/api/api-request.js") };',
    resolveDir: root,
    sourcefile: "undici-parts.cjs",
  },
  outfile: join(outDir, "undici.cjs"),
});
const undiciCode = undiciBuild.outputFiles[0].contents;
// The bin compiles this file through node:vm, which has no loader for import(): there must be none.
if (/\bimport\(/.test(undiciBuild.outputFiles[0].text)) throw new Error("build-cli: undici's bundle has a dynamic import(), which the bin's loader cannot run");
const undiciFile = `undici-${createHash("sha256").update(undiciCode).digest("hex").slice(0, 8).toUpperCase()}.cjs`;

// 2. The CLI, split by dynamic import. core's registry/undici.ts require()s undici's files by
// path; in the bundle each path becomes a tiny module that takes its part from the file above.
const undiciParts = {
  name: "undici-parts",
  setup(build) {
    build.onResolve({ filter: /^undici\/lib\/(dispatcher\/agent|api\/api-request)\.js$/ }, (a) => ({ path: a.path, namespace: "undici-part" }));
    build.onLoad({ filter: /.*/, namespace: "undici-part" }, (a) => ({
      contents: `module.exports = require("./${undiciFile}").${a.path.includes("agent") ? "Agent" : "request"};`,
      loader: "js",
    }));
    // The whole of undici is only registry/undici.ts's fallback for an unknown undici layout,
    // which cannot happen in a bundle built against a known one: leave it to node_modules.
    build.onResolve({ filter: /^undici(\/index\.js)?$/ }, (a) => ({ path: a.path, external: true }));
    build.onResolve({ filter: /^\.\/undici-[0-9A-Z]+\.cjs$/ }, (a) => ({ path: a.path, external: true }));
  },
};
// The CLI's errors.js needs only core's errors.js (isAirlockError, isNotFound), but imports them
// from core's index, whose side effects (registering every transport) would then make the entry
// load all of core before knowing the verb. Take them from core's errors.js, the module that the
// index re-exports them from: the same module, so `instanceof AirlockError` still holds.
const coreErrors = {
  name: "core-errors",
  setup(build) {
    build.onResolve({ filter: /^@airlock\/core$/ }, (a) => (a.importer === join(app, "dist", "errors.js") ? { path: join(root, "packages", "core", "dist", "errors.js") } : undefined));
  },
};
// commander require()s node:child_process when it loads, for the executable subcommands airlock
// does not have (~1.5 ms of every run, with node:dgram): give it a stand-in that loads the module
// on first use.
const lazyChildProcess = {
  name: "lazy-child-process",
  setup(build) {
    build.onResolve({ filter: /^(node:)?child_process$/ }, (a) => (a.importer.includes(join("node_modules", "commander")) ? { path: "child_process", namespace: "lazy-builtin" } : undefined));
    build.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, () => ({
      contents: 'let m; module.exports = new Proxy({}, { get: (_, key) => (m ??= require("node:child_process"))[key] });',
      loader: "js",
    }));
  },
};
const cli = await esbuild.build({
  ...common,
  format: "esm",
  splitting: true,
  entryPoints: { cli: entry },
  outdir: outDir,
  outExtension: { ".js": ".cjs" },
  entryNames: "[name]",
  chunkNames: "[name]-[hash]",
  metafile: true,
  plugins: [undiciParts, coreErrors, lazyChildProcess],
});

// 3. Each ES module chunk as CommonJS. esbuild splits only ES modules; turned into CommonJS, its
// chunks can be compiled with a code cache (see above). Static imports become require() calls,
// dynamic ones `Promise.resolve().then(() => require(…))`, exports getters on module.exports,
// so live bindings between chunks still hold. The chunks stay in strict mode, as ES modules are.
// import.meta.url (core reads its package.json beside it) becomes the file's own URL.
const META_URL = "__airlock_import_meta_url";
async function toCommonJS(name, code) {
  const r = await esbuild.transform(code, {
    format: "cjs",
    platform: "node",
    target: "node20",
    supported: { "dynamic-import": false },
    define: { "import.meta.url": META_URL },
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: "silent",
  });
  // A warning here is code that would behave differently as CommonJS (import.meta other than
  // .url becomes an empty object): fail rather than ship it.
  if (r.warnings.length) throw new Error(`build-cli: ${name} as CommonJS: ${r.warnings.map((w) => w.text).join("; ")}`);
  const meta = r.code.includes(META_URL) ? `var ${META_URL}=require("node:url").pathToFileURL(__filename).href;` : "";
  const out = `"use strict";${meta}${r.code}`;
  // Compile it as Node wraps a CommonJS file: a top-level `const require` or `let module` would
  // only fail when a run loads the chunk; here it fails the build.
  new Script(wrapCommonJS(out), { filename: name });
  return out;
}

// 4. Write: chunks first (content-addressed, so an unchanged one is left alone), then the entry
// and the stamp by rename; then remove what earlier builds left that is older than KEEP_OLD_MS.
mkdirSync(outDir, { recursive: true });
const written = new Set();
const put = (name, data) => {
  const path = join(outDir, name);
  written.add(name);
  try {
    if (Buffer.compare(readFileSync(path), Buffer.from(data)) === 0) return;
  } catch {}
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
};
put(undiciFile, undiciCode);
const outputs = await Promise.all(cli.outputFiles.map(async (f) => ({ name: relative(outDir, f.path), data: await toCommonJS(relative(outDir, f.path), f.text) })));
for (const f of outputs) if (f.name !== "cli.cjs") put(f.name, f.data);
for (const f of outputs) if (f.name === "cli.cjs") put(f.name, f.data);
put("stamp.json", `${JSON.stringify({ entry: "cli.cjs", inputs }, null, 2)}\n`);
if (metafile) put("meta.json", JSON.stringify(cli.metafile));
const now = Date.now();
for (const name of readdirSync(outDir)) {
  if (written.has(name)) continue;
  const old = join(outDir, name);
  if (now - statSync(old).mtimeMs > KEEP_OLD_MS) rmSync(old, { force: true });
}

if (!quiet) {
  const total = outputs.reduce((n, f) => n + Buffer.byteLength(f.data), undiciCode.length);
  const closure = (path, seen = new Set()) => {
    if (seen.has(path)) return seen;
    seen.add(path);
    for (const i of cli.metafile.outputs[path]?.imports ?? []) if (i.kind === "import-statement" && !i.external) closure(i.path, seen);
    return seen;
  };
  const startup = [...closure(relative(root, join(outDir, "cli.cjs")))].reduce((n, p) => n + cli.metafile.outputs[p].bytes, 0);
  console.log(`build-cli: ${relative(root, outDir)}: ${outputs.length + 1} files, ${(total / 1024).toFixed(0)} KiB; cli.cjs loads ${(startup / 1024).toFixed(0)} KiB before a verb`);
}

function mtimeOf(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return null;
  }
}
