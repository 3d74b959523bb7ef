/**
 * `airlock copy SOURCE-IMAGE DESTINATION-IMAGE`, with skopeo copy's flags.
 */
import { writeFile } from "node:fs/promises";
import { copyImage, type MultiArch, parseImageName } from "@airlock/core";
import { type Command, Option } from "commander";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { addDockerFlags, addRetryFlags, parseCount, platformFrom, systemContextFrom } from "../flags.js";

/** Registers the `copy` verb. */
export function registerCopy(program: Command, cli: CliContext): void {
  const cmd = program
    .command("copy")
    .description("Copy an image (or a multi-arch index with --all) from one location to another")
    .argument("<source-image>", "TRANSPORT:REFERENCE to read, e.g. docker://quay.io/org/app:1.0 or oci:./layout:app")
    .argument("<destination-image>", "TRANSPORT:REFERENCE to write, e.g. dir:./app or docker://registry.local:5000/app:1.0")
    .option("--authfile <path>", "auth file for both sides (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)")
    .option("-a, --all", "copy the whole index and every image in it (same as --multi-arch=all)")
    .addOption(new Option("--multi-arch <mode>", "how to copy an index: system (the image for this platform), all, index-only").choices(["system", "all", "index-only"]))
    .option("--preserve-digests", "fail instead of changing any digest")
    .option("--digestfile <path>", "write the digest of the copied manifest to this file")
    .option("--image-parallel-copies <n>", "blobs copied at once (default 6)", (v) => parseCount(v, "--image-parallel-copies"))
    .option("--remove-signatures", "do not copy signatures (airlock does not copy signatures yet)")
    .option("-q, --quiet", "print no progress")
    .option("--json", "print progress as NDJSON events on stderr");
  addDockerFlags(cmd, "src-");
  addDockerFlags(cmd, "dest-");
  addRetryFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  airlock copy docker://docker.io/library/busybox:latest oci:./layout:busybox
  airlock copy --all oci:./layout:app docker://127.0.0.1:5000/app:1.0
  airlock copy --dest-tls-verify=false dir:./app docker://registry.lan:5000/app:1.0

Progress goes to stderr (bars on a terminal, plain lines in CI, NDJSON with --json).
Exit status: 0 ok, 1 error, 2 the source image was not found.`,
  );
  cmd.action(async (srcName: string, dstName: string, opts: Record<string, unknown>) => {
    const globals = cli.globals();
    if (opts.all && opts.multiArch) throw new UsageError("--all and --multi-arch cannot be used together");
    const multiArch: MultiArch = opts.all ? "all" : ((opts.multiArch as MultiArch | undefined) ?? "system");
    const src = parseImageName(srcName);
    const dst = parseImageName(dstName);
    const progress = cli.progress({ json: opts.json as boolean, quiet: opts.quiet as boolean });
    try {
      const result = await copyImage(src, dst, {
        sourceContext: systemContextFrom(opts, "src-", globals as Record<string, unknown>),
        destinationContext: systemContextFrom(opts, "dest-", globals as Record<string, unknown>),
        multiArch,
        platform: platformFrom(globals as Record<string, unknown>),
        preserveDigests: opts.preserveDigests === true,
        concurrency: opts.imageParallelCopies as number | undefined,
        signal: cli.signal,
        onProgress: progress.listener,
      });
      if (opts.digestfile) await writeFile(opts.digestfile as string, result.digest);
    } finally {
      progress.stop();
    }
  });
}
