/**
 * The code cache of apps/airlock/bin/load-bundle.js, with which Node loads the CLI bundle: the
 * first run keeps V8's code of each file it loaded, later runs compile from it; a file whose text
 * changed (even to one of the same length, which V8 alone would not notice) or an entry V8 refuses
 * is compiled afresh and kept again; a directory others may write to is not used; an unwritable
 * one costs nothing but the cache; old entries go. Each run is a real Node process (a driver that
 * loads a small CommonJS bundle, or the airlock bin with the real bundle).
 */
import { spawnSync } from "node:child_process";
import { existsSync, promises as fs, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeEach, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const LOADER = pathToFileURL(join(root, "apps", "airlock", "bin", "load-bundle.js")).href;
const BIN = join(root, "apps", "airlock", "bin", "airlock.js");
const work = mkdtempSync(join(tmpdir(), "airlock-compile-cache-"));
let n = 0;
let bundle: string;
let cache: string;

interface Loaded {
  stats: { hits: number; misses: number; rejected: number };
  out: string;
}

/** Loads `bundle`/cli.cjs in a fresh Node process with the cache in `dir`, runs it, saves the cache. */
function load(dir: string | undefined = cache): Loaded {
  const driver = `
    import { loadBundle } from ${JSON.stringify(LOADER)};
    const l = loadBundle(${JSON.stringify(join(bundle, "cli.cjs"))}, ${JSON.stringify(dir)});
    const out = await l.exports.main();
    l.save();
    console.log(JSON.stringify({ stats: l.stats, out }));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", driver], { encoding: "utf8" });
  expect(r.stderr).toBe("");
  return JSON.parse(r.stdout);
}

/** The cache's entries, by name. */
const entries = (dir = cache) => (existsSync(dir) ? readdirSync(dir).sort() : []);

beforeEach(async () => {
  // A bundle as build-cli.mjs writes one: strict CommonJS files, a static require of a chunk, a
  // dynamic import turned into a require, a Node built-in.
  bundle = join(work, `bundle-${++n}`);
  cache = join(work, `cache-${n}`);
  await fs.mkdir(bundle);
  await fs.writeFile(
    join(bundle, "cli.cjs"),
    `"use strict";
var chunk = require("./chunk-A.cjs");
var path = require("node:path");
exports.main = async function () {
  var verb = await Promise.resolve().then(() => require("./verb-B.cjs"));
  var strict = (function () { return this === undefined; })();
  return [chunk.value, verb.run(), path.basename(__filename), strict].join(" ");
};
`,
  );
  await fs.writeFile(join(bundle, "chunk-A.cjs"), `"use strict";\nexports.value = "one";\n`);
  await fs.writeFile(join(bundle, "verb-B.cjs"), `"use strict";\nexports.run = function () { return "verb"; };\n`);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe("the bundle's code cache", () => {
  it("is written by the first run (a private directory) and used by the next", async () => {
    const first = load();
    expect(first.out).toBe("one verb cli.cjs true");
    expect(first.stats).toEqual({ hits: 0, misses: 3, rejected: 0 });
    const names = entries();
    expect(names).toHaveLength(3);
    for (const file of ["cli.cjs", "chunk-A.cjs", "verb-B.cjs"]) expect(names.some((e) => e.startsWith(`${file}.`) && e.endsWith(".v8"))).toBe(true);
    expect(statSync(cache).mode & 0o777).toBe(0o700);
    for (const e of names) expect(statSync(join(cache, e)).mode & 0o777).toBe(0o600);
    const written = names.map((e) => statSync(join(cache, e)).mtimeMs);

    const second = load();
    expect(second).toEqual({ out: "one verb cli.cjs true", stats: { hits: 3, misses: 0, rejected: 0 } });
    // Nothing was written again.
    expect(entries()).toEqual(names);
    expect(names.map((e) => statSync(join(cache, e)).mtimeMs)).toEqual(written);
  });

  it("does not run the code of a file's earlier text, also when the new text has the same length", async () => {
    load();
    // V8 checks a cached script only against the length of its source.
    await fs.writeFile(join(bundle, "chunk-A.cjs"), `"use strict";\nexports.value = "two";\n`);
    const changed = load();
    expect(changed.out).toBe("two verb cli.cjs true");
    expect(changed.stats).toEqual({ hits: 2, misses: 1, rejected: 0 });
    expect(entries().filter((e) => e.startsWith("chunk-A.cjs."))).toHaveLength(2);
    expect(load().stats).toEqual({ hits: 3, misses: 0, rejected: 0 });
  });

  it("compiles afresh when V8 refuses an entry, and replaces the entry", async () => {
    load();
    const entry = join(cache, entries().find((e) => e.startsWith("chunk-A.cjs.")) as string);
    const size = statSync(entry).size;
    await fs.writeFile(entry, Buffer.alloc(size, 0x5a));
    const refused = load();
    expect(refused.out).toBe("one verb cli.cjs true");
    expect(refused.stats).toEqual({ hits: 2, misses: 0, rejected: 1 });
    expect(readFileSync(entry).equals(Buffer.alloc(size, 0x5a))).toBe(false);
    expect(load().stats).toEqual({ hits: 3, misses: 0, rejected: 0 });
  });

  it("is not used in a directory that other users may write to", async () => {
    await fs.mkdir(cache);
    await fs.chmod(cache, 0o777);
    expect(load().stats).toEqual({ hits: 0, misses: 3, rejected: 0 });
    expect(entries()).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)("is not used in a directory that another user owns", async () => {
    await fs.mkdir(cache, { mode: 0o700 });
    load();
    await fs.chown(cache, 65534, 65534);
    expect(load().stats).toEqual({ hits: 0, misses: 3, rejected: 0 });
  });

  it("costs only itself where it cannot be written, or when there is none", async () => {
    const file = join(work, `file-${n}`);
    await fs.writeFile(file, "");
    const under = load(join(file, "cache"));
    expect(under).toEqual({ out: "one verb cli.cjs true", stats: { hits: 0, misses: 3, rejected: 0 } });
    expect(load(undefined)).toEqual({ out: "one verb cli.cjs true", stats: { hits: 0, misses: 3, rejected: 0 } });
  });

  it("drops entries written more than 30 days ago and temporary files of writes that died, when it writes", async () => {
    await fs.mkdir(cache, { mode: 0o700 });
    const old = new Date(Date.now() - 31 * 24 * 3600 * 1000);
    const hourAgo = new Date(Date.now() - 2 * 3600 * 1000);
    for (const [name, time] of [
      ["chunk-OLD.cjs.0123.v8", old],
      ["chunk-NEW.cjs.4567.v8", new Date()],
      ["cli.cjs.89ab.v8.123.tmp", hourAgo],
      ["cli.cjs.cdef.v8.456.tmp", new Date()],
      ["notes.txt", old],
    ] as const) {
      await fs.writeFile(join(cache, name), "x");
      await fs.utimes(join(cache, name), time, time);
    }
    load();
    const left = entries();
    expect(left).not.toContain("chunk-OLD.cjs.0123.v8");
    expect(left).not.toContain("cli.cjs.89ab.v8.123.tmp");
    expect(left).toEqual(expect.arrayContaining(["chunk-NEW.cjs.4567.v8", "cli.cjs.cdef.v8.456.tmp", "notes.txt"]));
    expect(left).toHaveLength(6);
  });

  it("lives where AIRLOCK_COMPILE_CACHE or XDG_CACHE_HOME say, else in ~/.cache; AIRLOCK_COMPILE_CACHE=0 turns it off", () => {
    const where = (env: Record<string, string>) => {
      const r = spawnSync(
        process.execPath,
        ["--input-type=module", "-e", `import { compileCacheDir } from ${JSON.stringify(LOADER)}; console.log(JSON.stringify(compileCacheDir() ?? null));`],
        { encoding: "utf8", env: { PATH: process.env.PATH ?? "", ...env } },
      );
      return JSON.parse(r.stdout);
    };
    expect(where({ AIRLOCK_COMPILE_CACHE: "/x/cc", XDG_CACHE_HOME: "/x/xdg", HOME: "/x/home" })).toBe("/x/cc");
    expect(where({ XDG_CACHE_HOME: "/x/xdg", HOME: "/x/home" })).toBe("/x/xdg/airlock/compile-cache");
    expect(where({ XDG_CACHE_HOME: "relative", HOME: "/x/home" })).toBe("/x/home/.cache/airlock/compile-cache");
    expect(where({ HOME: "/x/home" })).toBe("/x/home/.cache/airlock/compile-cache");
    expect(where({ AIRLOCK_COMPILE_CACHE: "0", HOME: "/x/home" })).toBe(null);
  });

  it("serves the real airlock bin: the bundle's entry is cached by the first run and the output stays the same", () => {
    const env = { ...process.env, AIRLOCK_COMPILE_CACHE: cache };
    delete env.AIRLOCK_NO_BUNDLE;
    const first = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8", env });
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/^airlock version \d/);
    expect(entries().some((e) => /^cli\.cjs\.[0-9a-f]+\.v8$/.test(e))).toBe(true);
    const second = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8", env });
    expect(second.stdout).toBe(first.stdout);
    // A verb loads its chunks, and they are cached too.
    const inspect = spawnSync(process.execPath, [BIN, "inspect", "--raw", `oci:${join(root, "fixtures", "oci")}:single`], { encoding: "utf8", env });
    expect(inspect.status, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout).schemaVersion).toBe(2);
    expect(entries().filter((e) => e.startsWith("chunk-")).length).toBeGreaterThan(0);
  });
});
