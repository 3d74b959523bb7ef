/**
 * `airlock list-tags docker://REPOSITORY`: every tag of a repository, as `skopeo list-tags` prints;
 * `airlock list-tags docker-archive:PATH`: the RepoTags of every image of a `docker save` archive.
 */
import { AirlockError, DockerArchiveReference, getTransport, listDockerArchiveTags, listTags, parseDockerRepository } from "@airlock/core";
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { addDockerFlags, addRetryFlags, systemContextFrom } from "../flags.js";
import { withFlagHints } from "../registry-hints.js";

/** Registers the `list-tags` verb. */
export function registerListTags(program: Command, cli: CliContext): void {
  const cmd = program
    .command("list-tags")
    .description("List the tags of a repository in a registry, or of the images in a docker save archive (skopeo list-tags' JSON)")
    .argument("<repository>", "docker://HOST[:PORT]/REPOSITORY, without a tag or digest; or docker-archive:PATH")
    .option("--authfile <path>", "auth file (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)");
  addDockerFlags(cmd, "");
  addRetryFlags(cmd);
  cmd.addHelpText("after", "\nExample:\n  airlock list-tags docker://quay.io/prometheus/node-exporter | jq -r '.Tags[]'");
  cmd.action(async (name: string, opts: Record<string, unknown>) => {
    const ctx = withFlagHints(systemContextFrom(opts, "", cli.globals() as Record<string, unknown>), opts, "");
    if (name.startsWith("docker-archive:")) {
      // As skopeo: no Repository, and a reference after the path is ignored.
      const tags = await listDockerArchiveTags(DockerArchiveReference.parse(name.slice("docker-archive:".length)), ctx);
      cli.stdout.write(`${JSON.stringify({ Tags: tags }, null, 4)}\n`);
      return;
    }
    const colon = name.indexOf(":");
    if (!name.startsWith("docker://") && colon > 0 && getTransport(name.slice(0, colon)) !== undefined) {
      throw new AirlockError("ERR_UNSUPPORTED", `Unsupported transport '${name.slice(0, colon)}' for tag listing. Only supported: docker, docker-archive`);
    }
    const ref = parseDockerRepository(name);
    const tags = await listTags(ref, ctx, { signal: cli.signal });
    cli.stdout.write(`${JSON.stringify({ Repository: ref.name, Tags: tags }, null, 4)}\n`);
  });
}
