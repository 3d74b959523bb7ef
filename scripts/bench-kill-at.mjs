#!/usr/bin/env node
// Runs an airlock command that prints NDJSON progress (--json) and SIGKILLs it once a fraction of
// its blob bytes is written (summed from blob-progress and blob-done events against the
// bundle-plan total), as a power cut or a killed job would. Used by bench.mjs ("resume").
//
//   node scripts/bench-kill-at.mjs FRACTION COMMAND ARGS… (the command must print --json events)
import { spawn } from "node:child_process";

const [fraction, cmd, ...rest] = process.argv.slice(2);
const at = Number(fraction);
const child = spawn(cmd, rest, { stdio: ["ignore", "ignore", "pipe"] });
let total = 0;
const progress = new Map();
let buf = "";
let killed = false;
child.stderr.on("data", (chunk) => {
  buf += chunk;
  let nl = buf.indexOf("\n");
  while (nl >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    nl = buf.indexOf("\n");
    let e;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if (e.type === "bundle-plan") total = e.bytes;
    else if (e.type === "blob-progress") progress.set(e.digest, e.bytes);
    else if (e.type === "blob-done") progress.set(e.digest, e.size);
    let written = 0;
    for (const n of progress.values()) written += n;
    if (!killed && total > 0 && written >= at * total) {
      killed = child.kill("SIGKILL");
      console.error(`bench-kill-at: killed at ${((100 * written) / total).toFixed(0)} % (${written} of ${total} bytes)`);
    }
  }
});
child.on("exit", (code, signal) => {
  if (!killed) {
    console.error(`bench-kill-at: the command ended (${signal ?? code}) before ${at * 100} % was written`);
    process.exit(1);
  }
  process.exit(0);
});
