#!/usr/bin/env node
// Start-up benchmark: `airlock --version`, `airlock inspect oci:fixtures/oci:single` and a
// one-image `airlock copy docker://… oci:…` (from a local docker-registry) on Node (bundled, as
// `npm ci` builds it, and unbundled: AIRLOCK_NO_BUNDLE=1), Bun, Deno and the single-file
// executable (dist/airlock-PLATFORM from `npm run compile`), beside skopeo doing the same. Each
// cell is the median of N runs (default 10, after one warm-up run): wall time, and CPU time
// (user + system, from GNU time) which a busy machine disturbs less.
//
//   node scripts/bench-startup.mjs [--runs N] [--no-build]
//
// The bundle is rebuilt first (scripts/build-cli.mjs) unless --no-build. A runner whose binary is
// missing is listed as "absent"; the copy column is "-" without docker-registry.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const runsArg = argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(argv[runsArg + 1]) : 10;
const cli = join(root, "apps", "airlock", "bin", "airlock.js");
const bin = (name) => join(root, "node_modules", ".bin", name);
const exe = join(root, "dist", `airlock-${process.platform}-${process.arch}`);
const onPath = (name) => spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).stdout.trim();
const gnuTime = existsSync("/usr/bin/time") ? "/usr/bin/time" : undefined;
const work = mkdtempSync(join(tmpdir(), "airlock-bench-startup-"));

if (!argv.includes("--no-build")) execFileSync(process.execPath, [join(root, "scripts", "build-cli.mjs")], { stdio: "inherit" });

const runners = [
  { name: "airlock (node)", argv: [process.execPath, cli] },
  { name: "airlock (node, unbundled)", argv: [process.execPath, cli], env: { AIRLOCK_NO_BUNDLE: "1" } },
  { name: "airlock (bun)", argv: [bin("bun"), cli] },
  { name: "airlock (deno)", argv: [bin("deno"), "run", "-A", cli] },
  { name: "airlock (compiled)", argv: [exe], missing: "run `npm run compile`" },
  { name: "skopeo", argv: [onPath("skopeo") || "skopeo"], skopeo: true },
];

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts docker-registry with the fixture image pushed to it (by skopeo); undefined if absent. */
async function startRegistry() {
  if (!onPath("docker-registry") || !onPath("skopeo")) return undefined;
  const port = await freePort();
  const config = join(work, "registry.yml");
  writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, "registry")}\nhttp:\n  addr: 127.0.0.1:${port}\nlog:\n  level: error\n`);
  const child = spawn("docker-registry", ["serve", config], { stdio: "ignore" });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const r = spawnSync("skopeo", ["copy", "-q", "--dest-tls-verify=false", "oci:fixtures/oci:single", `docker://${host}/bench/single:1`], { cwd: root });
    if (r.status === 0) return { host, stop: () => child.kill() };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  throw new Error("bench-startup: docker-registry did not accept the fixture image");
}

const registry = await startRegistry();
let copies = 0;
const tasks = [
  { name: "--version", args: () => ["--version"] },
  { name: "inspect oci:fixtures/oci:single", args: () => ["inspect", "oci:fixtures/oci:single"] },
  {
    name: "copy docker://… oci:… (1 image)",
    // A new layout each run: a copy into one that has the blobs would move nothing.
    args: (runner) => (registry ? ["copy", "-q", ...(runner.skopeo ? ["--preserve-digests"] : []), "--src-tls-verify=false", `docker://${registry.host}/bench/single:1`, `oci:${join(work, `layout-${copies++}`)}:single`] : undefined),
  },
];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs argv once; returns wall and CPU milliseconds. */
function time(argv, env) {
  const times = join(work, "time.txt");
  const cmd = gnuTime ? [gnuTime, "-f", "%U %S", "-o", times, ...argv] : argv;
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd[0], cmd.slice(1), { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  const wall = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed (exit ${r.status}): ${String(r.stderr).trim()}`);
  const cpu = gnuTime ? readFileSync(times, "utf8").trim().split(/\s+/).slice(-2).reduce((n, s) => n + Number(s) * 1000, 0) : Number.NaN;
  return { wall, cpu };
}

const rows = [];
try {
  for (const runner of runners) {
    const row = [runner.name];
    for (const task of tasks) {
      if (!existsSync(runner.argv[0])) {
        row.push(`absent${runner.missing ? ` (${runner.missing})` : ""}`);
        continue;
      }
      if (task.args(runner) === undefined) {
        row.push("-");
        continue;
      }
      time([...runner.argv, ...task.args(runner)], runner.env); // warm-up: file cache, Deno's and Bun's caches
      const samples = Array.from({ length: RUNS }, () => time([...runner.argv, ...task.args(runner)], runner.env));
      const cpu = median(samples.map((s) => s.cpu));
      row.push(`${median(samples.map((s) => s.wall)).toFixed(0)} ms${Number.isNaN(cpu) ? "" : ` (cpu ${cpu.toFixed(0)} ms)`}`);
    }
    rows.push(row);
    process.stderr.write(`bench-startup: ${row.join("  ")}\n`);
  }
} finally {
  registry?.stop();
  rmSync(work, { recursive: true, force: true });
}

const header = ["runner", ...tasks.map((t) => t.name)];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
console.log(`Start-up, median of ${RUNS} runs: wall time (CPU = user + system) — ${process.platform}-${process.arch}, node ${process.version}\n`);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
