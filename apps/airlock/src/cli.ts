/**
 * The airlock command line: global flags (skopeo's, given before the verb), the verbs, and the
 * mapping of errors to one clear line and skopeo's exit codes.
 */
import { Command, CommanderError } from "commander";
import { type CliContext, defaultContext, type GlobalOptions } from "./context.js";
import { EXIT_ERROR, EXIT_OK, exitCodeFor, formatError, UsageError } from "./errors.js";
import { normalizeArgv, parseDuration } from "./argv.js";
import { VERSION } from "./version.js";

type Register = (program: Command, cli: CliContext) => void;

/**
 * The verbs, each with the module that defines it, loaded on demand: a run loads only its own
 * verb's module (and so only the libraries it needs: OpenPGP, YAML, the registry server…), which
 * keeps start-up short when airlock runs once per image. Help, completion and man load them all.
 */
const MODULES: { verbs: string[]; load: () => Promise<Register> }[] = [
  { verbs: ["copy"], load: async () => (await import("./commands/copy.js")).registerCopy },
  { verbs: ["inspect"], load: async () => (await import("./commands/inspect.js")).registerInspect },
  { verbs: ["manifest-digest"], load: async () => (await import("./commands/manifest-digest.js")).registerManifestDigest },
  { verbs: ["list-tags"], load: async () => (await import("./commands/list-tags.js")).registerListTags },
  { verbs: ["delete"], load: async () => (await import("./commands/delete.js")).registerDelete },
  { verbs: ["login", "logout"], load: async () => (await import("./commands/login.js")).registerLogin },
  { verbs: ["serve"], load: async () => (await import("./commands/serve.js")).registerServe },
  { verbs: ["lock", "plan", "export"], load: async () => (await import("./commands/bundle.js")).registerBundle },
  { verbs: ["verify", "import"], load: async () => (await import("./commands/offline.js")).registerOffline },
  { verbs: ["inventory"], load: async () => (await import("./commands/inventory.js")).registerInventory },
  { verbs: ["mirror-config"], load: async () => (await import("./commands/mirror-config.js")).registerMirrorConfig },
  { verbs: ["sync"], load: async () => (await import("./commands/sync.js")).registerSync },
  { verbs: ["standalone-sign", "standalone-verify"], load: async () => (await import("./commands/standalone.js")).registerStandalone },
  { verbs: ["completion"], load: async () => (await import("./commands/completion.js")).registerCompletion },
  { verbs: ["man"], load: async () => (await import("./commands/man.js")).registerMan },
];

/** Global options that take a value, so that the verb can be found in argv without parsing it. */
const GLOBALS_WITH_VALUE = new Set(["--override-os", "--override-arch", "--override-variant", "--tmpdir", "--command-timeout", "--policy", "--registries.d", "--registries-conf", "--user-agent-prefix", "--tls-details"]);

/** The verb of `argv` (the first word that is not a global option or its value), if any. */
export function verbOf(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith("-")) return a;
    if (GLOBALS_WITH_VALUE.has(a)) i++;
  }
  return undefined;
}

/**
 * Builds the program against `cli`. With `verb`, only that verb's module is loaded (when it is
 * one airlock knows); otherwise — help, completion, an unknown verb — every verb is registered.
 */
