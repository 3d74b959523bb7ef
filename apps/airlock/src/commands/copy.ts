/**
 * `airlock copy SOURCE-IMAGE DESTINATION-IMAGE`, with skopeo copy's flags.
 */
import { writeFile } from "node:fs/promises";
import {
  AirlockError,
  type CompressionAlgorithm,
  copyImage,
  type DockerArchiveContext,
  DockerImageReference,
  DockerReference,
  type ImageReference,
  type ManifestFormat,
  type MultiArch,
  parseImageName,
  type SystemContext,
} from "@airlock/core";
import { type Command, Option } from "commander";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { addImageFlags, addRetryFlags, addSkopeoCopyFlags, parseCount, platformFrom, systemContextFrom } from "../flags.js";
import { withFlagHints } from "../registry-hints.js";
import { addThrottleFlags, withThrottle } from "../throttle-flags.js";
import { configuredLookasideStaging, loadRegistriesD, loadTrustPolicy, lookasideForReading, lookasideHint, keyFileSigner, policyChecker, type RegistriesD } from "../signing/index.js";

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
    .option("--remove-signatures", "do not copy the source's signatures")
    .option("--sign-by-key <file>", "sign the copied image with this secret OpenPGP key file (gpg --export-secret-keys --armor KEY)")
    .option("--sign-passphrase-file <file>", "read the passphrase of the --sign-by-key key from the first line of this file")
    .option("--sign-identity <reference>", "the identity to sign, a fully-qualified HOST/REPOSITORY[:TAG] (default: the destination's Docker reference)")
    .option("-q, --quiet", "print no progress")
    .option("--json", "print progress as NDJSON events on stderr")
    // Conversion (packages/core/src/convert): each of these changes the digest, and says so.
    .addOption(new Option("-f, --format <format>", "write the manifest in this format: oci or v2s2 (Docker v2 schema 2)").choices(["oci", "v2s2"]))
    .option("--dest-compress", "compress uncompressed layers (with --dest-compress-format, default gzip)")
    .option("--dest-decompress", "store every layer uncompressed")
    .addOption(new Option("--dest-compress-format <format>", "compress every layer with this algorithm: gzip or zstd (zstd needs Node.js ≥ 22.15, Bun or Deno)").choices(["gzip", "zstd"]))
    .option("--dest-compress-level <n>", "compression level (gzip 1-9, zstd 1-19)", (v) => parseCount(v, "--dest-compress-level"))
    .option("--dest-force-compress-format", "use only the --dest-compress-format algorithm (airlock always does: that flag recompresses every layer)")
    .option("--dest-oci-accept-uncompressed-layers", "oci: keep uncompressed layers uncompressed (airlock always does; only a layer whose media type says compressed is compressed)")
    .option(
      "--dest-precompute-digests",
      "docker://: do not upload a layer the registry already has (airlock always does: it knows each blob's digest from the source's manifest and asks the registry first, HEAD, or mounts it from another repository)",
    )
    .option("--additional-tag <name:tag>", "docker-archive: also tag the image NAME:TAG (repeatable)", (v: string, prev: string[] = []) => [...prev, v]);
  addImageFlags(cmd, "src-");
  addImageFlags(cmd, "dest-");
  addSkopeoCopyFlags(cmd, (m) => cli.stderr.write(`warning: ${m}\n`), { encryption: true });
  addRetryFlags(cmd);
  addThrottleFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  airlock copy docker://docker.io/library/busybox:latest oci:./layout:busybox
  airlock copy --all oci:./layout:app docker://127.0.0.1:5000/app:1.0
  airlock copy --dest-tls-verify=false dir:./app docker://registry.lan:5000/app:1.0
  airlock copy oci:./layout:app docker-archive:./images.tar:app:1.0   (then: docker load -i images.tar)
  airlock copy --format v2s2 oci:./layout:app dir:./app-docker

Conversion: a manifest or layer is converted only when asked (--format, --dest-compress,
--dest-decompress, --dest-compress-format) or when the destination needs it (docker-archive: stores
Docker v2s2 manifests with uncompressed layers); the new digest is reported in a warning.
--preserve-digests makes any conversion an error. docker-archive: and oci-archive: keep the other
images of an existing archive and add or replace the named one.

Signatures: those of the source are copied (unless --remove-signatures) and --sign-by-key adds one;
dir: keeps them as signature-N files, oci: under signatures/<alg>/<hex>/ in the layout, docker://
in the lookaside storage configured by registries.d (--registries.d DIR). The trust policy
(--policy FILE, else the default policy.json) is checked before any blob is read.

