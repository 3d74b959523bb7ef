#!/usr/bin/env node
// airlock's benchmarks, side by side with skopeo on the same machine, data and run.
//
//   npm run bench [-- --runs 3 --only export,import --keep --compiled]
//
// --compiled also builds the single-file executable (`npm run compile`) and times it on the jobs
// where start-up counts (one process per image, import, import again): rows named "… (compiled)".
//
// Generates a corpus (cached under .bench/corpus): ten images sharing a 5 MiB base plus 1 MiB
// each, two images of one 200 MiB incompressible layer, an amd64+arm64 index, and an image of 50
// small layers. Pushes it to a local docker-registry, then times each job for airlock and for
// skopeo, reporting medians, ratios and peak RSS (GNU time), and where the CPU went: the tool's
// (user + system, GNU time) and the registries' meanwhile (/proc/PID/stat), whose sum over the
// cores is the fastest any client could be on this machine. Not a test: it asserts nothing.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeChangedImages } from "./bench-delta.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const airlockBin = join(root, "apps/airlock/bin/airlock.js");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const RUNS = Number(opt("runs", "3"));
const ONLY = opt("only", "")?.split(",").filter(Boolean) ?? [];
const KEEP = args.includes("--keep");
const COMPILED = args.includes("--compiled");
const benchDir = join(root, ".bench");
const MiB = 1024 * 1024;
/** Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout) || 100;
const CORES = availableParallelism();
/** Registries and `airlock serve` processes running now (their CPU is counted per run). */
const servers = new Set();

// ---------------------------------------------------------------- corpus (an OCI layout)

function sha256(buf) {
  return `sha256:${createHash("sha256").update(buf).digest("hex")}`;
}

/** A one-file uncompressed tar (incompressible content), deterministic from `seed`. */
function tarLayer(seed, size) {
  const data = Buffer.alloc(size);
  let state = createHash("sha256").update(seed).digest();
  for (let off = 0; off < size; off += 32) {
    state = createHash("sha256").update(state).digest();
    state.copy(data, off, 0, Math.min(32, size - off));
  }
  const header = Buffer.alloc(512);
  const name = `${seed}.bin`;
  header.write(name, 0);
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${size.toString(8).padStart(11, "0")}\0`, 124);
  header.write("00000000000\0", 136);
  header.write("        ", 148);
  header.write("0", 156);
  header.write("ustar\0", 257);
  header.write("00", 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const pad = Buffer.alloc((512 - (size % 512)) % 512);
  return Buffer.concat([header, data, pad, Buffer.alloc(1024)]);
}

function makeCorpus(dir) {
  const marker = join(dir, "corpus.json");
  if (existsSync(marker)) return JSON.parse(readFileSync(marker, "utf8"));
  console.error("bench: generating the corpus (once, cached in .bench/corpus)…");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  const put = (buf) => {
    const d = sha256(buf);
    writeFileSync(join(dir, "blobs/sha256", d.slice(7)), buf);
    return d;
  };
  const cache = new Map();
  const layer = (seed, size) => {
    if (!cache.has(seed)) {
      const buf = tarLayer(seed, size);
      cache.set(seed, { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: put(buf), size: buf.length, diff: sha256(buf) });
    }
    const { diff, ...desc } = cache.get(seed);
    return { desc, diff };
  };
  const image = (layers, arch = "amd64") => {
    const config = Buffer.from(JSON.stringify({ architecture: arch, os: "linux", created: "2024-01-01T00:00:00Z", config: { Env: ["PATH=/usr/bin"] }, rootfs: { type: "layers", diff_ids: layers.map((l) => l.diff) } }));
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: put(config), size: config.length }, layers: layers.map((l) => l.desc) }));
    return { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: put(manifest), size: manifest.length };
  };
  const entries = [];
  const name = (n, desc) => entries.push({ ...desc, annotations: { "org.opencontainers.image.ref.name": n } });
  for (let i = 0; i < 10; i++) name(`app${i}`, image([layer("base", 5 * MiB), layer(`app${i}`, MiB)]));
  for (let i = 0; i < 2; i++) name(`big${i}`, image([layer(`big${i}`, 200 * MiB)]));
  const amd = image([layer("multi-amd64", 2 * MiB)], "amd64");
  const arm = image([layer("multi-arm64", 2 * MiB)], "arm64");
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [{ ...amd, platform: { os: "linux", architecture: "amd64" } }, { ...arm, platform: { os: "linux", architecture: "arm64", variant: "v8" } }] }));
  name("multi", { mediaType: "application/vnd.oci.image.index.v1+json", digest: put(index), size: index.length });
  name("many", image(Array.from({ length: 50 }, (_, i) => layer(`small${i}`, 64 * 1024 + i))));
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: entries }));
  const corpus = { images: entries.map((e) => e.annotations["org.opencontainers.image.ref.name"]) };
  writeFileSync(marker, JSON.stringify(corpus));
  return corpus;
}

// ---------------------------------------------------------------- registries

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRegistry() {
  const dir = mkdtempSync(join(tmpdir(), "airlock-bench-registry-"));
  const port = await freePort();
  writeFileSync(
    join(dir, "config.yml"),
    `version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: ${dir}/data}\n  delete: {enabled: true}\n  cache: {blobdescriptor: inmemory}\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: bench\n`,
  );
  const child = spawn("docker-registry", ["serve", join(dir, "config.yml")], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (r.ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  const server = {
    host: `127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill();
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
      servers.delete(server);
    },
  };
  servers.add(server);
  return server;
}

