/**
 * The command-line pieces the entry needs before it knows the verb — kept apart from flags.ts,
 * whose registry settings load YAML and @airlock/core, so that `airlock --version` or a verb's
 * start does not pay for them.
 */
import { UsageError } from "./errors.js";

/** Flags that are optional booleans in skopeo (`--tls-verify` alone means true). */
const OPTIONAL_BOOLS = /^--((src-|dest-)?tls-verify)$/;

/**
 * Rewrites skopeo's optional-boolean flags so the parser sees a value: `--tls-verify` alone
 * becomes `--tls-verify=true`; `--tls-verify=false` stays as it is.
 */
export function normalizeArgv(argv: string[]): string[] {
  return argv.map((a) => (OPTIONAL_BOOLS.test(a) ? `${a}=true` : a));
}

/** Parses a Go-style duration (`500ms`, `2s`, `1m30s`) into milliseconds. */
export function parseDuration(v: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let matched = "";
  for (const m of v.matchAll(re)) {
    const n = Number(m[1]);
    total += n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const)[m[2] as "ms" | "s" | "m" | "h"];
    matched += m[0];
  }
  if (matched !== v || v === "") throw new UsageError(`invalid duration ${JSON.stringify(v)}: use e.g. 500ms, 2s, 1m30s`);
  return total;
}
