// Loads the CLI bundle (apps/airlock/dist/bundle/*.cjs, CommonJS; scripts/build-cli.mjs) on Node
// with a V8 code cache, the way `module.enableCompileCache()` does on Node 22 and later, which
// Node 20 lacks. Compiling the bundle's ~600 KiB costs ~40 ms of every `airlock import`; with the
// code V8 kept from an earlier run, it costs a few.
//
// Each file is compiled by node:vm as a CommonJS module (the wrapper Node gives one) with the
// code V8 produced for the same text by an earlier run, when there is one. The first run that
// loads a file keeps V8's code for it when it exits, including the functions the run compiled.
//
// The cache is a directory of one file per (bundle file, content, Node version and flags):
//   AIRLOCK_COMPILE_CACHE=DIR   the directory, an absolute path (default: airlock/compile-cache
//                               in $XDG_CACHE_HOME, or ~/.cache); 0 turns the cache off
// What makes it safe to run code from it:
// - An entry is named after a hash of the file's path and text (and of the wrapper, Node's version
//   and flags): V8 checks only a source's length, so a changed file must not find the old code
//   (and V8 keeps the path it was made for, which stack traces would show).
// - An entry holds a sha256 of its name and V8's data, checked before V8 sees it: release builds
//   of V8 do not checksum cached data, and a damaged entry can crash every later run.
// - A directory or entry that another user owns or may write to is not used (its code would run
//   as airlock); the directory is created only under one of this user's own.
// - V8 refuses data made under other V8 flags. airlock sets one during a run (undici's parser,
//   registry/undici.ts), which emits BEFORE_V8_FLAGS first: the code is taken then, and what is
//   compiled after the change is not kept.
// - Entries are written under a fresh temporary name and renamed; those of other builds go 30
//   days after they were written, or sooner when the directory outgrows MAX_BYTES.
// An unusable or unwritable directory only means no cache.
import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, join } from "node:path";
import { Script } from "node:vm";

/** The event airlock emits on `process` just before it changes V8's flags (see above). */
export const BEFORE_V8_FLAGS = "airlock:before-v8-flags";
/** Where an entry starts: the format's name and version. */
const MAGIC = Buffer.from("airlock-v8-cache 1\n");
/** How an entry is named: the bundle file's name, a hash, `.v8`; `.RANDOM.tmp` while written. */
const ENTRY = /^[\w.-]+\.cjs\.[0-9a-f]{24}\.v8(\.[0-9a-f]{16}\.tmp)?$/;
/** How long an entry stays after it was written (runs that use it do not renew it). */
const KEEP_MS = 30 * 24 * 60 * 60 * 1000;
/** How long a temporary file of a write that did not finish may stay. */
const KEEP_TMP_MS = 60 * 60 * 1000;
/** The most the entries may take together; the oldest go first. */
const MAX_BYTES = 64 * 1024 * 1024;
/** The CommonJS wrapper, as Node's. It starts on the file's first line, so line numbers hold. */
const WRAPPER = ["(function (exports, require, module, __filename, __dirname) {", "\n})"];

/** wrapCommonJS returns a CommonJS file's `text` in the function Node wraps a module in. */
export function wrapCommonJS(text) {
  return `${WRAPPER[0]}${text}${WRAPPER[1]}`;
}

/**
 * compileCacheDir names the code cache's directory for `env`: AIRLOCK_COMPILE_CACHE when it is an
 * absolute path, else airlock/compile-cache under $XDG_CACHE_HOME or ~/.cache; undefined when
 * the cache is off (AIRLOCK_COMPILE_CACHE=0, or no home directory). Any other value (`1`, `on`)
 * means the default, not a directory under the current one.
 */
export function compileCacheDir(env = process.env) {
  const set = env.AIRLOCK_COMPILE_CACHE;
  if (set === "0") return undefined;
  if (set && isAbsolute(set)) return set;
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
 * many files were compiled from the cache, without it, or with an entry that V8 or the checksum
 * refused) and `save()`, which writes the code of the files compiled without a usable entry (call
 * it when the run ends, so that the code includes what the run compiled). `cacheDir` undefined
 * runs without a cache.
 */
export function loadBundle(entry, cacheDir) {
  // Read entries only from a usable directory; write them also where it does not exist yet.
  const state = dirState(cacheDir);
  const stats = { hits: 0, misses: 0, rejected: 0 };
  /** Files compiled without usable code: their scripts, where their entries go, V8's data. */
  const fresh = [];
  const modules = new Map();
  const nodeRequire = createRequire(entry);
  const flags = state === "refused" ? undefined : flagProbe();
  const takeCode = () => {
    for (const f of fresh) f.data ??= f.script.createCachedData();
  };
  if (flags) process.once(BEFORE_V8_FLAGS, takeCode);

  function load(file) {
    const known = modules.get(file);
    if (known) return known.exports;
    const module = { id: file, filename: file, exports: {}, loaded: false };
    modules.set(file, module);
    try {
      const text = readFileSync(file);
      const source = wrapCommonJS(text.toString("utf8"));
      const key = state !== "refused" && join(cacheDir, entryName(file, text));
      const cached = state === "usable" ? readEntry(key) : undefined;
      const script = new Script(source, { filename: file, columnOffset: -WRAPPER[0].length, cachedData: cached || undefined });
      if (cached && !script.cachedDataRejected) stats.hits++;
      else {
        if (cached === undefined) stats.misses++;
        else stats.rejected++;
        if (key) fresh.push({ script, key, data: undefined });
      }
      const require = (spec) => (spec.startsWith("./") ? load(join(dirname(file), spec)) : nodeRequire(spec));
      require.resolve = nodeRequire.resolve;
      script.runInThisContext().call(module.exports, module.exports, require, module, file, dirname(file));
    } catch (err) {
      modules.delete(file); // as Node does: a later require() tries again
      throw err;
    }
    module.loaded = true;
    return module.exports;
  }

  const exports = load(entry);
  return {
    exports,
    stats,
    save() {
      process.off(BEFORE_V8_FLAGS, takeCode);
      if (!fresh.length || !flags) return;
      // Code made under flags that changed since start-up would be refused by the next run.
      if (!flags.changed()) takeCode();
      const ready = fresh.splice(0).filter((f) => f.data);
      if (!ready.length) return;
      try {
        if (dirState(cacheDir) === "missing" && ownsNearestParent(cacheDir)) mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
        if (dirState(cacheDir) !== "usable") return;
        for (const { key, data } of ready) {
          try {
            writeEntry(key, data);
          } catch {
            // This one stays uncached (say, a directory where it goes); the others need not.
          }
        }
        prune(cacheDir);
      } catch {
        // No cache this time (a read-only home, a full disk): the run itself is done.
      }
    },
  };
}

