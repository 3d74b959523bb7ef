/**
 * `airlock list-tags docker://REPOSITORY`: every tag of a repository, as `skopeo list-tags` prints.
 */
import { listTags, parseDockerRepository } from "@airlock/core";
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { addDockerFlags, addRetryFlags, systemContextFrom } from "../flags.js";

/** Registers the `list-tags` verb. */
export function registerListTags(program: Command, cli: CliContext): void {
  const cmd = program
    .command("list-tags")
    .description("List the tags of a repository in a registry (skopeo list-tags' JSON)")
    .argument("<repository>", "docker://HOST[:PORT]/REPOSITORY, without a tag or digest")
    .option("--authfile <path>", "auth file (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)");
  addDockerFlags(cmd, "");
  addRetryFlags(cmd);
  cmd.addHelpText("after", "\nExample:\n  airlock list-tags docker://quay.io/prometheus/node-exporter | jq -r '.Tags[]'");
  cmd.action(async (name: string, opts: Record<string, unknown>) => {
    const ref = parseDockerRepository(name);
    const tags = await listTags(ref, systemContextFrom(opts, "", cli.globals() as Record<string, unknown>), { signal: cli.signal });
    cli.stdout.write(`${JSON.stringify({ Repository: ref.name, Tags: tags }, null, 4)}\n`);
  });
}
