/**
 * skopeo's reusable flag groups (cmd/skopeo/utils.go): docker image flags with a `src-`/`dest-`
 * prefix or none, retry flags, and their translation into @airlock/core's plain options.
 */
import type { DockerContext, Platform, SystemContext } from "@airlock/core";
import { type Command, Option } from "commander";
import { UsageError } from "./errors.js";

import { parseDuration } from "./argv.js";

export { normalizeArgv, parseDuration } from "./argv.js";

/** Parses a skopeo boolean flag value. */
export function parseBool(value: string): boolean {
  if (/^(true|1|t|yes)$/i.test(value)) return true;
  if (/^(false|0|f|no)$/i.test(value)) return false;
  throw new UsageError(`invalid boolean ${JSON.stringify(value)}: use true or false, e.g. --tls-verify=false`);
}

/** The registry a flag with `prefix` applies to, as help texts name it. */
function registryOf(prefix: "" | "src-" | "dest-"): string {
  return prefix === "src-" ? "the source registry" : prefix === "dest-" ? "the destination registry" : "the registry";
}

/**
 * A boolean flag whose name starts with `--no-` and is not a negation: commander would read
 * `--no-creds` as "`--creds` false" and lose skopeo's check that the two are not given together.
 */
function flagNamedNo(flags: string, description: string): Option {
  const option = new Option(flags, description);
  option.negate = false;
  return option;
}

/** Adds skopeo's docker image flags, with `prefix` ("src-", "dest-" or ""), to a command. */
export function addDockerFlags(cmd: Command, prefix: "" | "src-" | "dest-"): Command {
  const registry = registryOf(prefix);
  const daemon = prefix === "src-" ? "the source's Docker daemon" : prefix === "dest-" ? "the destination's Docker daemon" : "the Docker daemon";
  if (prefix) cmd.option(`--${prefix}authfile <path>`, `auth file for ${registry} (overrides --authfile)`);
  return cmd
    .option(`--${prefix}creds <user[:password]>`, `credentials for ${registry}; prompts for nothing`)
    .option(`--${prefix}username <name>`, `username for ${registry} (with --${prefix}password)`)
    .option(`--${prefix}password <password>`, `password for ${registry} (with --${prefix}username)`)
    .option(`--${prefix}registry-token <token>`, `bearer token for ${registry}, sent as is`)
    .option(`--${prefix}cert-dir <dir>`, `directory with *.crt CAs and a *.cert/*.key client pair for ${registry}`)
    .option(`--${prefix}tls-verify <bool>`, `verify the TLS certificate of ${registry}; false also allows plain HTTP`, parseBool)
    .addOption(flagNamedNo(`--${prefix}no-creds`, `access ${registry} anonymously`))
    .option(`--${prefix}daemon-host <host>`, `docker-daemon: ${daemon}, e.g. unix:///var/run/docker.sock or tcp://HOST:PORT (default: DOCKER_HOST, else the local socket)`);
}

/**
 * Adds skopeo's image flags (`imageFlags`: the docker flags and `--PREFIXshared-blob-dir`) to a
 * command. airlock's oci: layouts always keep their blobs under blobs/, so a shared blob
 * directory is refused by {@link systemContextFrom} rather than silently ignored.
 */
export function addImageFlags(cmd: Command, prefix: "" | "src-" | "dest-"): Command {
  addDockerFlags(cmd, prefix);
  const side = prefix === "src-" ? " of the source" : prefix === "dest-" ? " of the destination" : "";
  return cmd.option(`--${prefix}shared-blob-dir <dir>`, `a blob directory shared by oci: layouts${side} (skopeo's; airlock refuses it: its layouts keep their blobs under blobs/)`);
}

/**
 * Adds what skopeo's copy and sync take beside the docker flags and airlock does not do: the
 * hidden `--screds`/`--dcreds` (old names of --src-creds/--dest-creds) and `--tls-verify`
 * (deprecated: both sides), which work; and the GnuPG, Sequoia, sigstore and ocicrypt flags,
 * which are refused with what to do instead — a copy that was asked to sign or encrypt must not
 * quietly do neither.
 */
