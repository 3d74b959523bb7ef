/**
 * `airlock inspect [--raw] [--config] [--format TEMPLATE] IMAGE`, printing what `skopeo inspect`
 * prints.
 */
import { createHash } from "node:crypto";
import { inspectImage, parseImageName, toOCIConfig } from "@airlock/core";
import { type Command, Option } from "commander";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { addImageFlags, addRetryFlags, platformFrom, systemContextFrom } from "../flags.js";
import { withFlagHints } from "../registry-hints.js";
import { renderTemplate } from "../template.js";

/** Registers the `inspect` verb. */
export function registerInspect(program: Command, cli: CliContext): void {
  const cmd = program
    .command("inspect")
    .description("Show an image's digest, platform, layers, labels and environment (skopeo inspect's JSON)")
    .argument("<image>", "TRANSPORT:REFERENCE, e.g. docker://quay.io/org/app:1.0 or oci:./layout:app")
    .option("--authfile <path>", "auth file (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)")
    .option("--raw", "print the manifest exactly as stored (with --config: the raw config)")
    .option("--config", "print the image's config (as an OCI image config)")
    .option("-f, --format <template>", "format the output with a Go template, e.g. '{{.Digest}}' or '{{json .Labels}}'")
    .option("-n, --no-tags", "do not list the repository's tags")
    .addOption(new Option("--manifest-digest <algorithm>", "the algorithm of Digest: sha256 or sha512 (default sha256)").choices(["sha256", "sha512"]));
  addImageFlags(cmd, "");
  addRetryFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  airlock inspect docker://docker.io/library/alpine:3.20
  airlock inspect --raw oci:./layout:app | jq .
  airlock inspect --format '{{.Digest}} {{.Architecture}}' dir:./app
  airlock --override-arch arm64 inspect oci:./layout:multi

Fields other than Digest describe the image for this platform (see --override-os/--override-arch).`,
  );
  cmd.action(async (name: string, opts: Record<string, unknown>) => {
    if (opts.raw && opts.format) throw new UsageError("--raw and --format cannot be used together");
    const globals = cli.globals() as Record<string, unknown>;
    const ref = parseImageName(name);
    const needsImage = !opts.raw || opts.config;
    const result = await inspectImage(ref, {
      context: withFlagHints(systemContextFrom(opts, "", globals), opts, ""),
      platform: platformFrom(globals),
      noTags: opts.tags === false || !needsImage || opts.config === true,
      signal: cli.signal,
    });
    // skopeo's --manifest-digest: Digest computed with another algorithm over the same bytes.
    if (opts.manifestDigest === "sha512") result.output.Digest = `sha512:${createHash("sha512").update(result.manifest.bytes).digest("hex")}` as typeof result.output.Digest;
    let out: string;
    if (opts.raw) {
      cli.stdout.write(opts.config ? result.configBytes : result.manifest.bytes);
      return;
    }
    if (opts.config) {
      const config = result.ociConfig ?? toOCIConfig(JSON.parse(Buffer.from(result.configBytes).toString("utf8")));
      out = opts.format ? renderTemplate(opts.format as string, config) : JSON.stringify(config, null, 4);
    } else {
      out = opts.format ? renderTemplate(opts.format as string, result.output) : JSON.stringify(result.output, null, 4);
    }
    cli.stdout.write(`${out}\n`);
  });
}
