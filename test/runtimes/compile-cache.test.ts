/**
 * The code cache of apps/airlock/bin/load-bundle.js, with which Node loads the CLI bundle: the
 * first run keeps V8's code of each file it loaded, later runs compile from it; a file whose text
 * changed (even to one of the same length, which V8 alone would not notice), a damaged entry or
 * one V8 refuses is compiled afresh and kept again; code made after airlock changed V8's flags is
 * not kept (the next run would refuse it); a directory or entry others own or may write to is not
 * used; an unwritable directory costs nothing but the cache; old entries go, others' files stay.
 * Each run is a real Node process: a driver that loads a small CommonJS bundle, or the airlock
 * bin with the real bundle, built into a directory of the test's own.
 */
import { spawnSync } from "node:child_process";
import { existsSync, promises as fs, lstatSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { startRegistry } from "../harness/registry.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const LOADER = pathToFileURL(join(root, "apps", "airlock", "bin", "load-bundle.js")).href;
const work = mkdtempSync(join(tmpdir(), "airlock-compile-cache-"));
let n = 0;
let bundle: string;
let cache: string;

interface Loaded {
  stats: { hits: number; misses: number; rejected: number };
  out: string;
}

/**
 * Loads `bundle`/cli.cjs in a fresh Node process with the cache in `dir`, runs it, saves the
 * cache. `flags`: change V8's flags after loading — "announced" as airlock does (emitting
 * BEFORE_V8_FLAGS first), "silently", or "announced, then a verb loads" (a chunk compiled after).
 */
function load(dir: string | undefined = cache, flags?: "announced" | "silently" | "announced, then a verb loads"): Loaded {
  // The same driver text every time: Node's arguments are part of an entry's name.
  const driver = `
    import { BEFORE_V8_FLAGS, loadBundle } from ${JSON.stringify(LOADER)};
    import { setFlagsFromString } from "node:v8";
    const { entry, dir, flags } = JSON.parse(process.env.DRIVER);
    const l = loadBundle(entry, dir ?? undefined);
    if (flags?.startsWith("announced")) process.emit(BEFORE_V8_FLAGS);
    if (flags) setFlagsFromString("--liftoff-only");
    const out = await l.exports.main(flags === "announced, then a verb loads");
    l.save();
    console.log(JSON.stringify({ stats: l.stats, out }));`;
  const env = { ...process.env, DRIVER: JSON.stringify({ entry: join(bundle, "cli.cjs"), dir: dir ?? null, flags: flags ?? null }) };
  // A run that blocks (on a FIFO, say) fails the test instead of hanging it.
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", driver], { encoding: "utf8", env, timeout: 30_000 });
  expect(r.signal).toBeNull();
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
exports.main = async function (late) {
  var verb = await Promise.resolve().then(() => require("./verb-B.cjs"));
  var strict = (function () { return this === undefined; })();
  if (late) require("./verb-C.cjs");
  return [chunk.value, verb.run(), path.basename(__filename), strict].join(" ");
};
`,
  );
  await fs.writeFile(join(bundle, "chunk-A.cjs"), `"use strict";\nexports.value = "one";\n`);
  await fs.writeFile(join(bundle, "verb-B.cjs"), `"use strict";\nexports.run = function () { return "verb"; };\n`);
  await fs.writeFile(join(bundle, "verb-C.cjs"), `"use strict";\nexports.late = true;\n`);
});

/** The name of `file`'s entry in the cache. */
const entryOf = (file: string) => join(cache, entries().find((e) => e.startsWith(`${file}.`)) as string);

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

  it("does not hand V8 a damaged entry: it compiles afresh and replaces the entry", async () => {
    load();
    // Release builds of V8 do not checksum cached data: a flipped byte can crash every later run.
    const entry = entryOf("chunk-A.cjs");
    const good = readFileSync(entry);
    const bad = Buffer.from(good);
    bad[bad.length - 40] = (bad[bad.length - 40] as number) ^ 0xff;
    await fs.writeFile(entry, bad);
    const refused = load();
    expect(refused.out).toBe("one verb cli.cjs true");
    expect(refused.stats).toEqual({ hits: 2, misses: 0, rejected: 1 });
    expect(readFileSync(entry).equals(bad)).toBe(false);
    expect(load().stats).toEqual({ hits: 3, misses: 0, rejected: 0 });
    // Not ours to read: an entry others may write to is refused the same way.
    await fs.chmod(entry, 0o666);
    expect(load().stats).toEqual({ hits: 2, misses: 0, rejected: 1 });
    expect(statSync(entry).mode & 0o777).toBe(0o600);
  });

  it("neither blocks on a FIFO nor follows a symbolic link where an entry should be", async () => {
    load();
    const fifo = entryOf("chunk-A.cjs");
    const copy = join(work, `entry-${n}`);
    await fs.rename(fifo, copy);
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const link = entryOf("verb-B.cjs");
    await fs.rm(link);
    await fs.symlink(copy, link);
    const r = load(); // with a FIFO opened for reading, this would wait for a writer forever
    expect(r.out).toBe("one verb cli.cjs true");
    expect(r.stats).toEqual({ hits: 1, misses: 0, rejected: 2 });
    expect(statSync(fifo).isFile()).toBe(true);
    expect(lstatSync(link).isFile()).toBe(true);
    expect(load().stats).toEqual({ hits: 3, misses: 0, rejected: 0 });
  });

  it("keeps each install's own entries: the same file elsewhere is not a hit, and stack traces name the file that ran", async () => {
    await fs.writeFile(join(bundle, "chunk-A.cjs"), `"use strict";\nexports.value = new Error("where").stack.split("\\n")[1];\n`);
    const other = `${bundle}-copy`;
    await fs.cp(bundle, other, { recursive: true });
    const first = load();
    expect(first.out).toContain(join(bundle, "chunk-A.cjs"));
    const copy = bundle;
    bundle = other;
    const second = load();
    expect(second.stats).toEqual({ hits: 0, misses: 3, rejected: 0 });
    expect(second.out).toContain(join(other, "chunk-A.cjs"));
    expect(load().out).toContain(join(other, "chunk-A.cjs"));
    bundle = copy;
    expect(load().stats).toEqual({ hits: 3, misses: 0, rejected: 0 });
  });

  it("writes the other entries when one cannot be written", async () => {
    load();
    const blocked = entryOf("cli.cjs");
    const others = entries().filter((e) => !e.startsWith("cli.cjs."));
    for (const e of others) await fs.rm(join(cache, e));
    await fs.rm(blocked);
    await fs.mkdir(blocked); // the rename onto it fails
    expect(load().stats).toEqual({ hits: 0, misses: 2, rejected: 1 });
    expect(entries().filter((e) => !e.startsWith("cli.cjs.")).sort()).toEqual(others.sort());
  });

  it("keeps the code taken before airlock changes V8's flags, and not what it compiles after", () => {
    // Code made under changed flags would be refused by the next run, which starts without them.
    load(cache, "silently");
    expect(entries()).toEqual([]);
    // The driver changes the flags before main() runs: the verbs main() loads come after.
    load(cache, "announced, then a verb loads");
    expect(entries().map((e) => e.split(".")[0])).toEqual(["chunk-A", "cli"]);
    expect(load().stats).toEqual({ hits: 2, misses: 1, rejected: 0 });
    const written = entries().map((e) => statSync(join(cache, e)).mtimeMs);
    // After the change, V8 refuses verb-B's entry; the entry stays as it is, for the runs to come.
    expect(load(cache, "announced").stats).toEqual({ hits: 2, misses: 0, rejected: 1 });
    expect(entries().map((e) => statSync(join(cache, e)).mtimeMs)).toEqual(written);
    expect(load().stats).toEqual({ hits: 3, misses: 0, rejected: 0 });
  });

  it("does not keep a file that failed to load as if it had, and reports the right column", async () => {
    await fs.writeFile(join(bundle, "bad.cjs"), `"use strict";throw new Error("bad chunk");\n`);
    await fs.writeFile(
      join(bundle, "cli.cjs"),
      `"use strict";
exports.main = async function () {
  var stacks = [];
  for (var i = 0; i < 2; i++) try { require("./bad.cjs"); stacks.push("loaded"); } catch (err) { stacks.push(err.stack.split("\\n")[1]); }
  return stacks.join(" | ");
};
`,
    );
    const r = load();
    const [first, second] = r.out.split(" | ");
    expect(first).toMatch(/bad\.cjs:1:20\)?$/);
    expect(second).toBe(first);
  });

  it("is not used in a directory that other users may write to", async () => {
    await fs.mkdir(cache);
    await fs.chmod(cache, 0o777);
    expect(load().stats).toEqual({ hits: 0, misses: 3, rejected: 0 });
    expect(entries()).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)("is not used in a directory, nor an entry, that another user owns", async () => {
    await fs.mkdir(cache, { mode: 0o700 });
    load();
    await fs.chown(entryOf("chunk-A.cjs"), 65534, 65534);
    expect(load().stats).toEqual({ hits: 2, misses: 0, rejected: 1 });
    expect(statSync(entryOf("chunk-A.cjs")).uid).toBe(0);
    await fs.chown(cache, 65534, 65534);
    expect(load().stats).toEqual({ hits: 0, misses: 3, rejected: 0 });
    // Nor is one created where it would be another user's (root running with someone's HOME).
    const theirs = join(work, `home-${n}`);
    await fs.mkdir(theirs);
    await fs.chown(theirs, 65534, 65534);
    load(join(theirs, ".cache", "airlock"));
    expect(existsSync(join(theirs, ".cache"))).toBe(false);
  });

  it("costs only itself where it cannot be written, or when there is none", async () => {
    const file = join(work, `file-${n}`);
    await fs.writeFile(file, "");
    const under = load(join(file, "cache"));
    expect(under).toEqual({ out: "one verb cli.cjs true", stats: { hits: 0, misses: 3, rejected: 0 } });
    expect(load(undefined)).toEqual({ out: "one verb cli.cjs true", stats: { hits: 0, misses: 3, rejected: 0 } });
  });

  it("drops its entries written more than 30 days ago, the oldest beyond 64 MiB, temporary files of writes that died; not others' files", async () => {
    await fs.mkdir(cache, { mode: 0o700 });
    const day = 24 * 3600 * 1000;
    const hash = (c: string) => c.repeat(24);
    const files: [string, number, number][] = [
      [`chunk-OLD.cjs.${hash("0")}.v8`, 31 * day, 1],
      [`chunk-NEW.cjs.${hash("1")}.v8`, 0, 1],
      [`chunk-BIG1.cjs.${hash("2")}.v8`, 3 * day, 40 * 1024 * 1024],
      [`chunk-BIG2.cjs.${hash("3")}.v8`, 2 * day, 40 * 1024 * 1024],
      [`cli.cjs.${hash("4")}.v8.${"a".repeat(16)}.tmp`, 2 * 3600 * 1000, 1],
      [`cli.cjs.${hash("5")}.v8.${"b".repeat(16)}.tmp`, 0, 1],
      ["report.tmp", 2 * day, 1],
      ["disk.v8", 40 * day, 1],
    ];
    for (const [name, age, size] of files) {
      await fs.writeFile(join(cache, name), "x");
      await fs.truncate(join(cache, name), size); // sparse: takes no space
      const t = new Date(Date.now() - age);
      await fs.utimes(join(cache, name), t, t);
    }
    load();
    const left = entries();
    for (const gone of [0, 2, 4]) expect(left).not.toContain(files[gone]?.[0]);
    for (const kept of [1, 3, 5, 6, 7]) expect(left).toContain(files[kept]?.[0]);
    expect(left).toHaveLength(5 + 3);
  });

  it("lives where AIRLOCK_COMPILE_CACHE (an absolute path) or XDG_CACHE_HOME say, else in ~/.cache; AIRLOCK_COMPILE_CACHE=0 turns it off", () => {
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
    // Not a directory under the current one: "1" or "on" means the default.
    expect(where({ AIRLOCK_COMPILE_CACHE: "1", HOME: "/x/home" })).toBe("/x/home/.cache/airlock/compile-cache");
  });

  it("serves the real airlock bin: every file of the real bundle loads, and its runs fill and use the cache", async () => {
    // A bundle of the current build in an app directory of the test's own (a concurrent build
    // cannot make it stale), next to a copy of the bin.
    const app = join(work, `app-${n}`);
    await fs.mkdir(join(app, "bin"), { recursive: true });
    for (const f of ["airlock.js", "run.js", "load-bundle.js"]) await fs.copyFile(join(root, "apps", "airlock", "bin", f), join(app, "bin", f));
    await fs.writeFile(join(app, "package.json"), '{"type":"module"}');
    const out = join(app, "dist", "bundle");
    const built = spawnSync(process.execPath, [join(root, "scripts", "build-cli.mjs"), "--out-dir", out, "--quiet"], { encoding: "utf8" });
    expect(built.status, built.stderr).toBe(0);

    // Each file evaluates on its own, as CommonJS (the conversion from esbuild's ES modules).
    const files = readdirSync(out).filter((f) => f.endsWith(".cjs"));
    expect(files.length).toBeGreaterThan(10);
    const each = spawnSync(
      process.execPath,
      ["--input-type=module", "-e", `import { loadBundle } from ${JSON.stringify(LOADER)}; for (const f of ${JSON.stringify(files)}) loadBundle(${JSON.stringify(out)} + "/" + f, undefined);`],
      { encoding: "utf8" },
    );
    expect(each.status, each.stderr).toBe(0);

    const env = { ...process.env, AIRLOCK_COMPILE_CACHE: cache };
    delete env.AIRLOCK_NO_BUNDLE;
    const bin = join(app, "bin", "airlock.js");
    const first = spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8", env });
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^airlock version \d/);
    expect(entries().some((e) => /^cli\.cjs\.[0-9a-f]{24}\.v8$/.test(e))).toBe(true);
    const second = spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8", env });
    expect(second.stdout).toBe(first.stdout);
    // A verb loads its chunks, and they are cached too.
    const inspect = () => spawnSync(process.execPath, [bin, "inspect", "--raw", `oci:${join(root, "fixtures", "oci")}:single`], { encoding: "utf8", env });
    const raw = inspect();
    expect(raw.status, raw.stderr).toBe(0);
    expect(JSON.parse(raw.stdout).schemaVersion).toBe(2);
    const chunks = entries().filter((e) => e.startsWith("chunk-"));
    expect(chunks.length).toBeGreaterThan(0);
    expect(inspect().stdout).toBe(raw.stdout);
    expect(entries().filter((e) => e.startsWith("chunk-"))).toEqual(chunks);

    // A push loads undici, then changes V8's flags: undici's code is kept too, and so is every
    // other file's, since the run's code is taken before the change. A second push writes nothing.
    const registry = await startRegistry({ mode: "plain" });
    try {
      const push = () => spawnSync(process.execPath, [bin, "copy", "-q", "--dest-tls-verify=false", `oci:${join(root, "fixtures", "oci")}:single`, `docker://${registry.host}/cc/single:1`], { encoding: "utf8", env });
      const pushed = push();
      expect(pushed.status, pushed.stderr).toBe(0);
      const after = entries();
      expect(after.some((e) => /^undici-[0-9A-Z]+\.cjs\./.test(e))).toBe(true);
      expect(push().status).toBe(0);
      expect(entries()).toEqual(after);
    } finally {
      await registry.stop();
    }
  });
});
