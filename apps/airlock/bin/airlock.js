#!/usr/bin/env node
// The airlock command, on Node, Bun and Deno. `npm ci` (the root `prepare` script) compiles the
// TypeScript (`tsc -b`) and bundles the result (scripts/build-cli.mjs) into dist/bundle/, which
// starts in a fraction of the time (a few files instead of ~200 modules). When the bundle is
// missing, or a `tsc -b` has rebuilt a package since it was made (its stamp.json records the
// builds it came from), the unbundled dist/cli.js runs instead: slower to start, same code.
// AIRLOCK_NO_BUNDLE=1 also runs dist/cli.js (to compare, or to debug with the original files).
// The bundle is CommonJS: Node compiles it with a code cache (load-bundle.js), Bun and Deno
// require() it.
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { compileCacheDir, loadBundle } from "./load-bundle.js";
import { run } from "./run.js";

const bundle = new URL("../dist/bundle/", import.meta.url);

/** Reports whether dist/bundle/ holds a bundle of the current build. */
function bundleIsCurrent() {
  if (process.env.AIRLOCK_NO_BUNDLE) return false;
  try {
    const stamp = JSON.parse(readFileSync(new URL("stamp.json", bundle), "utf8"));
    for (const [path, built] of Object.entries(stamp.inputs)) {
      const now = mtimeOf(new URL(path, bundle));
      // Runtimes differ in mtime precision (Node has fractions of a millisecond, Deno has not).
      if (now === null ? built !== null : built === null || Math.abs(now - built) >= 1) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function mtimeOf(url) {
  try {
    return statSync(url).mtimeMs;
  } catch {
    return null;
  }
}

/** Loads the bundle's entry; on Node with the code cache, whose entries are written at exit. */
function loadCurrentBundle() {
  const entry = fileURLToPath(new URL("cli.cjs", bundle));
  if (process.versions.bun || process.versions.deno) return createRequire(import.meta.url)(entry);
  const loaded = loadBundle(entry, compileCacheDir());
  process.once("exit", loaded.save);
  return loaded.exports;
}

const { main } = bundleIsCurrent() ? loadCurrentBundle() : await import("../dist/cli.js");
run(main);
