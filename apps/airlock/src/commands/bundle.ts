/**
 * The air-gap verbs: `lock`, `plan` and `export` on the connected side; `verify` and `import` on
 * the air-gapped side.
 */
import { readFile, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import {
  AirlockError,
  BUNDLE_METADATA_PATH,
  BundleReader,
  type BundleEvent,
  checkSpace,
  exportSpaceNeeds,
  importSpace,
  exportBundle,
  type ExportResult,
  type ImageReference,
  importBundle,
  type ImportResult,
  baseFromManifests,
  type DeltaBase,
  DockerImageReference,
  DockerReference,
  type ExportImage,
  loadDeltaBase,
  type PolicyCheck,
  type SystemContext,
  parseImageName,
  takeInventory,
  verifyBundle,
  type VerifyReport,
  writeFileAtomic,
  writeReceipt,
} from "@airlock/core";
import { type Command, Option } from "commander";
import { checkLocked, defaultLockPath, exportImagesFor, type ImageFailure, resolveAndLock } from "../bundle-flow.js";
import { destinationName, NAMING_MODES, type NamingMode, readLock, writeLock } from "../config/index.js";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { addDockerFlags, addRetryFlags, parseCount, systemContextFrom } from "../flags.js";
import { addThrottleFlags, withThrottle } from "../throttle-flags.js";
import { parseToolPlatform, toolsFor } from "../include-tool.js";
import { formatBytes } from "../progress.js";
import {
  configuredLookasideStaging,
  loadRegistriesD,
  loadTrustPolicy,
  lookasideForReading,
  policyChecker,
  signBundleMetadataWithKeyFile,
  verifyBundleMetadataWithKeyFiles,
} from "../signing/index.js";
import { VERSION } from "../version.js";
import { describeReceipt } from "./inventory.js";

/** Named volume sizes for `--split-size`. */
const NAMED_SIZES: Record<string, number> = {
  fat32: 4 * 1024 ** 3 - 1,
  dvd: 4_700_000_000,
  "dvd-dl": 8_500_000_000,
  bd25: 25_000_000_000,
  bd50: 50_000_000_000,
};

/** Parses `--split-size`: bytes, `4G`, `700M`, `4GiB`, `1.5T`, or a medium: fat32, dvd, dvd-dl, bd25, bd50. */
export function parseSize(v: string): number {
  const named = NAMED_SIZES[v.toLowerCase()];
  if (named !== undefined) return named;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(v.trim());
  if (!m) throw new UsageError(`invalid size ${JSON.stringify(v)}: use bytes, a number with K, M, G or T (binary units), or fat32, dvd, dvd-dl, bd25, bd50`);
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? "").toLowerCase() as "" | "k" | "m" | "g" | "t"];
  return Math.floor(Number(m[1]) * unit);
}

const fileOption = (cmd: Command) => cmd.requiredOption("-f, --file <images.yaml>", "the images file (see manifests/README.md)");
const reportOptions = (cmd: Command) =>
  cmd
    .option("-q, --quiet", "print no progress")
    .option("--json", "print progress as NDJSON events on stderr")
    .option("--report <file>", "also write the summary as JSON to this file");

/** Writes the JSON report when asked. */
async function writeReport(opts: Record<string, unknown>, report: unknown): Promise<void> {
  if (opts.report) await writeFile(opts.report as string, `${JSON.stringify(report, null, 2)}\n`);
}

/** The detached signature of a bundle: `BUNDLE.sig` next to the bundle file (or its volumes' base name). */
export function signaturePathFor(paths: string[]): string {
  return `${(paths[0] as string).replace(/\.\d{3}$/, "")}.sig`;
}