/** Starts `airlock serve ARGS` on a free port; resolves with its host. */
async function startServe(args) {
  const child = spawn(process.execPath, [airlockBin, "serve", ...args, "--listen", "127.0.0.1:0", "-q"], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const host = await new Promise((resolve, reject) => {
    child.stderr.on("data", (c) => {
      log += c;
      const m = /listening on https?:\/\/([\d.]+:\d+)/.exec(log);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`airlock serve exited ${code}: ${log}`)));
  });
  const server = {
    host,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      servers.delete(server);
    },
  };
  servers.add(server);
  return server;
}

// ---------------------------------------------------------------- timing

/** CPU seconds (user + system) a running process has used so far, from /proc (0 when gone). */
function cpuSecondsOf(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
    // utime and stime are fields 14 and 15 of stat(5), i.e. 12 and 13 after "(comm) ".
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** CPU seconds used so far by every registry and `airlock serve` the bench runs. */
function serversCpu() {
  let sum = 0;
  for (const s of servers) sum += cpuSecondsOf(s.pid);
  return sum;
}

/**
 * Runs a shell command under GNU time; returns seconds, peak RSS in MiB, the CPU seconds of the
 * command (with its children) and the CPU seconds the registries used meanwhile.
 */
function timed(cmd) {
  const before = serversCpu();
  const t0 = process.hrtime.bigint();
  const r = spawnSync("/usr/bin/time", ["-f", "%M %U %S", "bash", "-c", cmd], { encoding: "utf8", maxBuffer: 64 * MiB });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const serverCpu = serversCpu() - before;
  if (r.status !== 0) throw new Error(`command failed (${r.status}): ${cmd}\n${r.stderr.slice(-2000)}`);
  const lines = r.stderr.trim().split("\n");
  const [kib, user, sys] = (lines.at(-1) ?? "").split(" ").map(Number);
  return { secs, rssMiB: kib / 1024, cpu: user + sys, serverCpu };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = [];

/**
 * Times `job` for each tool; `prepare()` runs before every run (untimed). The tools take turns run
 * by run (A B A B …, the first tool alternating), so that a drift of the machine during the row
 * (page cache, a registry's state, a noisy neighbour) weighs on both alike.
 */
async function bench(name, variants) {
  if (ONLY.length && !ONLY.includes(name.replace(/ \(compiled\)$/, ""))) return;
  const row = { job: name };
  const tools = Object.entries(variants).filter(([tool, { skip }]) => {
    if (skip) row[tool] = { skipped: skip };
    return !skip;
  });
  const runs = new Map(tools.map(([tool]) => [tool, { secs: [], cpu: [], serverCpu: [], rss: 0 }]));
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? tools : [...tools].reverse();
    for (const [tool, { prepare, cmd }] of order) {
      const ctx = prepare ? await prepare() : {};
      const r = timed(typeof cmd === "function" ? cmd(ctx) : cmd);
      const m = runs.get(tool);
      m.secs.push(r.secs);
      m.cpu.push(r.cpu);
      m.serverCpu.push(r.serverCpu);
      m.rss = Math.max(m.rss, r.rssMiB);
      if (ctx.cleanup) await ctx.cleanup();
    }
  }
  for (const [tool, m] of runs) {
    row[tool] = { median: median(m.secs), runs: m.secs, peakRssMiB: m.rss, cpu: median(m.cpu), serverCpu: median(m.serverCpu) };
    console.error(`bench: ${name} ${tool}: median ${median(m.secs).toFixed(2)} s, peak RSS ${m.rss.toFixed(0)} MiB`);
  }
  if (row.airlock?.median && row.skopeo?.median) row.speedup = row.skopeo.median / row.airlock.median;
  results.push(row);
}

function airlockHas(verb) {
  const r = spawnSync(process.execPath, [airlockBin, verb, "--help"], { encoding: "utf8" });
  return r.status === 0;
}

// ---------------------------------------------------------------- main

async function main() {
  for (const tool of ["skopeo", "docker-registry", "/usr/bin/time"]) {
    if (spawnSync("bash", ["-c", `command -v ${tool}`]).status !== 0) throw new Error(`bench needs ${tool} (apt-get install skopeo docker-registry time)`);
  }
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-b", "apps/airlock"], { cwd: root, stdio: "inherit" });
  // The bin runs the bundle only while it matches the build (else the slower unbundled CLI).
  execFileSync(process.execPath, [join(root, "scripts/build-cli.mjs"), "--quiet"], { cwd: root, stdio: "inherit" });
  mkdirSync(benchDir, { recursive: true });
  const corpusDir = join(benchDir, "corpus");
  const { images } = makeCorpus(corpusDir);
  const work = mkdtempSync(join(benchDir, "run-"));
  const src = await startRegistry();
  const regs = [src];
  try {
    console.error(`bench: pushing the corpus to ${src.host} with skopeo (untimed)…`);
    for (const img of images) execFileSync("skopeo", ["copy", "--all", "--preserve-digests", "-q", `oci:${corpusDir}:${img}`, `docker://${src.host}/bench/${img}:1`, "--dest-tls-verify=false"], { stdio: "inherit" });
    const airlock = `"${process.execPath}" "${airlockBin}"`;
    // The single-file executable, when asked for: the same jobs again with it in airlock's place.
    const compiledBin = join(root, `dist/airlock-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
    if (COMPILED) execFileSync(process.execPath, [join(root, "scripts/compile.mjs")], { cwd: root, stdio: "inherit" });
    const runners = COMPILED ? [["", airlock], [" (compiled)", `"${compiledBin}"`]] : [["", airlock]];
    const loop = (fn) => images.map(fn).join(" && ");
    const freshLayout = async () => {
      const dir = mkdtempSync(join(work, "layout-"));
      return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    };
    const freshRegistry = async () => {
      const r = await startRegistry();
      regs.push(r);
      return { host: r.host, cleanup: () => r.stop() };
    };

    for (const [suffix, al] of runners) {
      await bench(`registry-to-layout${suffix}`, {
        skopeo: { prepare: freshLayout, cmd: ({ dir }) => loop((i) => `skopeo copy -q --all --preserve-digests --src-tls-verify=false docker://${src.host}/bench/${i}:1 oci:${dir}:${i}`) },
        airlock: { prepare: freshLayout, cmd: ({ dir }) => loop((i) => `${al} copy -q --all docker://${src.host}/bench/${i}:1 oci:${dir}:${i}`) },
      });
      await bench(`layout-to-registry${suffix}`, {
        skopeo: { prepare: freshRegistry, cmd: ({ host }) => loop((i) => `skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:${corpusDir}:${i} docker://${host}/bench/${i}:1`) },
        airlock: { prepare: freshRegistry, cmd: ({ host }) => loop((i) => `${al} copy -q --all oci:${corpusDir}:${i} docker://${host}/bench/${i}:1`) },
      });
    }

    const syncYaml = join(work, "sync.yaml");
    writeFileSync(syncYaml, `${src.host}:\n  tls-verify: false\n  images:\n${images.map((i) => `    bench/${i}: ["1"]\n`).join("")}`);
    // The same two jobs the way an airlock user moves many images: one command for all of them
    // (skopeo has none for these two directions, so its side is the same loop as above).
    await bench("registry-to-layout-one-process", {
      skopeo: { prepare: freshLayout, cmd: ({ dir }) => loop((i) => `skopeo copy -q --all --preserve-digests --src-tls-verify=false docker://${src.host}/bench/${i}:1 oci:${dir}:${i}`) },
      airlock: { prepare: freshLayout, cmd: ({ dir }) => `${airlock} sync -q --all --src yaml --dest oci ${syncYaml} ${dir}` },
    });
    await bench("layout-to-registry-one-process", {
      skopeo: { prepare: freshRegistry, cmd: ({ host }) => loop((i) => `skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:${corpusDir}:${i} docker://${host}/bench/${i}:1`) },
      airlock: { prepare: freshRegistry, cmd: ({ host }) => `${airlock} sync -q --all --src oci --dest docker --dest-tls-verify=false ${corpusDir} ${host}/bench` },
    });

    // All images in one process: sync from the source registry into an empty registry, then again
    // with everything present (skopeo sync copies one image at a time; airlock sync runs several).
    const syncCmd = {
      skopeo: ({ host }) => `skopeo sync --all --preserve-digests --src yaml --dest docker --dest-tls-verify=false ${syncYaml} ${host}/synced`,
      airlock: ({ host }) => `${airlock} sync -q --all --src yaml --dest docker --dest-tls-verify=false ${syncYaml} ${host}/synced`,
    };
    await bench("sync", { skopeo: { prepare: freshRegistry, cmd: syncCmd.skopeo }, airlock: { prepare: freshRegistry, cmd: syncCmd.airlock } });
    const full = async () => {
      const r = await startRegistry();
      regs.push(r);
      execFileSync("bash", ["-c", syncCmd.skopeo({ host: r.host })], { stdio: "inherit" });
      return { host: r.host };
    };
    const syncedFull = await full();
    await bench("sync-again", { skopeo: { cmd: syncCmd.skopeo(syncedFull) }, airlock: { cmd: syncCmd.airlock(syncedFull) } });

    // Every image in one process onto local disk, the way an airlock user would move them all:
    // airlock sync into one OCI layout; skopeo's nearest (its sync has no oci destination) is a
    // dir: image per tag.
    await bench("sync-to-layout", {
      skopeo: { prepare: freshLayout, cmd: ({ dir }) => `skopeo sync --all --preserve-digests --src yaml --dest dir ${syncYaml} ${dir}` },
      airlock: { prepare: freshLayout, cmd: ({ dir }) => `${airlock} sync -q --all --src yaml --dest oci ${syncYaml} ${dir}/layout` },
    });

    const imagesYaml = join(work, "images.yaml");
    writeFileSync(imagesYaml, `version: 1\nregistries:\n  "${src.host}": {tlsVerify: false}\nimages:\n${images.map((i) => `  - name: ${src.host}/bench/${i}\n    tags: ["1"]\n`).join("")}`);
    const hasExport = airlockHas("export");
    await bench("export", {
      skopeo: { prepare: freshLayout, cmd: ({ dir }) => `${loop((i) => `skopeo copy -q --all --preserve-digests --src-tls-verify=false docker://${src.host}/bench/${i}:1 oci:${dir}:${i}`)} && tar -cf ${dir}.tar -C ${dir} . && rm -f ${dir}.tar` },
      airlock: hasExport ? { prepare: freshLayout, cmd: ({ dir }) => `${airlock} export -q -f ${imagesYaml} -o ${dir}/bundle.tar` } : { skip: "airlock export not available yet" },
    });
    const bundle = join(work, "bundle.tar");
    const skopeoLayout = join(work, "skopeo-layout");
    if (hasExport && airlockHas("import")) {
      execFileSync("bash", ["-c", `${airlock} export -q -f ${imagesYaml} -o ${bundle}`], { stdio: "inherit" });
      execFileSync("bash", ["-c", loop((i) => `skopeo copy -q --all --preserve-digests --src-tls-verify=false docker://${src.host}/bench/${i}:1 oci:${skopeoLayout}:${i}`)], { stdio: "inherit" });
      for (const [suffix, al] of runners) {
        await bench(`import${suffix}`, {
          skopeo: { prepare: freshRegistry, cmd: ({ host }) => loop((i) => `skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:${skopeoLayout}:${i} docker://${host}/bench/${i}:1`) },
          airlock: { prepare: freshRegistry, cmd: ({ host }) => `${al} import -q ${bundle} --to ${host}` },
        });
      }
      const full = await startRegistry();
      regs.push(full);
      execFileSync("bash", ["-c", `${airlock} import -q ${bundle} --to ${full.host}`], { stdio: "inherit" });
      execFileSync("bash", ["-c", loop((i) => `skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:${skopeoLayout}:${i} docker://${full.host}/skopeo/${i}:1`)], { stdio: "inherit" });
      for (const [suffix, al] of runners) {
        await bench(`import-again${suffix}`, {
          skopeo: { cmd: loop((i) => `skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:${skopeoLayout}:${i} docker://${full.host}/skopeo/${i}:1`) },
          airlock: { cmd: `${al} import -q ${bundle} --to ${full.host}` },
        });
      }
    }

    // A delta: two images change (one more 1 MiB layer each); the export of the new state with
    // --since the receipt of an import of the old one, against a full export of the new state.
    // Resume: an export SIGKILLed at 50 % of its bytes and rerun, against one left alone.
    const wants = (job) => !ONLY.length || ONLY.includes(job);
    if (hasExport && airlockHas("import") && wants("delta")) {
      const changedNames = ["app0", "app1"].filter((n) => images.includes(n));
      const changed = join(work, "changed");
      writeChangedImages(corpusDir, changed, changedNames, (seed) => tarLayer(seed, MiB));
      for (const i of changedNames) execFileSync("skopeo", ["copy", "-q", "--preserve-digests", `oci:${changed}:${i}`, `docker://${src.host}/bench/${i}:2`, "--dest-tls-verify=false"], { stdio: "inherit" });
      const changedYaml = join(work, "images-changed.yaml");
      writeFileSync(changedYaml, `version: 1\nregistries:\n  "${src.host}": {tlsVerify: false}\nimages:\n${images.map((i) => `  - name: ${src.host}/bench/${i}\n    tags: ["${changedNames.includes(i) ? 2 : 1}"]\n`).join("")}`);
      const other = await startRegistry();
      regs.push(other);
      const receipt = join(work, "receipt.json");
      const oldBundle = join(work, "old.tar");
      execFileSync("bash", ["-c", `${airlock} export -q -f ${imagesYaml} -o ${oldBundle} && ${airlock} import -q ${oldBundle} --to ${other.host} --receipt ${receipt} >/dev/null`], { stdio: "inherit" });
      const size = (kind) => join(work, `delta-size-${kind}`);
      await bench("delta", {
        full: { prepare: freshLayout, cmd: ({ dir }) => `${airlock} export -q -f ${changedYaml} -o ${dir}/bundle.tar && stat -c %s ${dir}/bundle.tar > ${size("full")}` },
        delta: { prepare: freshLayout, cmd: ({ dir }) => `${airlock} export -q -f ${changedYaml} --since ${receipt} -o ${dir}/bundle.tar && stat -c %s ${dir}/bundle.tar > ${size("delta")}` },
      });
      const [full, delta] = ["full", "delta"].map((k) => Number(readFileSync(size(k), "utf8")));
      const row = results.find((r) => r.job === "delta");
      if (row) row.notes = `${changedNames.length} images changed: delta ${(delta / MiB).toFixed(1)} MiB vs full ${(full / MiB).toFixed(1)} MiB (${((100 * delta) / full).toFixed(1)} %)`;
    }
    if (hasExport && wants("resume")) {
      const killAt = join(root, "scripts/bench-kill-at.mjs");
      const exportTo = (dir) => `${airlock} export -q -f ${imagesYaml} -o ${dir}/bundle.tar`;
      await bench("resume", {
        uninterrupted: { prepare: freshLayout, cmd: ({ dir }) => exportTo(dir) },
        "killed-at-50%+rerun": { prepare: freshLayout, cmd: ({ dir }) => `"${process.execPath}" ${killAt} 0.5 "${process.execPath}" "${airlockBin}" export --json -f ${imagesYaml} -o ${dir}/bundle.tar && ${exportTo(dir)}` },
      });
      const row = results.find((r) => r.job === "resume");
      if (row?.uninterrupted?.median && row["killed-at-50%+rerun"]?.median) row.notes = `resume overhead: ${(row["killed-at-50%+rerun"].median - row.uninterrupted.median).toFixed(2)} s over an uninterrupted export (the killed half included)`;
    }

    // airlock serve against docker-registry: the same client (skopeo) pulls the corpus from each,
    // and pushes it into each; then a bundle served as it is against the extracted store.
    const served = await startServe(["--root", corpusDir, "--read-only"]);
    regs.push(served);
    const pullFrom = (host, name) => ({ prepare: freshLayout, cmd: ({ dir }) => loop((i) => `skopeo copy -q --all --preserve-digests --src-tls-verify=false docker://${host}/${name(i)} oci:${dir}:${i}`) });
    await bench("serve-pull", {
      "docker-registry": pullFrom(src.host, (i) => `bench/${i}:1`),
      "airlock-serve": pullFrom(served.host, (i) => `${i}:latest`),
    });
    const freshServe = async () => {
      const dir = mkdtempSync(join(work, "store-"));
      const s = await startServe(["--root", dir]);
      return { host: s.host, cleanup: async () => { await s.stop(); rmSync(dir, { recursive: true, force: true }); } };
    };
    const pushTo = (prepare) => ({ prepare, cmd: ({ host }) => loop((i) => `skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:${corpusDir}:${i} docker://${host}/bench/${i}:1`) });
    await bench("serve-push", { "docker-registry": pushTo(freshRegistry), "airlock-serve": pushTo(freshServe) });
    if (hasExport) {
      const bundleFile = join(work, "serve-bundle.tar");
      if (!existsSync(bundleFile)) execFileSync("bash", ["-c", `${airlock} export -q -f ${imagesYaml} -o ${bundleFile}`], { stdio: "inherit" });
      const fromBundle = await startServe([bundleFile]);
      regs.push(fromBundle);
      // The bundle names images by the source registry (127.0.0.1:PORT/bench/app0:1); serve maps
      // them as import's keep-path does: 127.0.0.1_PORT/bench/app0:1.
      const bundleRepo = (i) => `${src.host.replace(":", "_")}/bench/${i}:1`;
      await bench("serve-bundle-pull", {
        "extracted-store": pullFrom(served.host, (i) => `${i}:latest`),
        bundle: pullFrom(fromBundle.host, bundleRepo),
      });
    }
  } finally {
    for (const r of regs) await r.stop().catch(() => {});
    if (!KEEP) rmSync(work, { recursive: true, force: true });
  }
  const out = join(benchDir, "results.json");
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), runs: RUNS, results }, null, 2));
  console.log("| job | A | A median (s) | B | B median (s) | A/B time ratio (>1: B faster) | peak RSS A / B (MiB) |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of results) {
    const [a, b] = Object.keys(r).filter((k) => k !== "job" && k !== "speedup" && k !== "notes");
    const f = (t) => (r[t]?.median !== undefined ? r[t].median.toFixed(2) : r[t]?.skipped ? "n/a" : "");
    const m = (t) => (r[t]?.peakRssMiB !== undefined ? r[t].peakRssMiB.toFixed(0) : "");
    const ratio = r[a]?.median && r[b]?.median ? (r[a].median / r[b].median).toFixed(2) : "";
    console.log(`| ${r.job} | ${a} | ${f(a)} | ${b} | ${f(b)} | ${ratio} | ${m(a)} / ${m(b)} |`);
  }
  // Where the time goes: on a machine this small the registries' own CPU bounds what any client
  // can reach; the floor is all CPU spent (client + registries) spread over every core.
  console.log(`\n| job | tool | median (s) | tool CPU (s) | registries' CPU (s) | CPU floor on ${CORES} cores (s) |`);
  console.log("|---|---|---|---|---|---|");
  for (const r of results) {
    for (const [tool, v] of Object.entries(r)) {
      if (tool === "job" || tool === "speedup" || tool === "notes" || v?.cpu === undefined) continue;
      console.log(`| ${r.job} | ${tool} | ${v.median.toFixed(2)} | ${v.cpu.toFixed(2)} | ${v.serverCpu.toFixed(2)} | ${((v.cpu + v.serverCpu) / CORES).toFixed(2)} |`);
    }
  }
  for (const r of results) if (r.notes) console.log(`\n${r.job}: ${r.notes}`);
  console.error(`bench: results in ${out}`);
}

main().catch((err) => {
  console.error(`bench: ${err.stack ?? err}`);
  process.exit(1);
});
