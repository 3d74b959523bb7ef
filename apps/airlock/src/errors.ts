/**
 * How the CLI reports a failure: one line on stderr saying what failed and what to do, and
 * skopeo's exit codes (1 error, 2 image not found). Stack traces only with --debug.
 */
import { isAirlockError, isNotFound } from "@airlock/core";

/** Exit code: success. */
export const EXIT_OK = 0;
/** Exit code: any error. */
export const EXIT_ERROR = 1;
/** Exit code: the image was not found (skopeo's `isNotFoundImageError`). */
export const EXIT_NOT_FOUND = 2;

/** An error in how the command was called (bad flag combination, missing argument). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The exit code for an error. */
export function exitCodeFor(err: unknown): number {
  return isNotFound(err) ? EXIT_NOT_FOUND : EXIT_ERROR;
}

/** Formats an error as the one line the user sees (plus causes and stack with `debug`). */
export function formatError(err: unknown, debug: boolean): string {
  if (!(err instanceof Error)) return `airlock: ${String(err)}`;
  let line = `airlock: ${err.message}`;
  if (isAirlockError(err) && debug) line += ` [${err.code}]`;
  if (!debug) return line;
  const parts = [line, err.stack ?? ""];
  let cause = (err as { cause?: unknown }).cause;
  while (cause instanceof Error) {
    parts.push(`caused by: ${cause.stack ?? cause.message}`);
    cause = (cause as { cause?: unknown }).cause;
  }
  return parts.join("\n");
}
