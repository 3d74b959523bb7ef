// Loads the CLI bundle (apps/airlock/dist/bundle/*.cjs, CommonJS; scripts/build-cli.mjs) on Node
// with a V8 code cache, the way `module.enableCompileCache()` does on Node 22 and later, which
// Node 20 lacks. Compiling the bundle's ~600 KiB costs ~40 ms of every `airlock import`; with the
// code V8 kept from an earlier run, it costs a few.
//
// Each file is compiled by node:vm as a CommonJS module (the wrapper Node gives one) with the
// code V8 produced for the same text by an earlier run, when there is one. The first run that
// loads a file keeps V8's code for it when it exits, including the functions the run compiled.
//
// The cache is a directory of one file per (bundle file, content, Node version, architecture):
//   AIRLOCK_COMPILE_CACHE=DIR   the directory (default $XDG_CACHE_HOME/airlock/compile-cache,
//                               ~/.cache when XDG_CACHE_HOME is unset); 0 turns the cache off
// Entries are named after a hash of the file's text: V8 checks only a source's length, so a
// changed file of the same length must not find the old code. A directory that another user owns
// or may write to is not used (its code would run as airlock). Entries are removed 30 days after
// they were written; an unwritable directory only means no cache.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, join } from "node:path";
import { Script } from "node:vm";

/** How long an entry stays after it was written (runs that use it do not renew it). */
const KEEP_MS = 30 * 24 * 60 * 60 * 1000;
/** How long a temporary file of a write that did not finish may stay. */
const KEEP_TMP_MS = 60 * 60 * 1000;

/**
 * compileCacheDir names the code cache's directory for `env`: AIRLOCK_COMPILE_CACHE, else
 * airlock/compile-cache under $XDG_CACHE_HOME or ~/.cache; undefined when the cache is off
 * (AIRLOCK_COMPILE_CACHE=0, or no home directory).
 */
export function compileCacheDir(env = process.env) {
  const set = env.AIRLOCK_COMPILE_CACHE;
  if (set === "0") return undefined;
  if (set) return set;
  // The XDG base directory spec: a relative XDG_CACHE_HOME is invalid and to be ignored.
  if (env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME)) return join(env.XDG_CACHE_HOME, "airlock", "compile-cache");
  let home = "";
  try {
    home = homedir();
  } catch {}
  return home ? join(home, ".cache", "airlock", "compile-cache") : undefined;
}

/**
 * loadBundle runs the bundle's entry file (CommonJS) and returns its exports, with `stats` (how
 * many files were compiled from the cache, without it, or with an entry V8 refused) and `save()`,
 * which writes the code of the files compiled without the cache (call it when the run ends, so
 * the code includes what the run compiled). `cacheDir` undefined runs without a cache.
 */
export function loadBundle(entry, cacheDir) {
  // Read entries only from a usable directory; write them also where it does not exist yet.
  const state = dirState(cacheDir);
  const stats = { hits: 0, misses: 0, rejected: 0 };
  /** Files compiled without usable code: their scripts and where their entries go. */
  const fresh = [];
  const modules = new Map();
  const nodeRequire = createRequire(entry);

  function load(file) {
    const known = modules.get(file);
    if (known) return known.exports;
    const module = { id: file, filename: file, exports: {}, loaded: false };
    modules.set(file, module);
    const source = readFileSync(file, "utf8");
    const key = state !== "refused" && join(cacheDir, entryName(file, source));
    let cachedData;
    if (state === "usable") {
      try {
        cachedData = readFileSync(key);
      } catch {}
    }
    // The wrapper starts on the file's first line, so that line numbers in stack traces hold.
    const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
    if (cachedData && !script.cachedDataRejected) stats.hits++;
    else {
      if (cachedData) stats.rejected++;
      else stats.misses++;
      if (key) fresh.push({ script, key });
    }
    const require = (spec) => (spec.startsWith("./") ? load(join(dirname(file), spec)) : nodeRequire(spec));
    require.resolve = nodeRequire.resolve;
    script.runInThisContext().call(module.exports, module.exports, require, module, file, dirname(file));
    module.loaded = true;
    return module.exports;
  }

  const exports = load(entry);
  return {
    exports,
    stats,
    save() {
      if (!fresh.length) return;
      try {
        mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
        if (dirState(cacheDir) !== "usable") return;
        for (const { script, key } of fresh.splice(0)) {
          const tmp = `${key}.${process.pid}.tmp`;
          writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
          renameSync(tmp, key);
        }
        prune(cacheDir);
      } catch {
        // No cache this time (a read-only home, a full disk): the run itself is done.
      }
    },
  };
}

/** The entry's file name: the bundle file's name and a hash of its text and of this V8. */
function entryName(file, source) {
  const hash = createHash("sha256").update(`${process.version} ${process.arch}\n`).update(source).digest("hex").slice(0, 24);
  return `${basename(file)}.${hash}.v8`;
}

/**
 * dirState says whether `dir` may hold the cache: "usable" when it is a directory of this user's
 * that no other user may write to, "missing" when it does not exist (yet), else "refused".
 */
function dirState(dir) {
  if (!dir) return "refused";
  try {
    const st = statSync(dir);
    const uid = process.getuid?.();
    return st.isDirectory() && (uid === undefined || st.uid === uid) && (st.mode & 0o022) === 0 ? "usable" : "refused";
  } catch (err) {
    return err?.code === "ENOENT" ? "missing" : "refused";
  }
}

/** Removes entries written more than KEEP_MS ago and temporary files of writes that died. */
function prune(dir) {
  const now = Date.now();
  for (const name of readdirSync(dir)) {
    const tmp = name.endsWith(".tmp");
    if (!tmp && !name.endsWith(".v8")) continue;
    const path = join(dir, name);
    try {
      if (now - statSync(path).mtimeMs > (tmp ? KEEP_TMP_MS : KEEP_MS)) rmSync(path, { force: true });
    } catch {}
  }
}
