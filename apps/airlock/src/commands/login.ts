/**
 * `airlock login REGISTRY` and `airlock logout REGISTRY|--all`, as skopeo's: credentials are
 * checked against the registry before they are written to the auth file (0600, atomically).
 */
import { createInterface } from "node:readline";
import { readFile } from "node:fs/promises";
import { getLogin, login, logout, withFileLock, writeFileAtomic } from "@airlock/core";
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { parseBool } from "../flags.js";

/** Reads one line from stdin (for --password-stdin and prompts). */
async function readLine(prompt: string, cli: CliContext): Promise<string> {
  if (prompt) cli.stderr.write(prompt);
  const rl = createInterface({ input: process.stdin, terminal: false });
  try {
    for await (const line of rl) return line.replace(/\r$/, "");
    return "";
  } finally {
    rl.close();
  }
}

/** The auth file of --authfile or --compat-auth-file (skopeo: not both). */
function authFileOf(opts: Record<string, unknown>): string | undefined {
  if (opts.authfile !== undefined && opts.compatAuthFile !== undefined) throw new UsageError("--authfile and --compat-auth-file cannot be used together");
  return (opts.compatAuthFile ?? opts.authfile) as string | undefined;
}

/**
 * Docker's own tools look Docker Hub up as `https://index.docker.io/v1/` in config.json: the
 * entry login stored as `docker.io` in a --compat-auth-file is moved to that key.
 */
async function dockerHubCompatKey(path: string): Promise<void> {
  await withFileLock(`${path}.lock`, async () => {
    const file = JSON.parse(await readFile(path, "utf8")) as { auths?: Record<string, unknown> };
    const entry = file.auths?.["docker.io"];
    if (!file.auths || entry === undefined) return;
    delete file.auths["docker.io"];
    file.auths["https://index.docker.io/v1/"] = entry;
    await writeFileAtomic(path, `${JSON.stringify(file, null, "\t")}\n`, 0o600);
  });
}

/** Registers the `login` and `logout` verbs. */
export function registerLogin(program: Command, cli: CliContext): void {
  program
    .command("login")
    .description("Log in to a registry: check the credentials, then store them in the auth file")
    .argument("<registry>", "HOST[:PORT], or HOST[:PORT]/NAMESPACE for credentials that apply to one namespace")
    .option("--authfile <path>", "auth file to write (default: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json)")
    .option("-u, --username <name>", "username")
    .option("-p, --password <password>", "password (prefer --password-stdin: command lines are visible to other users)")
    .option("--password-stdin", "read the password from standard input")
    .option("--get-login", "print the username stored for the registry, and do nothing else")
    .option("--compat-auth-file <path>", "write the credentials to this Docker config.json instead (docker.io as https://index.docker.io/v1/); not with --authfile")
    .option("--cert-dir <dir>", "directory with *.crt CAs and a *.cert/*.key client pair")
    .option("--tls-verify <bool>", "verify TLS; false also allows plain HTTP", parseBool)
    .option("-v, --verbose", "say which auth file was written")
    .addHelpText("after", "\nExamples:\n  echo \"$TOKEN\" | airlock login -u robot --password-stdin registry.example.com\n  airlock login --get-login registry.example.com")
    .action(async (registry: string, opts: Record<string, unknown>) => {
      const authFile = authFileOf(opts);
      if (opts.getLogin) {
        cli.stdout.write(`${await getLogin(registry, { authFile })}\n`);
        return;
      }
      if (opts.password !== undefined && opts.passwordStdin) throw new UsageError("--password and --password-stdin cannot be used together");
      let username = opts.username as string | undefined;
      let password = opts.password as string | undefined;
      if (opts.passwordStdin) {
        if (username === undefined) throw new UsageError("--password-stdin needs --username");
        password = await readLine("", cli);
      }
      if (username === undefined) {
        if (!process.stdin.isTTY) throw new UsageError("no username given: use --username (and --password-stdin), or run on a terminal to be asked");
        username = await readLine("Username: ", cli);
      }
      if (password === undefined) {
        if (!process.stdin.isTTY) throw new UsageError("no password given: use --password-stdin, or run on a terminal to be asked");
        password = await readLine("Password: ", cli);
      }
      const result = await login(
        registry,
        { username, password },
        {
          authFile,
          ...(opts.tlsVerify === undefined ? {} : { tlsVerify: opts.tlsVerify as boolean }),
          ...(opts.certDir ? { certDir: opts.certDir as string } : {}),
          ...(cli.globals().registriesConf ? { registriesConf: cli.globals().registriesConf as string } : {}),
          signal: cli.signal,
        },
      );
      if (opts.compatAuthFile !== undefined && result.key === "docker.io") await dockerHubCompatKey(result.authFile);
      if (opts.verbose) cli.stdout.write(`Used: ${result.authFile}\n`);
      cli.stdout.write("Login Succeeded!\n");
    });

  program
    .command("logout")
    .description("Remove a registry's credentials from the auth file")
    .argument("[registry]", "HOST[:PORT][/NAMESPACE]")
    .option("--authfile <path>", "auth file to edit (default: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json)")
    .option("--compat-auth-file <path>", "edit this Docker config.json instead; not with --authfile")
    .option("-a, --all", "remove the credentials of every registry")
    .option("--tls-verify <bool>", "accepted for skopeo's command lines; logout only edits the auth file and does not contact the registry", parseBool)
    .action(async (registry: string | undefined, opts: Record<string, unknown>) => {
      if (opts.all && registry) throw new UsageError("give a registry or --all, not both");
      await logout(registry, { authFile: authFileOf(opts), all: opts.all === true });
      cli.stdout.write(opts.all ? "Removed login credentials for all registries\n" : `Removed login credentials for ${registry}\n`);
    });
}