export function addSkopeoCopyFlags(cmd: Command, warn: (message: string) => void, options: { encryption?: boolean } = {}): Command {
  const collect = (v: string, prev: string[] = []) => [...prev, v];
  cmd
    .addOption(new Option("--screds <user[:password]>", "old name of --src-creds").hideHelp())
    .addOption(new Option("--dcreds <user[:password]>", "old name of --dest-creds").hideHelp())
    .addOption(new Option("--tls-verify <bool>", "deprecated: --src-tls-verify and --dest-tls-verify").argParser(parseBool).hideHelp())
    .option("--sign-by <fingerprint>", "skopeo's GnuPG signing; airlock refuses it: sign with --sign-by-key FILE (gpg --export-secret-keys --armor FINGERPRINT > FILE)")
    .option("--sign-by-sq-fingerprint <fingerprint>", "skopeo's Sequoia-PGP signing; airlock refuses it: use --sign-by-key FILE")
    .option("--sign-by-sigstore <param-file>", "skopeo's sigstore signing; airlock refuses it (it writes simple signatures: --sign-by-key FILE)")
    .option("--sign-by-sigstore-private-key <path>", "skopeo's sigstore signing; airlock refuses it (it writes simple signatures: --sign-by-key FILE)");
  if (options.encryption) {
    cmd
      .option("--encryption-key <protocol:keyfile>", "skopeo's experimental layer encryption (ocicrypt); airlock refuses it", collect)
      .option("--encrypt-layer <n>", "skopeo's experimental layer encryption (ocicrypt); airlock refuses it", collect)
      .option("--decryption-key <key[:passphrase]>", "skopeo's experimental layer decryption (ocicrypt); airlock refuses it", collect);
  }
  cmd.hook("preAction", (_program, action) => {
    const opts = action.opts();
    const refused: [string, string][] = [
      ["signBy", "--sign-by: airlock signs with a key file, not a GnuPG keyring; export the key (gpg --export-secret-keys --armor FINGERPRINT > key.asc) and use --sign-by-key key.asc"],
      ["signBySqFingerprint", "--sign-by-sq-fingerprint: airlock signs with a key file, not a Sequoia keystore; export the key and use --sign-by-key FILE"],
      ["signBySigstore", "--sign-by-sigstore: airlock writes simple signing (OpenPGP) signatures, not sigstore ones; sign with cosign after the copy, or use --sign-by-key FILE"],
      ["signBySigstorePrivateKey", "--sign-by-sigstore-private-key: airlock writes simple signing (OpenPGP) signatures, not sigstore ones; sign with cosign after the copy, or use --sign-by-key FILE"],
      ["encryptionKey", "--encryption-key: airlock does not encrypt layers (ocicrypt); copy with skopeo to encrypt"],
      ["encryptLayer", "--encrypt-layer: airlock does not encrypt layers (ocicrypt); copy with skopeo to encrypt"],
      ["decryptionKey", "--decryption-key: airlock does not decrypt layers (ocicrypt); copy with skopeo to decrypt"],
    ];
    for (const [key, message] of refused) if (opts[key] !== undefined) throw new UsageError(`${message}`);
    if (opts.tlsVerify !== undefined) warn("'--tls-verify' is deprecated, use --src-tls-verify and --dest-tls-verify; it applies to both sides here");
  });
  return cmd;
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

type Opts = Record<string, unknown>;

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Builds the SystemContext for one side from parsed flags (`prefix` as in addDockerFlags). */
export function systemContextFrom(opts: Opts, prefix: "" | "src-" | "dest-", globals: Opts = {}): SystemContext {
  const get = (name: string) => opts[camel(`${prefix}${name}`)];
  const docker: DockerContext = {};
  const legacy = prefix === "src-" ? "screds" : prefix === "dest-" ? "dcreds" : undefined;
  const legacyCreds = legacy === undefined ? undefined : (opts[legacy] as string | undefined);
  if (legacyCreds !== undefined && get("creds") !== undefined) throw new UsageError(`--${legacy} is the old name of --${prefix}creds: give one of them`);
  const noCreds = get("noCreds") === true;
  const creds = (get("creds") ?? legacyCreds) as string | undefined;
  const username = get("username") as string | undefined;
  const password = get("password") as string | undefined;
  const p = `--${prefix}`;
  if (get("sharedBlobDir") !== undefined) {
    throw new UsageError(`${p}shared-blob-dir: airlock's oci: layouts keep their blobs under blobs/ and cannot use a shared blob directory; copy the image into a layout of its own`);
  }
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
  // skopeo's deprecated --tls-verify of copy and sync applies to a side without its own flag.
  const tls = (get("tlsVerify") ?? (prefix ? opts.tlsVerify : undefined)) as boolean | undefined;
  if (tls !== undefined) docker.tlsVerify = tls;
  const authFile = (get("authfile") ?? opts.authfile ?? process.env.REGISTRY_AUTH_FILE) as string | undefined;
  if (authFile) docker.authFile = authFile;
  if (opts.retryTimes !== undefined) docker.retryTimes = opts.retryTimes as number;
  if (opts.retryDelay !== undefined) docker.retryDelayMs = opts.retryDelay as number;
  const ctx: SystemContext = { docker };
  const daemonHost = get("daemonHost") as string | undefined;
  if (daemonHost !== undefined) ctx.dockerDaemonHost = daemonHost;
  if (globals.tmpdir) ctx.tmpDir = globals.tmpdir as string;
  Object.assign(docker, globalRegistrySettings(globals));
  return ctx;
}

/**
 * The registry settings of the global flags, for every image of a run: --user-agent-prefix,
 * --registries-conf and --tls-details (its file parsed into `globals.baseTls` by the CLI).
 */
export function globalRegistrySettings(globals: Opts): Pick<DockerContext, "userAgent" | "registriesConf" | "tlsDetails" | "baseTls"> {
  const out: Pick<DockerContext, "userAgent" | "registriesConf" | "tlsDetails" | "baseTls"> = {};
  if (globals.userAgentPrefix) out.userAgent = `${globals.userAgentPrefix as string} airlock`;
  if (globals.registriesConf) out.registriesConf = globals.registriesConf as string;
  if (globals.tlsDetails) {
    out.tlsDetails = globals.tlsDetails as string;
    // Read by the CLI before the verb runs (cli.ts), so that YAML is loaded only when asked for.
    if (globals.baseTls === undefined) throw new UsageError(`--tls-details ${out.tlsDetails}: the file was not read (internal error)`);
    out.baseTls = globals.baseTls as DockerContext["baseTls"];
  }
  return out;
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
