/**
 * `airlock inventory`: on the air-gapped side, a receipt of what the offline registry holds (every
 * repository under a prefix, its tags, every manifest and blob), for `airlock export --since`.
 */
import { type Receipt, takeInventory, writeReceipt } from "@airlock/core";
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { addDockerFlags, addRetryFlags, systemContextFrom } from "../flags.js";

/** Prints a one-line summary of a receipt to `out`. */
export function describeReceipt(r: Receipt, path: string): string {
  const tags = r.repositories.reduce((n, x) => n + Object.keys(x.tags).length, 0);
  return `Receipt ${path}: ${r.registry}${r.prefix ? `/${r.prefix}` : ""} holds ${r.repositories.length} repositories, ${tags} tag(s), ${r.manifests.length} manifest(s), ${r.blobs.length} blob(s)\n`;
}

/** Registers `inventory`. */
export function registerInventory(program: Command, cli: CliContext): void {
  const cmd = program
    .command("inventory")
    .description("Write a receipt of what an offline registry holds, for airlock export --since")
    .requiredOption("--registry <REGISTRY[/PREFIX]>", "the registry (and repository prefix) to inventory, as given to import --to")
    .requiredOption("-o, --output <receipt.json>", "where to write the receipt")
    .option("--concurrency <n>", "requests at once (default 8)", (v) => Number.parseInt(v, 10));
  addDockerFlags(cmd, "");
  addRetryFlags(cmd);
  cmd.addHelpText(
    "after",
    `
The receipt lists every repository under the prefix, its tags and manifest digests, and every blob
those manifests list that the registry has. Carry it back; the next export ships only the rest:
  airlock inventory --registry registry.airgap.local:5000/mirror -o receipt.json
  airlock export -f images.yaml --since receipt.json -o delta.tar`,
  );
  cmd.action(async (opts: Record<string, unknown>) => {
    const ctx = systemContextFrom(opts, "", cli.globals() as Record<string, unknown>);
    const receipt = await takeInventory(opts.registry as string, {
      ...(ctx.docker ? { docker: ctx.docker } : {}),
      ...(opts.concurrency ? { concurrency: opts.concurrency as number } : {}),
      signal: cli.signal,
    });
    await writeReceipt(opts.output as string, receipt);
    cli.stdout.write(describeReceipt(receipt, opts.output as string));
  });
}
