/**
 * What the bundle verbs share: the connected side's (`commands/bundle.ts`: lock, plan, export)
 * and the air-gapped side's (`commands/offline.ts`: verify, import), which are separate modules
 * so that the offline verbs load neither YAML nor semver.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { AirlockError, BUNDLE_METADATA_PATH, type BundleEvent, BundleReader, type ErrorCode, isAirlockError, isNotFound } from "@airlock/core";
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { verifyBundleMetadataWithKeyFiles } from "../signing/index.js";

/** Adds the progress and report options every bundle verb takes: -q, --json, --report FILE. */
export const reportOptions = (cmd: Command) =>
  cmd
    .option("-q, --quiet", "print no progress")
    .option("--json", "print progress as NDJSON events on stderr")
    .option("--report <file>", "also write the summary as JSON to this file");

/** Writes the JSON report when asked. */
export async function writeReport(opts: Record<string, unknown>, report: unknown): Promise<void> {
  if (!opts.report) return;
  const path = opts.report as string;
  try {
    // Its directory is made as needed: a report must not be lost after the work is done.
    await mkdir(dirname(resolve(path)), { recursive: true });
    await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
  } catch (cause) {
    throw new AirlockError("ERR_IO", `cannot write the report ${path}: ${(cause as Error).message}; the run itself ended before this (its result is above); give --report a writable path`, { cause });
  }
}

/**
 * Ends a run's progress stream on stderr: with --json an NDJSON `summary` event carrying `fields`
 * (and `line` as its message), else `line` if any (also with --quiet: it tells how far a failed
 * run got, beside its error).
 */
export function writeSummary(cli: Pick<CliContext, "stderr">, opts: Record<string, unknown>, line: string | undefined, fields: Record<string, unknown>): void {
  if (opts.json) cli.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), type: "summary", ...fields, ...(line ? { message: line } : {}) })}\n`);
  else if (line) cli.stderr.write(`${line}\n`);
}

/** The error of a failed run, as its report gives it: the message and, for an AirlockError, its code. */
export function errorReport(err: unknown): { error: string; code?: string } {
  return { error: err instanceof Error ? err.message : String(err), ...(isAirlockError(err) ? { code: err.code } : {}) };
}

/** The detached signature of a bundle: `BUNDLE.sig` next to the bundle file (or its volumes' base name). */
export function signaturePathFor(paths: string[]): string {
  return `${(paths[0] as string).replace(/\.\d{3}$/, "")}.sig`;
}

/** The exact bytes of a bundle's `airlock/bundle.json`, which commit to every digest in it. */
export async function bundleMetadataBytes(bundle: string | string[], signal?: AbortSignal): Promise<Buffer> {
  const reader = await BundleReader.open(bundle, signal ? { signal } : {});
  try {
    const entry = reader.entry(BUNDLE_METADATA_PATH);
    if (!entry) throw new AirlockError("ERR_INVALID_LAYOUT", `${Array.isArray(bundle) ? bundle.join(" ") : bundle} has no ${BUNDLE_METADATA_PATH}: it is not a complete airlock bundle, so it cannot be signed or checked against a signature`);
    return await reader.readEntry(entry, 256 * 1024 * 1024);
  } finally {
    await reader.close();
  }
}

/**
 * Checks a bundle's signature (`--key`/`--verify-key`): the detached signature over its metadata
 * must verify with one of `keyFiles`. Throws ERR_SIGNATURE for an unsigned, wrongly signed or
 * altered bundle. Returns the signer's fingerprint.
 */
export async function checkBundleSignature(paths: string[], keyFiles: string[], signatureFile: string | undefined, flag: string, signal?: AbortSignal): Promise<string> {
  const sigPath = signatureFile ?? signaturePathFor(paths);
  let signature: Buffer;
  try {
    signature = await readFile(sigPath);
  } catch {
    throw new AirlockError("ERR_SIGNATURE", `${paths.join(" ")} is not signed: no signature file ${sigPath}; export it with --sign-key, or give the signature with --signature FILE`);
  }
  const metadata = await bundleMetadataBytes(paths.length === 1 ? (paths[0] as string) : paths, signal);
  const signer = await verifyBundleMetadataWithKeyFiles(metadata, signature, keyFiles, flag);
  return signer.keyFingerprint;
}

/** A duration for the summaries: `1.2 s`. */
export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Adapts the core listener (bundle events are a superset of progress events). */
export function listener(l: (e: never) => void): (e: BundleEvent) => void {
  return l as (e: BundleEvent) => void;
}

/**
 * The error that ends a `--keep-going` run some of whose images failed (`errors`: their errors):
 * ERR_IMAGE_NOT_FOUND (exit status 2) only when every failure is an image that does not exist,
 * else the code of the first other failure (exit status 1; ERR_IO for an error without a code) —
 * the rule of `export --keep-going`.
 */
export function keepGoingError(errors: readonly unknown[], message: string): AirlockError {
  const other = errors.find((e) => !isNotFound(e));
  const code: ErrorCode = other === undefined ? "ERR_IMAGE_NOT_FOUND" : isAirlockError(other) ? other.code : "ERR_IO";
  return new AirlockError(code, message, { cause: other ?? errors[0] });
}
