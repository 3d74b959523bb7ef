/**
 * skopeo's reusable flag groups (cmd/skopeo/utils.go): docker image flags with a `src-`/`dest-`
 * prefix or none, retry flags, and their translation into @airlock/core's plain options.
 */
import type { DockerContext, Platform, SystemContext } from "@airlock/core";
import type { Command } from "commander";
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

/** Parses a skopeo boolean flag value. */
export function parseBool(value: string): boolean {
  if (/^(true|1|t|yes)$/i.test(value)) return true;
  if (/^(false|0|f|no)$/i.test(value)) return false;
  throw new UsageError(`invalid boolean ${JSON.stringify(value)}: use true or false, e.g. --tls-verify=false`);
}

/** Adds skopeo's docker image flags, with `prefix` ("src-", "dest-" or ""), to a command. */
export function addDockerFlags(cmd: Command, prefix: "" | "src-" | "dest-"): Command {
  const side = prefix === "src-" ? " of the source" : prefix === "dest-" ? " of the destination" : "";
  if (prefix) cmd.option(`--${prefix}authfile <path>`, `auth file${side} (overrides --authfile)`);
  return cmd
    .option(`--${prefix}creds <user[:password]>`, `credentials${side} registry; prompts for nothing`)
    .option(`--${prefix}username <name>`, `username${side} registry (with --${prefix}password)`)
    .option(`--${prefix}password <password>`, `password${side} registry (with --${prefix}username)`)
    .option(`--${prefix}registry-token <token>`, `bearer token${side} registry, sent as is`)
    .option(`--${prefix}cert-dir <dir>`, `directory with *.crt CAs and a *.cert/*.key client pair${side}`)
    .option(`--${prefix}tls-verify <bool>`, `verify TLS${side}; false also allows plain HTTP`, parseBool)
    .option(`--${prefix}no-creds`, `access the registry${side} anonymously`)
    .option(`--${prefix}daemon-host <host>`, `docker-daemon: the Docker daemon${side}, e.g. unix:///var/run/docker.sock or tcp://HOST:PORT (default: DOCKER_HOST, else the local socket)`);
}

/** Adds skopeo's `--retry-times` and `--retry-delay` to a command. */
export function addRetryFlags(cmd: Command): Command {
  return cmd
    .option("--retry-times <n>", "retry a failed registry operation this many times", (v) => parseCount(v, "--retry-times"))
    .option("--retry-delay <duration>", "fixed delay between retries, e.g. 2s (default: exponential backoff)", parseDuration);
}

/** Parses a non-negative integer flag. */
export function parseCount(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} takes a whole number, got ${JSON.stringify(v)}`);
  return n;
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

type Opts = Record<string, unknown>;

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Builds the SystemContext for one side from parsed flags (`prefix` as in addDockerFlags). */
export function systemContextFrom(opts: Opts, prefix: "" | "src-" | "dest-", globals: Opts = {}): SystemContext {
  const get = (name: string) => opts[camel(`${prefix}${name}`)];
  const docker: DockerContext = {};
  const creds = get("creds") as string | undefined;
  const username = get("username") as string | undefined;
  const password = get("password") as string | undefined;
  const noCreds = get("noCreds") === true;
  const p = `--${prefix}`;
  if (creds !== undefined && noCreds) throw new UsageError(`${p}creds and ${p}no-creds cannot be used together`);
  if (username !== undefined && noCreds) throw new UsageError(`${p}username and ${p}no-creds cannot be used together`);
  if (creds !== undefined && username !== undefined) throw new UsageError(`${p}creds and ${p}username cannot be used together`);
  if ((username === undefined) !== (password === undefined)) throw new UsageError(`${p}username and ${p}password must be given together`);
  if (creds !== undefined) docker.credentials = parseCreds(creds, `${p}creds`);
  if (username !== undefined) docker.credentials = { username, password: password ?? "" };
  if (noCreds) docker.noCreds = true;
  const token = get("registryToken") as string | undefined;
  if (token !== undefined) docker.registryToken = token;
  const certDir = get("certDir") as string | undefined;
  if (certDir !== undefined) docker.certDir = certDir;
  const tls = get("tlsVerify") as boolean | undefined;
  if (tls !== undefined) docker.tlsVerify = tls;
  const authFile = (get("authfile") ?? opts.authfile ?? process.env.REGISTRY_AUTH_FILE) as string | undefined;
  if (authFile) docker.authFile = authFile;
  if (opts.retryTimes !== undefined) docker.retryTimes = opts.retryTimes as number;
  if (opts.retryDelay !== undefined) docker.retryDelayMs = opts.retryDelay as number;
  const ctx: SystemContext = { docker };
  const daemonHost = get("daemonHost") as string | undefined;
  if (daemonHost !== undefined) ctx.dockerDaemonHost = daemonHost;
  if (globals.tmpdir) ctx.tmpDir = globals.tmpdir as string;
  return ctx;
}

/** Parses `USER[:PASSWORD]` as skopeo does (split at the first colon; empty user refused). */
export function parseCreds(s: string, flag: string): { username: string; password: string } {
  const i = s.indexOf(":");
  const username = i < 0 ? s : s.slice(0, i);
  if (!username) throw new UsageError(`${flag}: the username is empty; use ${flag} USER[:PASSWORD]`);
  return { username, password: i < 0 ? "" : s.slice(i + 1) };
}

/** The platform chosen by the global --override-os/--override-arch/--override-variant flags. */
export function platformFrom(globals: Opts): Partial<Platform> {
  const p: Partial<Platform> = {};
  if (globals.overrideOs) p.os = globals.overrideOs as string;
  if (globals.overrideArch) p.architecture = globals.overrideArch as string;
  if (globals.overrideVariant) p.variant = globals.overrideVariant as string;
  return p;
}
