/**
 * `airlock delete docker://IMAGE`: deletes an image's manifest from a registry, as `skopeo delete`.
 */
import { AirlockError, DockerImageReference, deleteImage, parseImageName } from "@airlock/core";
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { addImageFlags, addRetryFlags, systemContextFrom } from "../flags.js";
import { withFlagHints } from "../registry-hints.js";

/** Registers the `delete` verb. */
export function registerDelete(program: Command, cli: CliContext): void {
  const cmd = program
    .command("delete")
    .description("Delete an image from a registry (its manifest, and so every tag that points at it)")
    .argument("<image>", "docker://HOST[:PORT]/REPOSITORY:TAG or @DIGEST")
    .option("--authfile <path>", "auth file (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)");
  addImageFlags(cmd, "");
  addRetryFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Deleting by tag deletes the manifest the tag points at, and with it every other tag that points
at the same manifest, as the distribution API has no "untag". The registry must allow deletes
(docker-registry: storage.delete.enabled). Blobs are reclaimed by the registry's garbage collector.`,
  );
  cmd.action(async (name: string, opts: Record<string, unknown>) => {
    const ref = parseImageName(name);
    if (!(ref instanceof DockerImageReference)) {
      throw new AirlockError("ERR_UNSUPPORTED", `airlock delete works on registry images (docker://…), not ${ref.transport.name}: ones; remove ${name} with the tools of that storage`);
    }
    await deleteImage(ref, withFlagHints(systemContextFrom(opts, "", cli.globals() as Record<string, unknown>), opts, ""), { signal: cli.signal });
  });
}
