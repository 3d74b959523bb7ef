#!/usr/bin/env node
/**
 * run-tests.mjs — runs the whole vitest suite and ends with one machine-readable count line.
 *
 *   node scripts/run-tests.mjs [VITEST ARGS...]        (`npm run ci:test`)
 *
 * Streams vitest's own output, then prints as the very last line of stdout
 *
 *   N passed, N failed[, N skipped]
 *
 * counted from vitest's JSON report (numPassedTests, numFailedTests, numPendingTests +
 * numTodoTests). A test file that fails before any of its tests runs (an import error, a failing
 * beforeAll) counts as one failed test, and so does an error outside any test when vitest fails
 * without a failed test, so the line never says "0 failed" for a failed run. Exits with vitest's
 * exit code; if the report is missing, prints "0 passed, 1 failed" and exits non-zero.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "airlock-tests-"));
const report = join(dir, "results.json");
const args = [
  "vitest",
  "run",
  "--reporter=default",
  "--reporter=json",
  `--outputFile=${report}`,
  ...process.argv.slice(2),
];

const child = spawn("npx", args, { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => child.kill(signal));
}
const code = await new Promise((resolveExit) => {
  child.on("error", (err) => {
    console.error(`run-tests: could not start vitest: ${err.message}`);
    resolveExit(1);
  });
  child.on("close", (status, signal) => resolveExit(status ?? (signal ? 1 : 0)));
});

let result;
try {
  result = JSON.parse(readFileSync(report, "utf8"));
} catch (err) {
  console.error(`run-tests: vitest wrote no readable JSON report (${err.code ?? err.message})`);
}
rmSync(dir, { recursive: true, force: true });

if (!result) {
  console.log("0 passed, 1 failed");
  process.exit(code === 0 ? 1 : code);
}

const passed = result.numPassedTests ?? 0;
let failed = result.numFailedTests ?? 0;
const skipped = (result.numPendingTests ?? 0) + (result.numTodoTests ?? 0);
// Files that failed without a failed test in them (import error, failing hook).
for (const file of result.testResults ?? []) {
  const anyFailed = (file.assertionResults ?? []).some((t) => t.status === "failed");
  if (file.status === "failed" && !anyFailed) failed += 1;
}
if (code !== 0 && failed === 0) failed = 1;

console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
process.exit(code !== 0 ? code : failed > 0 ? 1 : 0);
