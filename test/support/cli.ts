/**
 * Runs the airlock CLI for tests: in-process (fast, same code path as the binary) or as a real
 * child process of the built binary (for exit codes, signals and stdout/stderr separation).
 */
import { spawn } from "node:child_process";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { main } from "../../apps/airlock/src/cli.js";
import { createProgress, progressMode } from "../../apps/airlock/src/progress.js";

/** What a run printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Path of the built CLI entry point (built by the global setup). */
export const AIRLOCK_BIN = fileURLToPath(new URL("../../apps/airlock/bin/airlock.js", import.meta.url));

/**
 * Runs `airlock ARGS` in this process with captured stdout/stderr. With AIRLOCK_TEST_VIA_BIN=1 it
 * runs the built binary instead (slower): the bundle the users run, which can differ from the
 * sources (a CommonJS dependency imported dynamically once did).
 */
export async function runCli(args: string[]): Promise<CliRun> {
  if (process.env.AIRLOCK_TEST_VIA_BIN === "1") return runBin(args);
  const out = new PassThrough();
  const err = new PassThrough() as unknown as NodeJS.WriteStream;
  let stdout = "";
  let stderr = "";
  out.on("data", (c) => {
    stdout += c;
  });
  (err as unknown as PassThrough).on("data", (c) => {
    stderr += c;
  });
  const code = await main(args, (signal, globals) => ({
    stdout: out,
    stderr: err,
    signal,
    globals,
    progress: (opts) => createProgress(progressMode(opts, err), err),
  }));
  return { code, stdout, stderr };
}

/** Runs `command ARGS` (stdin: `input`, or empty) and resolves with its exit code and output when it exits. */
export function runCommand(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => {
      stdout += c;
    });
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.on("error", () => {}); // a command that exits without reading its input
    child.stdin.end(options.input ?? "");
  });
}

/** Runs the real `airlock` binary with `args`; resolves when it exits. */
export function runBin(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliRun> {
  return runCommand(process.execPath, [AIRLOCK_BIN, ...args], { env: { ...process.env, ...options.env }, ...(options.input !== undefined ? { input: options.input } : {}) });
}
