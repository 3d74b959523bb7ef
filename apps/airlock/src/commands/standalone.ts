/**
 * `airlock standalone-sign` and `airlock standalone-verify`: sign a manifest file, and verify a
 * signature file, without any image transport — skopeo's verbs, with skopeo's argument order and
 * output. airlock reads keys from files (it has no GnuPG keyring): `--key FILE` for signing,
 * `--public-key-file FILE` for verifying.
 */
import { readFile } from "node:fs/promises";
import { AirlockError, writeFileAtomic } from "@airlock/core";
import { keyFingerprints, verifySignature } from "@airlock/sign";
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { readKeyFile } from "../signing/files.js";
import { keyFileSigner } from "../signing/signer.js";

/** Registers `standalone-sign` and `standalone-verify`. */
export function registerStandalone(program: Command, cli: CliContext): void {
  registerSign(program);
  registerVerify(program, cli);
}

async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read the ${what} ${path}: ${(cause as Error).message}`, { cause });
  }
}

/** Uppercase hex without spaces, as fingerprints are compared. */
const normalFingerprint = (f: string) => f.replace(/\s+/g, "").toUpperCase();

function registerSign(program: Command): void {
  program
    .command("standalone-sign")
    .description("Create a signature (containers-signature(5) simple signing) of a manifest file for a Docker reference")
    .argument("<manifest>", "the manifest file to sign (exact bytes)")
    .argument("<docker-reference>", "the identity to sign, e.g. registry.example.com/app:1.0")
    .argument("[key-fingerprint]", "skopeo's form: the fingerprint of the key, checked against --key")
    .option("--key <file>", "the secret OpenPGP key file (gpg --export-secret-keys --armor KEY)")
    .option("--passphrase-file <file>", "read the key's passphrase from the first line of this file")
    .option("-o, --output <file>", "write the signature to this file")
    .addHelpText(
      "after",
      `
Examples:
  airlock standalone-sign manifest.json registry.example.com/app:1.0 --key signer.sec.asc -o signature-1
  airlock standalone-sign manifest.json registry.example.com/app:1.0 FINGERPRINT --key signer.sec.asc -o signature-1

The signature is a binary OpenPGP signed message, as skopeo writes it; skopeo standalone-verify accepts it.`,
    )
    .action(async (manifestPath: string, dockerReference: string, fingerprint: string | undefined, opts: Record<string, string | undefined>) => {
      if (!opts.output) throw new UsageError("standalone-sign needs -o, --output FILE: where to write the signature");
      if (!opts.key) {
        throw new UsageError(
          "standalone-sign needs --key FILE: airlock signs with a key file, not a GnuPG keyring (export one with gpg --export-secret-keys --armor FINGERPRINT > key.asc)",
        );
      }
      const manifest = await readInput(manifestPath, "manifest");
      if (fingerprint !== undefined) {
        const have = await keyFingerprints(await readKeyFile(opts.key, "--key"));
        if (!have.includes(normalFingerprint(fingerprint))) {
          throw new AirlockError("ERR_INVALID_ARGUMENT", `the key in ${opts.key} has fingerprint ${have.join(", ")}, not ${normalFingerprint(fingerprint)}; pass the matching key file or fingerprint`);
        }
      }
      const sign = await keyFileSigner({ keyFile: opts.key, ...(opts.passphraseFile ? { passphraseFile: opts.passphraseFile } : {}), keyFlag: "--key" });
      const signature = await sign(manifest, dockerReference);
      try {
        await writeFileAtomic(opts.output, signature);
      } catch (cause) {
        throw new AirlockError("ERR_IO", `cannot write the signature to ${opts.output}: ${(cause as Error).message}`, { cause });
      }
    });
}

function registerVerify(program: Command, cli: CliContext): void {
  program
    .command("standalone-verify")
    .description("Verify a signature of a manifest file, for a Docker reference, by one of the given keys")
    .argument("<manifest>", "the manifest file (exact bytes)")
    .argument("<docker-reference>", "the identity the signature must name, e.g. registry.example.com/app:1.0")
    .argument("<key-fingerprints>", "comma-separated fingerprints of the accepted keys, or any (every key in --public-key-file)")
    .argument("<signature>", "the signature file")
    .option("--public-key-file <file>", "the public keys (gpg --export [--armor] KEY...)")
    .addHelpText(
      "after",
      `
Example:
  airlock standalone-verify manifest.json registry.example.com/app:1.0 any signature-1 --public-key-file signer.pub.asc

Prints "Signature verified using fingerprint FINGERPRINT, digest DIGEST" and exits 0, or says why not and exits 1.`,
    )
    .action(async (manifestPath: string, dockerReference: string, fingerprintList: string, signaturePath: string, opts: Record<string, string | undefined>) => {
      if (!opts.publicKeyFile) {
        throw new UsageError("standalone-verify needs --public-key-file FILE: airlock reads public keys from a file, not a GnuPG keyring (export them with gpg --export --armor KEY > keys.asc)");
      }
      const publicKeys = await readKeyFile(opts.publicKeyFile, "--public-key-file");
      const wanted =
        fingerprintList === "any"
          ? await keyFingerprints(publicKeys)
          : fingerprintList
              .split(",")
              .map(normalFingerprint)
              .filter((f) => f !== "");
      if (wanted.length === 0) throw new UsageError(`no key fingerprint in ${JSON.stringify(fingerprintList)}: pass comma-separated fingerprints, or any`);
      const manifest = await readInput(manifestPath, "manifest");
      const signature = await readInput(signaturePath, "signature");
      let verified: Awaited<ReturnType<typeof verifySignature>>;
      try {
        verified = await verifySignature({ signature, publicKeys, manifest, expectedDockerReference: dockerReference, expectedFingerprints: wanted });
      } catch (err) {
        if (err instanceof AirlockError && err.code === "ERR_SIGNATURE") {
          throw new AirlockError("ERR_SIGNATURE", `Error verifying signature ${signaturePath}: ${err.message}`, { cause: err });
        }
        throw err;
      }
      const fingerprint = wanted.includes(verified.keyFingerprint) ? verified.keyFingerprint : verified.signingKeyFingerprint;
      cli.stdout.write(`Signature verified using fingerprint ${fingerprint}, digest ${verified.dockerManifestDigest}\n`);
    });
}