/** The exact bytes of a bundle's `airlock/bundle.json`, which commit to every digest in it. */
async function bundleMetadataBytes(bundle: string | string[], signal?: AbortSignal): Promise<Buffer> {
  const reader = await BundleReader.open(bundle, signal ? { signal } : {});
  try {
    const entry = reader.entry(BUNDLE_METADATA_PATH);
    if (!entry) throw new AirlockError("ERR_INVALID_LAYOUT", `${Array.isArray(bundle) ? bundle.join(" ") : bundle} has no ${BUNDLE_METADATA_PATH}: it is not a complete airlock bundle, so it cannot be signed or checked against a signature`);
    return await reader.readEntry(entry, 256 * 1024 * 1024);
  } finally {
    await reader.close();
  }
}

/**
 * Checks a bundle's signature (`--key`/`--verify-key`): the detached signature over its metadata
 * must verify with one of `keyFiles`. Throws ERR_SIGNATURE for an unsigned, wrongly signed or
 * altered bundle. Returns the signer's fingerprint.
 */
async function checkBundleSignature(paths: string[], keyFiles: string[], signatureFile: string | undefined, flag: string, signal?: AbortSignal): Promise<string> {
  const sigPath = signatureFile ?? signaturePathFor(paths);
  let signature: Buffer;
  try {
    signature = await readFile(sigPath);
  } catch {
    throw new AirlockError("ERR_SIGNATURE", `${paths.join(" ")} is not signed: no signature file ${sigPath}; export it with --sign-key, or give the signature with --signature FILE`);
  }
  const metadata = await bundleMetadataBytes(paths.length === 1 ? (paths[0] as string) : paths, signal);
  const signer = await verifyBundleMetadataWithKeyFiles(metadata, signature, keyFiles, flag);
  return signer.keyFingerprint;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Registers lock, plan, export, verify and import. */
export function registerBundle(program: Command, cli: CliContext): void {
  // ---------------------------------------------------------------- lock
  fileOption(program.command("lock"))
    .description("Pin every image of images.yaml to digests in images.lock.yaml")
    .option("-o, --output <file>", "where to write the lock (default: images.lock.yaml next to the images file)")
    .addHelpText("after", "\nExample:\n  airlock lock -f images.yaml && git add images.lock.yaml")
    .action(async (opts: Record<string, unknown>) => {
      const file = opts.file as string;
      const resolved = await resolveAndLock(file, { signal: cli.signal });
      const out = (opts.output as string | undefined) ?? defaultLockPath(file);
      await writeLock(out, resolved.lock);
      for (const img of resolved.lock.images) cli.stdout.write(`${img.name} ${img.digest}\n`);
      cli.stderr.write(`Locked ${resolved.lock.images.length} image(s) in ${out}\n`);
    });

  // ---------------------------------------------------------------- plan
  reportOptions(
    fileOption(program.command("plan"))
      .description("Say what an export would move (images, blobs, bytes) and check there is room for it")
      .option("-o, --output <bundle>", "the bundle the export would write (for the free-space check)", "bundle.tar")
      .option("--split-size <size>", "volume size, e.g. 4G, fat32, dvd, bd25", parseSize)
      .option("--to <destination>", "the import's destination: for oci:DIR or dir:DIR, also check the space the imported images take there")
      .option("--locked", "use images.lock.yaml and fail if anything drifted"),
  ).action(async (opts: Record<string, unknown>) => {
    const file = opts.file as string;
    const resolved = await resolveAndLock(file, { signal: cli.signal });
    if (opts.locked) await checkLocked(resolved, defaultLockPath(file));
    const result = await exportBundle(exportImagesFor(resolved.lock, resolved.planned), opts.output as string, {
      dryRun: true,
      ...(opts.splitSize ? { splitSize: opts.splitSize as number } : {}),
      signal: cli.signal,
    });
    const imports = importSpace(result, opts.to as string | undefined);
    const space = await checkSpace([...exportSpaceNeeds({ out: opts.output as string, volumes: result.volumes, blobs: result.blobs }), ...imports.needs]);
    const free = space.find((c) => c.needs.some((n) => n.path === result.volumes[0]?.path))?.free;
    cli.stdout.write(
      [
        ...result.images.map((i) => `  ${i.name}  ${i.digest}  (${i.source})`),
        `${result.images.length} image(s), ${result.manifests} manifest(s), ${result.blobs} blob(s), ${formatBytes(result.blobBytes)} of blobs` +
          (result.duplicateBlobs ? `; ${result.duplicateBlobs} shared blob reference(s) (${formatBytes(result.duplicateBytes)}) stored once` : ""),
        `bundle: ${opts.output} ${formatBytes(result.size)}${result.volumes.length > 1 ? ` in ${result.volumes.length} volumes` : ""}${free !== undefined ? `; ${formatBytes(free)} free there` : ""}`,
        ...space.map(
          (c) =>
            `space: ${c.needs.map((n) => `${n.what} ${formatBytes(n.bytes)}`).join(", ")} in ${c.directory}: ${formatBytes(c.bytes)} needed, ` +
            (c.free === undefined ? "free space unknown (not checked)" : `${formatBytes(c.free)} free${c.ok ? "" : " — NOT ENOUGH"}`),
        ),
        `space: import needs no temporary space: ${imports.reason}` +
          (opts.to ? "" : `; into oci:DIR it takes up to ${formatBytes(result.size)}, into dir:DIR up to ${formatBytes(result.size + result.duplicateBytes)} (give --to to check)`),
      ].join("\n") + "\n",
    );
    await writeReport(opts, { ...result, free, space, import: { temporaryBytes: imports.temporaryBytes, reason: imports.reason } });
    const short = space.filter((c) => !c.ok);
    if (short.length > 0) {
      throw new AirlockError(
        "ERR_IO",
        short.map((c) => `not enough space in ${c.directory} for ${c.needs.map((n) => n.what).join(", ")}: ${formatBytes(c.bytes)} needed, ${formatBytes(c.free ?? 0)} free`).join("; ") +
          "; free some space, write elsewhere with -o, or split into volumes with --split-size",
      );
    }
  });

  // ---------------------------------------------------------------- export
  const exportCmd = reportOptions(
    fileOption(program.command("export"))
      .description("Export the images of images.yaml into one portable, verifiable archive")
      .requiredOption("-o, --output <bundle>", "the bundle file to write, e.g. bundle.tar")
      .option("--locked", "export exactly images.lock.yaml; fail if images.yaml or the sources drifted from it")
      .option("--split-size <size>", "write volumes of at most this size (OUT.000, OUT.001, …): bytes, 4G, fat32, dvd, bd25", parseSize)
      .option("--concurrency <n>", "blobs downloaded at once (default 6)", (v) => parseCount(v, "--concurrency"))
      .option("--keep-going", "export the images that can be read; list the others and exit non-zero")
      .option("--no-resume", "start over instead of resuming an interrupted export of the same bundle")
      .option("--since <receipt|lock|bundle>", "a delta: leave out what the other side has (a receipt from airlock inventory, an old images.lock.yaml, or an old bundle)")
      .option("--sign-key <file>", "sign the bundle's metadata (which commits to every digest) with this OpenPGP secret key; writes BUNDLE.sig")
      .option("--sign-passphrase-file <file>", "the passphrase of --sign-key, on the first line of this file")
      .option("--include-tool [path]", "carry airlock's single-file executable as airlock/tool/airlock-linux-<arch> for the air-gapped side: this executable if airlock runs as one, else dist/ from `npm run compile`, or PATH")
      .option("--tool-platform <platform>", "with --include-tool: the platform to carry it for, linux/amd64 or linux/arm64 (repeatable; default: this machine's architecture)", (v: string, prev: string[] = []) => [...prev, parseToolPlatform(v)]),
  );
  addThrottleFlags(exportCmd);
  exportCmd.addHelpText(
    "after",
    `
The bundle is a tar holding an OCI image layout (skopeo copy oci-archive:BUNDLE:NAME … reads it),
every shared blob stored once, plus airlock's metadata. Every blob is verified as it streams in.
Until the export finishes the output is BUNDLE.partial; rerunning the same command resumes.

Examples:
  airlock export -f images.yaml -o bundle.tar
  airlock lock -f images.yaml && airlock export -f images.yaml --locked -o bundle.tar --split-size fat32
  airlock export -f images.yaml -o bundle.tar --include-tool      (then, offline:
      tar -xf bundle.tar airlock/tool/airlock-linux-x64 && ./airlock/tool/airlock-linux-x64 verify bundle.tar)`,
  );
  exportCmd.action(async (opts: Record<string, unknown>) => {
    const file = opts.file as string;
    const out = opts.output as string;
    if (opts.toolPlatform && !opts.includeTool) throw new UsageError("--tool-platform needs --include-tool");
    const tools = opts.includeTool ? toolsFor(opts.includeTool as true | string, opts.toolPlatform as string[] | undefined) : [];
    const progress = cli.progress({ json: opts.json as boolean, quiet: opts.quiet as boolean });
    try {
      const resolved = await resolveAndLock(file, { keepGoing: opts.keepGoing === true, signal: cli.signal });
      const lock = opts.locked ? await checkLocked(resolved, defaultLockPath(file)) : resolved.lock;
      if (lock.images.length === 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image to export: ${resolved.failures.length} failed (${resolved.failures.map((f) => f.image).join(", ")})`);
      const images = await withSignatureLocations(exportImagesFor(lock, resolved.planned), cli.globals() as Record<string, unknown>);
      const result = await exportBundle(images, out, {
        ...(opts.splitSize ? { splitSize: opts.splitSize as number } : {}),
        ...(opts.concurrency ? { concurrency: opts.concurrency as number } : {}),
        ...withThrottle(opts),
        resume: opts.resume !== false,
        lock,
        toolVersion: VERSION,
        ...(opts.since ? { since: await deltaBaseFrom(opts.since as string, cli.signal) } : {}),
        ...(tools.length > 0 ? { tools } : {}),
        signal: cli.signal,
        onProgress: listener(progress.listener),
      });
      progress.stop();
      printExport(cli, result, resolved.failures);
      if (opts.signKey) {
        const sig = await signBundleMetadataWithKeyFile(await bundleMetadataBytes(out, cli.signal), {
          keyFile: opts.signKey as string,
          keyFlag: "--sign-key",
          ...(opts.signPassphraseFile ? { passphraseFile: opts.signPassphraseFile as string, passphraseFlag: "--sign-passphrase-file" } : {}),
        });
        await writeFileAtomic(signaturePathFor([out]), sig);
        cli.stdout.write(`Signed: ${signaturePathFor([out])}\n`);
      }
      await writeReport(opts, { ...result, failures: resolved.failures });
      if (resolved.failures.length > 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `${resolved.failures.length} image(s) could not be exported (listed above); the bundle holds the others`);
    } finally {
      progress.stop();
    }
  });

  // ---------------------------------------------------------------- verify
  program
    .command("verify")
    .description("Check a bundle offline: every volume, blob, manifest and the metadata")
    .argument("<bundle...>", "the bundle file, or its volumes (bundle.tar.000 …), or the base name of a split bundle")
    .option("--json", "print the report as JSON on stdout")
    .option("--key <file...>", "require a valid signature by one of these OpenPGP public keys (BUNDLE.sig)")
    .option("--signature <file>", "the bundle's signature file (default: BUNDLE.sig)")
    .addHelpText("after", "\nExit status: 0 when the bundle is intact (and, with --key, signed by a trusted key), 1 when anything is wrong (each problem is listed).")
    .action(async (paths: string[], opts: Record<string, unknown>) => {
      if (opts.key) {
        const fpr = await checkBundleSignature(paths, opts.key as string[], opts.signature as string | undefined, "--key", cli.signal);
        if (!opts.json) cli.stdout.write(`signature ok: metadata signed by ${fpr}\n`);
      }
      const report = await verifyBundle(paths.length === 1 ? (paths[0] as string) : paths, { signal: cli.signal });
      const alone = volumeAlone(paths, report);
      if (alone) {
        // One volume file given, and only it at hand (one USB stick): its own state, from its own description.
        if (opts.json) cli.stdout.write(`${JSON.stringify({ ...report, volumeAlone: alone }, null, 2)}\n`);
        else {
          for (const p of alone.problems) cli.stdout.write(`error: ${p.message}\n`);
          cli.stdout.write(
            `volume ${alone.volume} of ${report.volumes.length} (${alone.path}): ${alone.ok ? "OK" : "DAMAGED"}; ${alone.checksum}; ` +
              `volume(s) ${alone.absent.join(", ")} not present, not checked (verify all volumes together to check the images)\n`,
          );
        }
        if (!alone.ok) throw new AirlockError("ERR_DIGEST_MISMATCH", `${alone.path}: volume ${alone.volume} is damaged (${alone.problems.length} problem(s) above); copy this volume again`);
        return;
      }
      if (opts.json) cli.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else {
        for (const v of report.volumes) {
          cli.stdout.write(`volume ${v.volume} ${v.path}: ${!v.present ? "MISSING" : v.ok ? "ok" : "DAMAGED"}${v.sha256 ? ` sha256:${v.sha256}` : ""}\n`);
        }
        for (const i of report.images) cli.stdout.write(`${i.ok ? "ok     " : "BROKEN "} ${i.name} ${i.digest}\n`);
        for (const t of report.tools ?? []) cli.stdout.write(`${t.ok ? "ok     " : "BROKEN "} tool ${t.path} (${t.platform}, ${formatBytes(t.size)}) ${t.digest}\n`);
        for (const p of report.problems) cli.stdout.write(`${p.severity === "error" ? "error" : "warning"}: ${p.message}\n`);
        if (report.base) cli.stdout.write(`delta: ${report.base.count} blob(s) of its base (${report.base.source}; ${report.base.digest}) are not in the bundle by design; import checks the destination has them\n`);
        cli.stdout.write(`${report.ok ? "bundle OK" : "bundle DAMAGED"}: ${report.images.length} image(s), ${report.manifests} manifest(s), ${report.blobs} blob(s), ${formatBytes(report.bytes)} checked in ${seconds(report.durationMs)}\n`);
      }
      if (!report.ok) throw new AirlockError("ERR_DIGEST_MISMATCH", `${paths.join(" ")}: ${report.problems.filter((p) => p.severity === "error").length} problem(s) found; re-send the damaged or missing volume(s) named above`);
    });

  // ---------------------------------------------------------------- import
  const importCmd = reportOptions(
    program
      .command("import")
      .description("Push a bundle's images into the offline registry (or an OCI layout / dir:)")
      .argument("<bundle...>", "the bundle file, or its volumes")
      .requiredOption("--to <destination>", "REGISTRY[/PREFIX], oci:DIR or dir:DIR")
      .addOption(new Option("--naming <mode>", `how names map into REGISTRY/PREFIX: ${NAMING_MODES.join(", ")} (default: as locked)`).choices([...NAMING_MODES]))
      .option("--dry-run", "check the bundle and print what would be pushed; push nothing")
      .option("--image <name...>", "import only these images (their bundle names)")
      .option("--concurrency <n>", "blobs pushed at once (default 6)", (v) => parseCount(v, "--concurrency"))
      .option("--authfile <path>", "auth file (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)")
      .option("--receipt <file>", "after the import, write a receipt of what --to REGISTRY[/PREFIX] holds (for airlock export --since)")
      .option("--verify-key <file...>", "refuse the bundle unless BUNDLE.sig is a valid signature by one of these OpenPGP public keys; the whole bundle is then verified before anything is pushed")
      .option("--signature <file>", "the bundle's signature file (default: BUNDLE.sig)")
      .option("--remove-signatures", "do not store the image signatures the bundle carries (they are still checked by the trust policy)")
      .option("--require-signatures", "fail before pushing anything when a destination cannot store the image signatures the bundle carries (default: warn and import without them)"),
  );
  addDockerFlags(importCmd, "dest-");
  addRetryFlags(importCmd);
  addThrottleFlags(importCmd);
  importCmd.addHelpText(
    "after",
    `
The bundle is checked before anything is pushed; blobs stream straight out of the archive and are
verified again on the way; what the destination already has is skipped; tags are written last.

Image signatures exported with the images travel in the bundle and are stored at the destination
(dir: signature-N files, oci: signatures/<alg>/<hex>/, docker:// the lookaside-staging location of
registries.d). The trust policy (--policy FILE, else the default policy.json) is checked on every
image, with the signatures in the bundle, before anything is pushed; an image named by a full
Docker reference (registry.example.com/app:1) is checked under that docker scope, any other name
under the policy's default.

Examples:
  airlock import bundle.tar --to registry.airgap.local:5000/mirror
  airlock import bundle.tar.* --to oci:/srv/images --dry-run`,
  );
  importCmd.action(async (paths: string[], opts: Record<string, unknown>) => {
    const bundle = paths.length === 1 ? (paths[0] as string) : paths;
    const to = opts.to as string;
    if (opts.verifyKey) {
      const fpr = await checkBundleSignature(paths, opts.verifyKey as string[], opts.signature as string | undefined, "--verify-key", cli.signal);
      const report = await verifyBundle(bundle, { signal: cli.signal });
      if (!report.ok) {
        throw new AirlockError("ERR_DIGEST_MISMATCH", `${paths.join(" ")} is signed by ${fpr} but its content does not match its signed metadata (${report.problems.filter((p) => p.severity === "error").map((p) => p.message).join("; ")}); nothing was pushed`);
      }
      cli.stderr.write(`Bundle signed by ${fpr} and verified; importing\n`);
    }
    const reader = await BundleReader.open(bundle, { signal: cli.signal });
    const metadata = await reader.metadata();
    await reader.close();
    const lockNaming = (metadata?.lock as { naming?: NamingMode } | undefined)?.naming;
    const naming = (opts.naming as NamingMode | undefined) ?? lockNaming ?? "keep-path";
    const destinationFor = destinationMapper(to, naming);
    const globals = cli.globals() as Record<string, unknown>;
    const ctx = systemContextFrom(opts, "dest-", globals);
    const trust = await loadTrustPolicy({ policy: globals.policy as string | undefined, insecurePolicy: globals.insecurePolicy === true });
    const registries = to.startsWith("oci:") || to.startsWith("dir:") ? undefined : await loadRegistriesD(globals["registries.d"] as string | undefined);
    const ctxFor = (name: string): SystemContext => {
      const ref = destinationFor(name);
      const staging = registries && ref instanceof DockerImageReference ? configuredLookasideStaging(registries.config, ref.ref) : undefined;
      return staging === undefined ? ctx : { ...ctx, docker: { ...ctx.docker, lookasideStaging: staging } };
    };
    const progress = cli.progress({ json: opts.json as boolean, quiet: opts.quiet as boolean });
    let result: ImportResult;
    try {
      result = await importBundle(bundle, {
        destinationFor,
        ctx,
        ctxFor,
        ...(trust ? { checkPolicy: bundlePolicyChecker(policyChecker(trust)) } : {}),
        signatures: opts.removeSignatures ? "remove" : opts.requireSignatures ? "require" : "copy",
        ...(opts.concurrency ? { concurrency: opts.concurrency as number } : {}),
        ...withThrottle(opts),
        ...(opts.image ? { images: opts.image as string[] } : {}),
        dryRun: opts.dryRun === true,
        signal: cli.signal,
        onProgress: listener(progress.listener),
      });
    } finally {
      progress.stop();
    }
    for (const i of result.images) {
      const sigs = i.signatures > 0 ? ` (${i.signatures} signature${i.signatures > 1 ? "s" : ""})` : "";
      cli.stdout.write(`${i.status === "pushed" ? "pushed " : i.status === "present" ? "present" : "would push"} ${i.destination} ${i.digest}${sigs}\n`);
    }
    cli.stdout.write(
      `${result.dryRun ? "Dry run: " : ""}${result.images.length} image(s); ${result.blobsPushed} blob(s) ${result.dryRun ? "to push" : "pushed"} (${formatBytes(result.bytesPushed)}), ${result.blobsSkipped} already present; ${result.manifestsPushed} manifest(s) in ${seconds(result.durationMs)}\n`,
    );
    await writeReport(opts, result);
    if (opts.receipt && !result.dryRun) {
      if (to.startsWith("oci:") || to.startsWith("dir:")) throw new UsageError("--receipt needs --to REGISTRY[/PREFIX]: an inventory is taken of a registry");
      const ctx = systemContextFrom(opts, "dest-", cli.globals() as Record<string, unknown>);
      const receipt = await takeInventory(to, { ...(ctx.docker ? { docker: ctx.docker } : {}), signal: cli.signal });
      await writeReceipt(opts.receipt as string, receipt);
      cli.stdout.write(describeReceipt(receipt, opts.receipt as string));
    }
  });
}

/**
 * The base of `export --since FILE`: a receipt or an old bundle (read by @airlock/core), or an old
 * images.lock.yaml (its manifest digests: the blobs of those manifests are not shipped again).
 */
async function deltaBaseFrom(path: string, signal: AbortSignal): Promise<DeltaBase> {
  if (/\.ya?ml$/i.test(path)) {
    const lock = await readLock(path);
    const digests = lock.images.flatMap((i) => [i.digest, ...(i.manifests ?? []).map((m) => m.digest)]);
    return baseFromManifests(`lock ${path} (${lock.generated})`, digests);
  }
  return loadDeltaBase(path, signal);
}

/** The state of one volume verified on its own: `verify bundle.tar.003` with the other volumes absent. */
interface VolumeAlone {
  volume: number;
  path: string;
  ok: boolean;
  /** What was said about its checksum. */
  checksum: string;
  /** Faults in this volume (none about the absent ones). */
  problems: VerifyReport["problems"];
  /** The volumes not present. */
  absent: number[];
}

/** When `paths` is one volume file (`OUT.NNN`) and no other volume is present: that volume's own state; otherwise undefined. */
function volumeAlone(paths: string[], report: VerifyReport): VolumeAlone | undefined {
  const present = report.volumes.filter((v) => v.present);
  if (paths.length !== 1 || !/\.\d{3}$/.test(paths[0] as string) || present.length !== 1 || report.volumes.length < 2) return undefined;
  const v = present[0] as VerifyReport["volumes"][number];
  if (resolve(v.path) !== resolve(paths[0] as string)) return undefined;
  const problems = report.problems.filter((p) => p.severity === "error" && p.volume === v.volume && p.kind !== "volume-missing");
  const checksum = v.expected === undefined ? `sha256:${v.sha256} (no checksum beside it to compare: its entries were checked against its own description)` : v.ok ? `sha256:${v.sha256} matches` : `sha256:${v.sha256}, expected ${v.expected}`;
  return { volume: v.volume, path: v.path, ok: v.ok && problems.length === 0, checksum, problems, absent: report.volumes.filter((x) => !x.present).map((x) => x.volume) };
}

/**
 * Sets, on every docker:// source, where its signatures are read (the lookaside location of
 * registries.d, as copy does), so that the export carries them.
 */
async function withSignatureLocations(images: ExportImage[], globals: Record<string, unknown>): Promise<ExportImage[]> {
  if (!images.some((i) => i.source instanceof DockerImageReference)) return images;
  const { config } = await loadRegistriesD(globals["registries.d"] as string | undefined);
  return images.map((img) => {
    if (!(img.source instanceof DockerImageReference)) return img;
    const ctx: SystemContext = img.ctx ?? {};
    return { ...img, ctx: { ...ctx, docker: { ...ctx.docker, lookaside: lookasideForReading(config, img.source.ref) } } };
  });
}

/**
 * The trust policy for bundle images: an image whose bundle name is a full Docker reference
 * (`registry.example.com/app:1`) is judged as `docker://NAME` (the docker transport's scopes),
 * any other name as `bundle:PATH:NAME` (the policy's default).
 */
function bundlePolicyChecker(check: (c: PolicyCheck) => Promise<void>): (c: PolicyCheck & { name: string }) => Promise<void> {
  return async ({ name, ...c }) => {
    let reference = c.reference;
    try {
      if (DockerReference.parse(name).toString() === name) reference = parseImageName(`docker://${name}`);
    } catch {
      // Not a Docker reference: the default scope.
    }
    await check({ ...c, reference });
  };
}

/** Maps a bundle name to its destination reference for `--to`. */
function destinationMapper(to: string, naming: NamingMode): (name: string) => ImageReference {
  if (to.startsWith("oci:")) {
    const dir = to.slice(4);
    if (!dir || dir.includes(":")) throw new UsageError(`--to ${to}: give oci:DIR (each image is named in the layout by its bundle name)`);
    return (name) => parseImageName(`oci:${dir}:${name}`);
  }
  if (to.startsWith("dir:")) {
    const dir = to.slice(4);
    return (name) => parseImageName(`dir:${dir}/${name.replace(/[/:@]/g, "_")}`);
  }
  const target = to.startsWith("docker://") ? to.slice("docker://".length) : to;
  destinationName("example/check:1", naming, target); // validates --to once, with a clear message
  return (name) => parseImageName(`docker://${destinationName(name, naming, target).toString()}`);
}

/** Adapts the core listener (bundle events are a superset of progress events). */
function listener(l: (e: never) => void): (e: BundleEvent) => void {
  return l as (e: BundleEvent) => void;
}

function printExport(cli: CliContext, r: ExportResult, failures: ImageFailure[]): void {
  for (const i of r.images) cli.stdout.write(`${i.name} ${i.digest}${i.sourceDigest ? ` (index rewritten for the platforms asked; source ${i.sourceDigest})` : ""}\n`);
  for (const v of r.volumes) cli.stdout.write(`${v.path} ${formatBytes(v.size)} sha256:${v.sha256}\n`);
  for (const t of r.tools ?? []) cli.stdout.write(`tool ${t.path} (${t.platform}) ${formatBytes(t.size)} ${t.digest}\n`);
  for (const f of failures) cli.stdout.write(`FAILED ${f.image}: ${f.error}\n`);
  cli.stdout.write(
    `Exported ${r.images.length} image(s), ${r.blobs} blob(s), ${formatBytes(r.blobBytes)}` +
      (r.duplicateBlobs ? ` (${r.duplicateBlobs} shared blob reference(s) stored once)` : "") +
      (r.blobsResumed ? `, ${r.blobsResumed} blob(s) resumed from an earlier run` : "") +
      (r.baseBlobs !== undefined ? `; a delta: ${r.baseBlobs} blob(s) (${formatBytes(r.baseBytes ?? 0)}) left out, the other side has them` : "") +
      ` in ${seconds(r.durationMs)} to ${r.path}${r.volumes.length > 1 ? ` (${r.volumes.length} volumes)` : ""}\n`,
  );
}
