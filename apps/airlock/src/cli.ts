/**
 * The airlock command line: global flags (skopeo's, given before the verb), the verbs, and the
 * mapping of errors to one clear line and skopeo's exit codes.
 */
import { Command, CommanderError } from "commander";
import { registerBundle } from "./commands/bundle.js";
import { registerCompletion } from "./commands/completion.js";
import { registerCopy } from "./commands/copy.js";
import { registerDelete } from "./commands/delete.js";
import { registerListTags } from "./commands/list-tags.js";
import { registerLogin } from "./commands/login.js";
import { registerInspect } from "./commands/inspect.js";
import { registerInventory } from "./commands/inventory.js";
import { registerManifestDigest } from "./commands/manifest-digest.js";
import { registerMirrorConfig } from "./commands/mirror-config.js";
import { registerServe } from "./commands/serve.js";
import { registerStandalone } from "./commands/standalone.js";
import { registerSync } from "./commands/sync.js";
import { type CliContext, defaultContext, type GlobalOptions } from "./context.js";
import { EXIT_ERROR, EXIT_OK, exitCodeFor, formatError, UsageError } from "./errors.js";
import { normalizeArgv, parseDuration } from "./flags.js";
import { VERSION } from "./version.js";

/** Builds the program with every verb registered against `cli`. */
export function buildProgram(cli: CliContext): Command {
  const program = new Command("airlock");
  program
    .description("Move container images across an air gap, and do everything skopeo does on the way.")
    .version(`airlock version ${VERSION}`, "-v, --version", "print the version")
    .option("--debug", "print debugging information, including stack traces on errors")
    .option("--override-os <os>", "use OS instead of this machine's when choosing an image from an index")
    .option("--override-arch <arch>", "use ARCH instead of this machine's when choosing an image from an index")
    .option("--override-variant <variant>", "use VARIANT when choosing an image from an index")
    .option("--tmpdir <dir>", "directory for large temporary files")
    .option("--command-timeout <duration>", "give up after this long, e.g. 10m", parseDuration)
    .option("--policy <path>", "trust policy (policy.json) to enforce instead of the default one ($CONTAINERS_POLICY_JSON, ~/.config/containers/policy.json, /etc/containers/policy.json)")
    .option("--insecure-policy", "accept every image: read no trust policy")
    .option("--registries.d <dir>", "registries.d directory: where registry images keep signatures (lookaside storage)")
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
  for (const register of [registerCopy, registerInspect, registerManifestDigest, registerListTags, registerDelete, registerLogin, registerServe, registerBundle, registerInventory, registerMirrorConfig, registerSync]) register(program, cli);
  registerStandalone(program, cli);
  registerCompletion(program, cli);
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => cli.stdout.write(s), writeErr: (s) => cli.stderr.write(s) });
  return program;
}

/** Runs airlock with `argv` (without the node and script names) and returns the exit code. */
export async function main(argv: string[], make: (signal: AbortSignal, globals: () => GlobalOptions) => CliContext = defaultContext): Promise<number> {
  const controller = new AbortController();
  let program: Command | undefined;
  const cli = make(controller.signal, () => (program?.opts() ?? {}) as GlobalOptions);
  program = buildProgram(cli);
  const onSignal = () => controller.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let timer: NodeJS.Timeout | undefined;
  program.hook("preAction", () => {
    const ms = ((program?.opts() ?? {}) as GlobalOptions).commandTimeout;
    if (ms) timer = setTimeout(() => controller.abort(new Error(`--command-timeout of ${ms} ms expired`)), ms);
  });
  try {
    await program.parseAsync(normalizeArgv(argv), { from: "user" });
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
    if (controller.signal.aborted) {
      cli.stderr.write(`airlock: ${controller.signal.reason instanceof Error ? controller.signal.reason.message : "interrupted"}; nothing at the destination was made to look complete\n`);
      return EXIT_ERROR;
    }
    cli.stderr.write(`${formatError(err, debug)}\n`);
    return exitCodeFor(err);
  } finally {
    if (timer) clearTimeout(timer);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