Progress goes to stderr (bars on a terminal, plain lines in CI, NDJSON with --json).
Exit status: 0 ok, 1 error, 2 the source image was not found.`,
  );
  cmd.action(async (srcName: string, dstName: string, opts: Record<string, unknown>) => {
    const globals = cli.globals();
    if (opts.all && opts.multiArch) throw new UsageError("--all and --multi-arch cannot be used together");
    const multiArch: MultiArch = opts.all ? "all" : ((opts.multiArch as MultiArch | undefined) ?? "system");
    const src = parseImageName(srcName);
    const dst = parseImageName(dstName);
    const sourceContext = withFlagHints(systemContextFrom(opts, "src-", globals as Record<string, unknown>), opts, "src-");
    const destinationContext = withFlagHints(systemContextFrom(opts, "dest-", globals as Record<string, unknown>), opts, "dest-");
    if (opts.destCompress && opts.destDecompress) throw new UsageError("--dest-compress and --dest-decompress cannot be used together");
    if (opts.destForceCompressFormat && !opts.destCompressFormat) throw new UsageError("--dest-force-compress-format needs --dest-compress-format FORMAT");
    if (opts.destDecompress && opts.destCompressFormat) throw new UsageError("--dest-decompress and --dest-compress-format cannot be used together");
    const additionalTags = opts.additionalTag as string[] | undefined;
    if (additionalTags?.length) {
      if (dst.transport.name !== "docker-archive") throw new UsageError(`--additional-tag applies to docker-archive: destinations, not ${dst.transport.name}:`);
      (destinationContext as DockerArchiveContext).dockerArchiveAdditionalTags = additionalTags;
    }
    const signing = await prepareSignatures(src, dst, sourceContext, destinationContext, opts, globals as Record<string, unknown>);
    const progress = cli.progress({ json: opts.json as boolean, quiet: opts.quiet as boolean });
    try {
      const result = await copyImage(src, dst, {
        ...signing,
        sourceContext,
        destinationContext,
        multiArch,
        platform: platformFrom(globals as Record<string, unknown>),
        preserveDigests: opts.preserveDigests === true,
        concurrency: opts.imageParallelCopies as number | undefined,
        ...withThrottle(opts),
        signal: cli.signal,
        onProgress: progress.listener,
        convert: {
          format: opts.format as ManifestFormat | undefined,
          compress: opts.destCompress === true,
          decompress: opts.destDecompress === true,
          compressFormat: opts.destCompressFormat as CompressionAlgorithm | undefined,
          compressLevel: opts.destCompressLevel as number | undefined,
        },
      });
      if (opts.digestfile) await writeFile(opts.digestfile as string, result.digest);
    } finally {
      progress.stop();
    }
  });
}

/** The signature and trust-policy options of a copy (see CopyOptions), from the flags. */
interface SignatureOptions {
  removeSignatures: boolean;
  checkPolicy?: ReturnType<typeof policyChecker>;
  sign?: (manifest: Uint8Array, dockerReference: string) => Promise<Uint8Array>;
  signIdentity?: string;
}

/**
 * Reads the trust policy, registries.d (lookaside locations of registry images, set on the
 * contexts) and the signing key — everything that can be wrong about signatures is found here,
 * before the copy reads any blob.
 */
async function prepareSignatures(
  src: ImageReference,
  dst: ImageReference,
  sourceContext: SystemContext,
  destinationContext: SystemContext,
  opts: Record<string, unknown>,
  globals: Record<string, unknown>,
): Promise<SignatureOptions> {
  const keyFile = opts.signByKey as string | undefined;
  const passphraseFile = opts.signPassphraseFile as string | undefined;
  const identity = opts.signIdentity as string | undefined;
  if (keyFile === undefined && (passphraseFile !== undefined || identity !== undefined)) {
    throw new UsageError("--sign-passphrase-file and --sign-identity need --sign-by-key FILE");
  }
  if (identity !== undefined) checkSignIdentity(identity);
  if (keyFile !== undefined && identity === undefined && dst.dockerReference() === undefined) {
    throw new UsageError(`${dst} has no Docker reference to sign: name the identity with --sign-identity HOST/REPOSITORY:TAG`);
  }
  const options: SignatureOptions = { removeSignatures: opts.removeSignatures === true };
  const trust = await loadTrustPolicy({ policy: globals.policy as string | undefined, insecurePolicy: globals.insecurePolicy === true, requireSigned: globals.requireSigned === true });
  if (trust) options.checkPolicy = policyChecker(trust);

  let registries: RegistriesD | undefined;
  const registriesD = async () => {
    registries ??= await loadRegistriesD(globals["registries.d"] as string | undefined);
    return registries;
  };
  if (src instanceof DockerImageReference) {
    sourceContext.docker = { ...sourceContext.docker, lookaside: lookasideForReading((await registriesD()).config, src.ref) };
  }
  if (dst instanceof DockerImageReference) {
    const { config, dir } = await registriesD();
    const staging = configuredLookasideStaging(config, dst.ref);
    if (staging !== undefined) destinationContext.docker = { ...destinationContext.docker, lookasideStaging: staging };
    if (keyFile !== undefined && (staging === undefined || !staging.startsWith("file:"))) {
      const why = staging === undefined ? `no lookaside storage is configured for ${dst.ref.name} in ${dir}` : `its lookaside storage ${staging} is not a file:// location airlock can write`;
      throw new AirlockError("ERR_UNSUPPORTED", `cannot sign the image pushed to ${dst}: ${why}; ${lookasideHint(dst.ref, dir)}`);
    }
  }
  if (keyFile !== undefined) {
    options.sign = await keyFileSigner({ keyFile, keyFlag: "--sign-by-key", passphraseFlag: "--sign-passphrase-file", ...(passphraseFile === undefined ? {} : { passphraseFile }) });
    if (identity !== undefined) options.signIdentity = identity;
  }
  return options;
}

/** Checks --sign-identity as containers/image does: a fully-qualified (canonical) Docker reference. */
function checkSignIdentity(identity: string): void {
  let canonical: string;
  try {
    canonical = DockerReference.parse(identity).toString();
  } catch (err) {
    throw new UsageError(`--sign-identity ${JSON.stringify(identity)} is not a Docker reference: ${(err as Error).message}`);
  }
  if (canonical !== identity) throw new UsageError(`--sign-identity must be fully qualified: write ${canonical}, not ${identity}`);
}