export async function buildProgram(cli: CliContext, verb?: string, versionOnly = false): Promise<Command> {
  const program = new Command("airlock");
  program
    .description("Move container images across an air gap, and do everything skopeo does on the way.")
    .version(`airlock version ${VERSION}`, "-v, --version", "print the version")
    .option("--debug", "print debugging information: each registry request (method, URL, status; never credentials) and stack traces on errors")
    .option("--override-os <os>", "use OS instead of this machine's when choosing an image from an index")
    .option("--override-arch <arch>", "use ARCH instead of this machine's when choosing an image from an index")
    .option("--override-variant <variant>", "use VARIANT when choosing an image from an index")
    .option("--tmpdir <dir>", "directory for large temporary files")
    .option("--command-timeout <duration>", "give up after this long, e.g. 10m", parseDuration)
    .option("--policy <path>", "trust policy (policy.json) to enforce instead of the default one ($CONTAINERS_POLICY_JSON, ~/.config/containers/policy.json, /etc/containers/policy.json)")
    .option("--insecure-policy", "accept every image: read no trust policy")
    .option("--registries.d <dir>", "registries.d directory: where registry images keep signatures (lookaside storage)")
    .option("--registries-conf <path>", "registries.conf to use instead of the default lookup ($CONTAINERS_REGISTRIES_CONF, ~/.config/containers/registries.conf, /etc/containers/registries.conf): insecure registries, blocked ones, locations and mirrors")
    .option("--user-agent-prefix <prefix>", "put PREFIX before airlock's User-Agent in registry requests")
    .option("--tls-details <path>", "containers-tls-details.yaml(5) file: minimum TLS version, cipher suites and key-exchange groups for every TLS connection")
    .option("--require-signed", "refuse images whose trust policy requirement does not verify a signature (no insecureAcceptAnything)")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({
      writeOut: (s) => cli.stdout.write(s),
      writeErr: (s) => cli.stderr.write(s),
    })
    .exitOverride();
  program.addHelpText(
    "after",
    `
Image names are TRANSPORT:REFERENCE, as in skopeo:
  docker://HOST[:PORT]/REPO[:TAG|@DIGEST]   a registry (docker.io when HOST is omitted)
  oci:PATH[:NAME]                           an OCI image layout directory (NAME = org.opencontainers.image.ref.name)
  dir:PATH                                  skopeo's directory layout

Trust policy: with neither --policy nor --insecure-policy, airlock enforces the default policy.json;
when no policy file exists anywhere, it accepts every image (skopeo would fail).

Exit status: 0 ok, 1 error, 2 image not found.`,
  );
  const only = MODULES.find((m) => verb !== undefined && m.verbs.includes(verb));
  const load = versionOnly ? [] : only && verb !== "completion" && verb !== "man" ? [only] : MODULES;
  for (const m of load) (await m.load())(program, cli);
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => cli.stdout.write(s), writeErr: (s) => cli.stderr.write(s) });
  return program;
}

/** The NDJSON event of the error that ends a `--json` run. */
function jsonError(code: string, message: string, stack?: string): string {
  return `${JSON.stringify({ time: new Date().toISOString(), type: "error", code, message, ...(stack ? { stack } : {}) })}\n`;
}

/** Runs airlock with `argv` (without the node and script names) and returns the exit code. */
export async function main(argv: string[], make: (signal: AbortSignal, globals: () => GlobalOptions) => CliContext = defaultContext): Promise<number> {
  const controller = new AbortController();
  let program: Command | undefined;
  const cli = make(controller.signal, () => (program?.opts() ?? {}) as GlobalOptions);
  const args = normalizeArgv(argv);
  const verb = verbOf(args);
  program = await buildProgram(cli, verb, verb === undefined && (args.includes("-v") || args.includes("--version")));
  const onSignal = () => controller.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let timer: NodeJS.Timeout | undefined;
  // --json: the verb's events are NDJSON on stderr, and so is the error that ends it.
  let json = false;
  program.hook("preAction", async (_command, action) => {
    json = action.opts().json === true;
    const { commandTimeout: ms, debug, tlsDetails } = (program?.opts() ?? {}) as GlobalOptions;
    // --tls-details: parsed once, here, so that the verbs' modules need no YAML parser.
    if (tlsDetails) program?.setOptionValue("baseTls", (await import("./tls-details.js")).loadTlsDetails(tlsDetails));
    if (ms) timer = setTimeout(() => controller.abort(new Error(`--command-timeout of ${ms} ms expired`)), ms);
    // As skopeo's --debug: one line per registry request (method, URL without its query, status;
    // never credentials or headers), on stderr.
    if (debug) (await import("@airlock/core")).setRegistryDebugLogger((line) => cli.stderr.write(`airlock: debug: ${line}\n`));
  });
  try {
    await program.parseAsync(args, { from: "user" });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed help, the version or a usage message.
      return err.exitCode === 0 ? EXIT_OK : EXIT_ERROR;
    }
    const debug = Boolean(program.opts().debug);
    if (err instanceof UsageError) {
      cli.stderr.write(`airlock: ${err.message}\n`);
      return EXIT_ERROR;
    }
    const code = (err as { code?: unknown } | undefined)?.code;
    if (controller.signal.aborted) {
      // A verb that says what it kept and how to go on, after the reason (export: "interrupted: … rerun …"), is heard; else the general word.
      const reason = controller.signal.reason instanceof Error ? controller.signal.reason.message : "interrupted";
      const own = err instanceof Error && code === "ERR_ABORTED" && err.message.startsWith(`${reason}: `) ? err.message : undefined;
      const message = own ?? `${reason}; nothing at the destination was made to look complete`;
      cli.stderr.write(json ? jsonError("ERR_ABORTED", message) : `airlock: ${message}\n`);
      return EXIT_ERROR;
    }
    if (json && err instanceof Error) cli.stderr.write(jsonError(typeof code === "string" ? code : "ERR_UNKNOWN", err.message, debug ? err.stack : undefined));
    else cli.stderr.write(`${formatError(err, debug)}\n`);
    return exitCodeFor(err);
  } finally {
    if (timer) clearTimeout(timer);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
