/**
 * `airlock manifest-digest FILE`: the digest of a manifest file, as `skopeo manifest-digest`.
 */
import { readFile } from "node:fs/promises";
import { AirlockError, manifestDigest } from "@airlock/core";
import type { Command } from "commander";
import type { CliContext } from "../context.js";

/** Registers the `manifest-digest` verb. */
export function registerManifestDigest(program: Command, cli: CliContext): void {
  program
    .command("manifest-digest")
    .description("Compute the digest of a manifest file and print it")
    .argument("<manifest-file>", "a manifest file, e.g. the output of `airlock inspect --raw`")
    .option("--algorithm <alg>", "sha256 (default) or sha512", "sha256")
    .action(async (file: string, opts: { algorithm: string }) => {
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (cause) {
        throw new AirlockError("ERR_IO", `cannot read manifest file ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
      }
      if (opts.algorithm !== "sha256" && opts.algorithm !== "sha512") {
        throw new AirlockError("ERR_INVALID_ARGUMENT", `--algorithm must be sha256 or sha512, got ${JSON.stringify(opts.algorithm)}`);
      }
      // A signed schema 1 manifest's digest is its JWS payload's, as containers/image's manifest.Digest.
      cli.stdout.write(`${manifestDigest(bytes, opts.algorithm, file)}\n`);
    });
}
