/**
 * What every command gets from the CLI: global flags, output streams, the cancellation signal and
 * a way to show progress.
 */
import { createProgress, type ProgressDisplay, progressMode } from "./progress.js";

/** The global flags (skopeo's, given before the verb). */
export interface GlobalOptions {
  debug?: boolean;
  overrideOs?: string;
  overrideArch?: string;
  overrideVariant?: string;
  tmpdir?: string;
  commandTimeout?: number;
  insecurePolicy?: boolean;
  /** `--registries-conf`: the registries.conf to read instead of the default lookup. */
  registriesConf?: string;
  /** `--user-agent-prefix`. */
  userAgentPrefix?: string;
  /** `--tls-details`: a containers-tls-details.yaml(5) file. */
  tlsDetails?: string;
  /** The TLS options `--tls-details` gives (set by the CLI once it read the file). */
  baseTls?: unknown;
  /** `--require-signed`. */
  requireSigned?: boolean;
}

/** The environment a command runs in. Tests create one with their own streams. */
export interface CliContext {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
  /** Aborted on SIGINT/SIGTERM or when --command-timeout expires. */
  signal: AbortSignal;
  globals(): GlobalOptions;
  /** A progress display for a command's `--json` / `--quiet` flags. */
  progress(opts: { json?: boolean; quiet?: boolean }): ProgressDisplay;
}

/** Creates the context for a real run. */
export function defaultContext(signal: AbortSignal, globals: () => GlobalOptions): CliContext {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    signal,
    globals,
    progress: (opts) => createProgress(progressMode(opts, process.stderr), process.stderr),
  };
}
