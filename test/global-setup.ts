/**
 * Builds the packages once before the suite, so tests that run the real `airlock` binary (and
 * child processes importing packages/core/dist) see the current sources, then bundles the CLI
 * (scripts/build-cli.mjs) so that the binary starts as it does after `npm ci`. A failed build is
 * reported but does not stop in-process tests; tests that need the binary then fail on their own.
 * A failed bundle only makes the binary slower to start (it runs dist/cli.js instead).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export default function setup(): () => void {
  // The binary's code cache (apps/airlock/bin/load-bundle.js) goes to a directory of this run's,
  // not the user's ~/.cache: the test processes inherit the variable.
  const compileCache = mkdtempSync(join(tmpdir(), "airlock-test-compile-cache-"));
  process.env.AIRLOCK_COMPILE_CACHE ??= compileCache;
  const root = fileURLToPath(new URL("..", import.meta.url));
  const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
  try {
    execFileSync(process.execPath, [tsc, "-b", "apps/airlock"], { cwd: root, stdio: "pipe" });
  } catch (err) {
    process.stderr.write(`global setup: build failed; tests that run the binary will fail:\n${(err as { stdout?: Buffer }).stdout ?? err}\n`);
  }
  try {
    execFileSync(process.execPath, [fileURLToPath(new URL("../scripts/build-cli.mjs", import.meta.url)), "--quiet"], { cwd: root, stdio: "pipe" });
  } catch (err) {
    process.stderr.write(`global setup: bundling the CLI failed; the binary runs unbundled:\n${(err as { stderr?: Buffer }).stderr ?? err}\n`);
  }
  return () => rmSync(compileCache, { recursive: true, force: true });
}