/**
 * The entry's file name: the bundle file's name and a hash of its path and text (the bytes:
 * hashing the decoded string would encode it again), of the wrapper, of Node's version and
 * architecture, and of the options Node was started with (which set V8 flags).
 */
function entryName(file, text) {
  const hash = createHash("sha256")
    .update(`${MAGIC}${WRAPPER.join("")}\n${file}\n${process.version} ${process.arch} ${process.execArgv.join(" ")} ${process.env.NODE_OPTIONS ?? ""}\n`)
    .update(text)
    .digest("hex")
    .slice(0, 24);
  return `${basename(file)}.${hash}.v8`;
}

/**
 * readEntry returns V8's data from the entry at `path`: undefined when there is none, null when
 * it is not to be used (not this user's own, writable by others, damaged).
 */
function readEntry(path) {
  let fd;
  try {
    // Without blocking on a FIFO, or following a symbolic link.
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0));
  } catch (err) {
    return err?.code === "ENOENT" ? undefined : null;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || !trusted(st)) return null;
    const entry = readFileSync(fd);
    const sum = MAGIC.length;
    const data = entry.subarray(sum + 32);
    const ok = entry.subarray(0, sum).equals(MAGIC) && checksum(path, data).equals(entry.subarray(sum, sum + 32));
    return ok ? data : null;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** The sha256 an entry holds: of its name (an entry renamed is not another's) and V8's data. */
function checksum(path, data) {
  return createHash("sha256").update(`${basename(path)}\n`).update(data).digest();
}

/** Writes V8's `data` as the entry at `path`: under a name of its own, then renamed. */
function writeEntry(path, data) {
  const tmp = `${path}.${randomBytes(8).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, Buffer.concat([MAGIC, checksum(path, data), data]), { mode: 0o600, flag: "wx" });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * flagProbe notes V8's flags as they are now; `changed()` then says whether they changed since.
 * V8 checks cached data against its flags and, beyond that, only against the source's length:
 * a script of the same length as the probe's, compiled with its data, is refused exactly when
 * the flags differ. Each check uses new text, since V8 would take the same text from its
 * in-memory cache without looking at the data.
 */
function flagProbe() {
  let n = 0;
  const text = () => `void ${String(n++).padStart(12, "0")}`;
  const data = new Script(text(), { filename: "airlock-flag-probe" }).createCachedData();
  return { changed: () => new Script(text(), { filename: "airlock-flag-probe", cachedData: data }).cachedDataRejected === true };
}

/** This user's id; undefined where there are no POSIX owners (Windows). */
const UID = process.getuid?.();

/** Whether a file's or directory's stat shows it as this user's own, and writable by no other. */
function trusted(st) {
  const uid = UID;
  if (uid === undefined) return true; // no POSIX owners (Windows): the profile's ACLs decide
  return st.uid === uid && (st.mode & 0o022) === 0;
}

/**
 * dirState says whether `dir` may hold the cache: "usable" when it is a directory of this user's
 * that no other user may write to, "missing" when it does not exist (yet), else "refused".
 */
function dirState(dir) {
  if (!dir) return "refused";
  try {
    const st = statSync(dir);
    return st.isDirectory() && trusted(st) ? "usable" : "refused";
  } catch (err) {
    return err?.code === "ENOENT" ? "missing" : "refused";
  }
}

/**
 * Whether the nearest existing directory above `dir` is this user's: a cache directory created
 * elsewhere (root running with another user's HOME) would belong to the wrong user.
 */
function ownsNearestParent(dir) {
  const uid = UID;
  for (let d = dirname(dir); ; d = dirname(d)) {
    try {
      return uid === undefined || statSync(d).uid === uid;
    } catch (err) {
      if (err?.code !== "ENOENT" || dirname(d) === d) return false;
    }
  }
}

/**
 * Removes this cache's own files that are due: entries written more than KEEP_MS ago, the oldest
 * beyond MAX_BYTES, and temporary files of writes that died. Other files are left alone.
 */
function prune(dir) {
  const now = Date.now();
  const kept = [];
  for (const name of readdirSync(dir)) {
    const m = ENTRY.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    try {
      const st = statSync(path);
      if (now - st.mtimeMs > (m[1] ? KEEP_TMP_MS : KEEP_MS)) rmSync(path, { force: true });
      else if (!m[1]) kept.push({ path, size: st.size, mtimeMs: st.mtimeMs });
    } catch {}
  }
  let total = kept.reduce((n, e) => n + e.size, 0);
  for (const e of kept.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
    if (total <= MAX_BYTES) break;
    try {
      rmSync(e.path, { force: true });
    } catch {}
    total -= e.size;
  }
}
