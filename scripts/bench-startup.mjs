#!/usr/bin/env node
// Start-up benchmark: `airlock --version` and `airlock inspect oci:fixtures/oci:single` on Node,
// Bun, Deno and the single-file executable (dist/airlock-PLATFORM from `npm run compile`), beside
// `skopeo --version` and `skopeo inspect` on the same layout. Median wall time of N runs (default
// 10, after one warm-up run each), printed as a table.
//
//   node scripts/bench-startup.mjs [--runs N]
//
// A runner whose binary is missing is listed as "absent" instead of timed.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 10;
const cli = join(root, "apps", "airlock", "bin", "airlock.js");
const bin = (name) => join(root, "node_modules", ".bin", name);
const exe = join(root, "dist", `airlock-${process.platform}-${process.arch}`);
const onPath = (name) => spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).stdout.trim();

const runners = [
  { name: "airlock (node)", argv: [process.execPath, cli] },
  { name: "airlock (bun)", argv: [bin("bun"), cli] },
  { name: "airlock (deno)", argv: [bin("deno"), "run", "-A", cli] },
  { name: "airlock (compiled)", argv: [exe], missing: "run `npm run compile`" },
  { name: "skopeo", argv: [onPath("skopeo") || "skopeo"] },
];
const tasks = [
  { name: "--version", args: ["--version"] },
  { name: "inspect oci:fixtures/oci:single", args: ["inspect", "oci:fixtures/oci:single"] },
];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function time(argv) {
  const started = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed (exit ${r.status}): ${String(r.stderr).trim()}`);
  return ms;
}

const rows = [];
for (const runner of runners) {
  const row = [runner.name];
  for (const task of tasks) {
    if (!existsSync(runner.argv[0])) {
      row.push(`absent${runner.missing ? ` (${runner.missing})` : ""}`);
      continue;
    }
    const argv = [...runner.argv, ...task.args];
    time(argv); // warm-up: file cache, Deno's and Bun's caches
    const samples = Array.from({ length: RUNS }, () => time(argv));
    row.push(`${median(samples).toFixed(0)} ms`);
  }
  rows.push(row);
  process.stderr.write(`bench-startup: ${row.join("  ")}\n`);
}

const header = ["runner", ...tasks.map((t) => t.name)];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
console.log(`Start-up, median of ${RUNS} runs (wall time, ${process.platform}-${process.arch}, node ${process.version})\n`);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
