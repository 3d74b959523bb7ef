/**
 * The connected side's air-gap verbs: `lock`, `plan` and `export`. The air-gapped side's, `verify`
 * and `import`, are in commands/offline.ts.
 */
import {
  AirlockError,
  type BundleEvent,
  checkSpace,
  exportSpaceNeeds,
  importSpace,
  exportBundle,
  type ExportResult,
  baseFromManifests,
  type DeltaBase,
  DockerImageReference,
  type ExportImage,
  type ExportedImage,
  loadDeltaBase,
  type SystemContext,
  writeFileAtomic,
} from "@airlock/core";
import type { Command } from "commander";
import {
  checkLocked,
  defaultLockPath,
  exportImagesFor,
  failureReport,
  failuresError,
  type ImageFailure,
  indexRewriteNote,
  lockedImageLines,
  type CommandRegistrySettings,
  resolveAndLock,
} from "../bundle-flow.js";
import { type Lock, readLock, writeLock } from "../config/index.js";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { addRetryFlags, globalRegistrySettings, parseCount } from "../flags.js";
import { addThrottleFlags, withThrottle } from "../throttle-flags.js";
import { parseToolPlatform, toolsFor } from "../include-tool.js";
import { formatBytes } from "../progress.js";
import { loadRegistriesD, lookasideForReading, signBundleMetadataWithKeyFile } from "../signing/index.js";
import { VERSION } from "../version.js";
import { bundleMetadataBytes, errorReport, listener, reportOptions, seconds, signaturePathFor, writeReport, writeSummary } from "./bundle-common.js";

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
/** Registers lock, plan and export. */
export function registerBundle(program: Command, cli: CliContext): void {
  // ---------------------------------------------------------------- lock
  const lockCmd = fileOption(program.command("lock"))
    .description("Pin every image of images.yaml to digests in images.lock.yaml")
    .option("-o, --output <file>", "where to write the lock (default: images.lock.yaml next to the images file)");
  addRetryFlags(lockCmd);
  lockCmd.addHelpText("after", "\nExample:\n  airlock lock -f images.yaml && git add images.lock.yaml").action(async (opts: Record<string, unknown>) => {
    const file = opts.file as string;
    const resolved = await resolveAndLock(file, { registry: registrySettingsFrom(opts, cli.globals() as Record<string, unknown>), signal: cli.signal });
    const out = (opts.output as string | undefined) ?? defaultLockPath(file);
    const written = await writeLock(out, resolved.lock);
    for (const line of lockedImageLines(resolved.lock, resolved.fetched)) cli.stdout.write(`${line}\n`);
    cli.stderr.write(written ? `Locked ${resolved.lock.images.length} image(s) in ${out}\n` : `${out} is up to date: its ${resolved.lock.images.length} image(s) have not moved (the file is left as it was)\n`);
  });

  // ---------------------------------------------------------------- plan
  const planCmd = reportOptions(
    fileOption(program.command("plan"))
      .description("Say what an export would move (images, blobs, bytes) and check there is room for it")
      .option("-o, --output <bundle>", "the bundle the export would write (for the free-space check)", "bundle.tar")
      .option("--split-size <size>", "volume size, e.g. 4G, fat32, dvd, bd25", parseSize)
      .option("--to <destination>", "the import's destination: for oci:DIR or dir:DIR, also check the space the imported images take there")
      .option("--locked", "use images.lock.yaml and fail if anything drifted")
      .option("--lock <file>", "with --locked (implied): the lock to use instead of images.lock.yaml next to the images file")
      .option("--format <format>", FORMAT_HELP, parseFormat),
  );
  addRetryFlags(planCmd);
  planCmd.action(async (opts: Record<string, unknown>) => {
    const file = opts.file as string;
    const started = Date.now();
    let stage = `while resolving the images of ${file}`;
    let images: number | undefined;
    let reported = false;
    try {
      const resolved = await resolveAndLock(file, { registry: registrySettingsFrom(opts, cli.globals() as Record<string, unknown>), signal: cli.signal });
      images = resolved.lock.images.length;
      stage = `while checking ${images} image(s) against the lock`;
      const lockFile = lockFileOf(opts, file);
      if (lockFile) await checkLocked(resolved, lockFile);
      stage = `while reading the manifests of ${images} image(s)`;
      const result = await exportBundle(exportImagesFor(resolved.lock, resolved.planned, resolved.fetched), opts.output as string, {
        dryRun: true,
        ...(opts.format ? { format: opts.format as "oci" } : {}),
        ...(opts.splitSize ? { splitSize: opts.splitSize as number } : {}),
        signal: cli.signal,
      });
      stage = "while checking the free space";
      const imports = importSpace(result, opts.to as string | undefined);
      const space = await checkSpace([...exportSpaceNeeds({ out: opts.output as string, volumes: result.volumes, blobs: result.blobs }), ...imports.needs]);
      const free = space.find((c) => c.needs.some((n) => n.path === result.volumes[0]?.path))?.free;
      const platformsOf = new Map(resolved.lock.images.map((i) => [i.name, i.platforms]));
      cli.stdout.write(
        [
          ...result.images.flatMap((i) => [
            `  ${i.name}  ${i.digest}  (${i.source})`,
            ...(i.sourceDigest ? [`    ${digestNote(i, platformsOf.get(i.name))}`] : []),
          ]),
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
      const short = space.filter((c) => !c.ok);
      const shortError =
        short.length === 0
          ? undefined
          : new AirlockError(
              "ERR_IO",
              short.map((c) => `not enough space in ${c.directory} for ${c.needs.map((n) => n.what).join(", ")}: ${formatBytes(c.bytes)} needed, ${formatBytes(c.free ?? 0)} free`).join("; ") +
                "; free some space, write elsewhere with -o, or split into volumes with --split-size",
            );
      reported = true;
      await writeReport(opts, { ok: shortError === undefined, ...(shortError ? { error: shortError.message } : {}), ...result, free, space, import: { temporaryBytes: imports.temporaryBytes, reason: imports.reason } });
      if (shortError) throw shortError;
    } catch (err) {
      if (reported) throw err;
      const report = { ok: false, ...errorReport(err), ...(images !== undefined ? { imagesResolved: images } : {}), durationMs: Date.now() - started };
      writeSummary(cli, opts, `Plan failed after ${seconds(Date.now() - started)} ${stage}: nothing is planned`, report);
      await writeReport(opts, report);
      throw err;
    }
  });

  // ---------------------------------------------------------------- export
  const exportCmd = reportOptions(
    fileOption(program.command("export"))
      .description("Export the images of images.yaml into one portable, verifiable archive")
      .requiredOption("-o, --output <bundle>", "the bundle file to write, e.g. bundle.tar")
      .option("--locked", "export exactly images.lock.yaml; fail if images.yaml or the sources drifted from it")
      .option("--lock <file>", "with --locked (implied): the lock to export instead of images.lock.yaml next to the images file (e.g. one written by lock -o)")
      .option("--split-size <size>", "write volumes of at most this size (OUT.000, OUT.001, …): bytes, 4G, fat32, dvd, bd25", parseSize)
      .option("--format <format>", FORMAT_HELP, parseFormat)
      .option("--concurrency <n>", "blobs downloaded at once (default 6)", (v) => parseCount(v, "--concurrency"))
      .option("--keep-going", "export the images that can be read (a blob that cannot be read fails only the images using it); list the others and exit non-zero")
      .option("--no-resume", "start over instead of resuming an interrupted export of the same bundle")
      .option("--since <receipt|lock|bundle>", "a delta: leave out what the other side has (a receipt from airlock inventory, an old images.lock.yaml, or an old bundle)")
      .option("--sign-key <file>", "sign the bundle's metadata (which commits to every digest) with this OpenPGP secret key; writes BUNDLE.sig")
      .option("--sign-passphrase-file <file>", "the passphrase of --sign-key, on the first line of this file")
      .option("--include-tool [path]", "carry airlock's single-file executable as airlock/tool/airlock-linux-<arch> for the air-gapped side: this executable if airlock runs as one, else dist/ from `npm run compile`, or PATH")
      .option("--tool-platform <platform>", "with --include-tool: the platform to carry it for, linux/amd64 or linux/arm64 (repeatable; default: this machine's architecture)", (v: string, prev: string[] = []) => [...prev, parseToolPlatform(v)]),
  );
  addThrottleFlags(exportCmd);
  addRetryFlags(exportCmd);
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
    const show = listener(progress.listener);
    const tally = new ExportTally();
    const started = Date.now();
    let failures: ImageFailure[] = [];
    let result: ExportResult | undefined;
    let reported = false;
    try {
      const resolved = await resolveAndLock(file, { keepGoing: opts.keepGoing === true, registry: registrySettingsFrom(opts, cli.globals() as Record<string, unknown>), signal: cli.signal });
      failures = resolved.failures;
      // --json: every image that fails is an event (the text modes list them on stdout at the end).
      if (opts.json) for (const f of failures) show({ type: "image-failed", image: f.image, error: f.error });
      const lockFile = lockFileOf(opts, file);
      const lock = lockFile ? await checkLocked(resolved, lockFile) : resolved.lock;
      if (lock.images.length === 0) throw failuresError(failures, `no image to export: ${failures.length} failed (${failures.map((f) => f.image).join(", ")})`);
      const images = await withSignatureLocations(exportImagesFor(lock, resolved.planned, resolved.fetched), cli.globals() as Record<string, unknown>);
      result = await exportBundle(images, out, {
        ...(opts.format ? { format: opts.format as "oci" } : {}),
        ...(opts.splitSize ? { splitSize: opts.splitSize as number } : {}),
        ...(opts.concurrency ? { concurrency: opts.concurrency as number } : {}),
        ...withThrottle(opts),
        resume: opts.resume !== false,
        lock,
        ...(opts.keepGoing ? { keepGoing: true, lockWithout: (failed: string[]) => ({ ...lock, images: lock.images.filter((i) => !failed.includes(i.name)) }) } : {}),
        toolVersion: VERSION,
        ...(opts.since ? { since: await deltaBaseFrom(opts.since as string, cli.signal) } : {}),
        ...(tools.length > 0 ? { tools } : {}),
        signal: cli.signal,
        onProgress: (e) => {
          tally.see(e);
          show(e);
        },
      });
      if (opts.json) for (const f of result.failures ?? []) show({ type: "image-failed", image: f.image, error: f.error.message });
      progress.stop();
      failures = [...failures, ...(result.failures ?? []).map((f) => ({ image: f.image, error: f.error.message, code: f.error.code, cause: f.error }))];
      printExport(cli, result, lock, failures);
      if (opts.signKey) {
        const sig = await signBundleMetadataWithKeyFile(await bundleMetadataBytes(out, cli.signal), {
          keyFile: opts.signKey as string,
          keyFlag: "--sign-key",
          ...(opts.signPassphraseFile ? { passphraseFile: opts.signPassphraseFile as string, passphraseFlag: "--sign-passphrase-file" } : {}),
        });
        await writeFileAtomic(signaturePathFor([out]), sig);
        cli.stdout.write(`Signed: ${signaturePathFor([out])}\n`);
      }
      const failed = failures.length > 0 ? failuresError(failures, `${failures.length} image(s) could not be exported (listed above); the bundle holds the others`) : undefined;
      reported = true;
      const report = { ok: failed === undefined, ...(failed ? errorReport(failed) : {}), ...result, failures: failures.map(failureReport) };
      writeSummary(cli, opts, undefined, report);
      await writeReport(opts, report);
      if (failed) throw failed;
    } catch (err) {
      if (reported) throw err;
      progress.stop();
      if (result === undefined) {
        for (const f of failures) cli.stdout.write(`FAILED ${f.image}: ${f.error}\n`);
      }
      const report = { ok: false, ...errorReport(err), ...(result ?? { path: out, durationMs: Date.now() - started, ...tally.report() }), failures: failures.map(failureReport) };
      // How far it got, when it got anywhere; a run refused before it moved anything says only why.
      const line = result === undefined && (tally.movedAnything() || failures.length > 0) ? tally.failedSummary(Date.now() - started, failures.length) : undefined;
      writeSummary(cli, opts, line, report);
      await writeReport(opts, report);
      throw err;
    } finally {
      progress.stop();
    }
  });
}

/** The lock that --locked / --lock name: --lock FILE, else images.lock.yaml next to the images file with --locked; undefined without either. */
function lockFileOf(opts: Record<string, unknown>, imagesFile: string): string | undefined {
  if (typeof opts.lock === "string") return opts.lock;
  return opts.locked ? defaultLockPath(imagesFile) : undefined;
}

/** `--retry-times` and `--retry-delay` as registry settings. */
function registrySettingsFrom(opts: Record<string, unknown>, globals: Record<string, unknown>): CommandRegistrySettings {
  return {
    ...globalRegistrySettings(globals),
    ...(opts.retryTimes !== undefined ? { retryTimes: opts.retryTimes as number } : {}),
    ...(opts.retryDelay !== undefined ? { retryDelayMs: opts.retryDelay as number } : {}),
  };
}

const FORMAT_HELP =
  "oci: convert images with Docker media types (v2s2 manifests, manifest lists) to OCI, so that every OCI tool reads every image of the bundle — skopeo skips Docker media types in an OCI layout; their digests change (both are printed). Default: every manifest kept as it is";

/** Parses --format: only "oci" (the bundle is an OCI layout; converting to Docker v2s2 has no use there). */
function parseFormat(v: string): "oci" {
  if (v !== "oci") throw new UsageError(`--format takes "oci" (convert Docker-typed images to OCI), got ${JSON.stringify(v)}; leave it out to keep every manifest as it is`);
  return v;
}

/** Why an exported image's digest differs from its source's: a platform subset, a conversion to OCI (--format oci), or both. */
function digestNote(i: ExportedImage, platforms: "all" | string[] | undefined): string {
  if (!i.converted) return indexRewriteNote(platformsList(platforms), i.sourceDigest ?? i.digest, i.digest);
  const cut = platforms !== undefined && platforms !== "all" ? ` and its index cut to ${platforms.join(", ")}` : "";
  return `converted to OCI (--format oci)${cut}, so the digest changes: ${i.sourceDigest} (source) → ${i.digest} (bundle); without --format oci the source's manifests and digest are kept`;
}

function platformsList(p: "all" | string[] | undefined): string[] {
  return p === undefined || p === "all" ? ["the platforms asked"] : p;
}

/** What an export did before it failed, counted from its progress events: for the summary and report of a failed run. */
class ExportTally {
  /** The archive as planned (once every manifest was read). */
  plan: { images: number; blobs: number; bytes: number } | undefined;
  /** The images whose every blob is in the bundle. */
  readonly imagesDone: { name: string; digest: string }[] = [];
  blobsWritten = 0;
  bytesWritten = 0;
  blobsResumed = 0;

  see(e: BundleEvent): void {
    if (e.type === "bundle-plan") this.plan = { images: e.images, blobs: e.blobs, bytes: e.bytes };
    else if (e.type === "image-done") this.imagesDone.push({ name: e.image, digest: e.digest });
    else if (e.type === "blob-done") {
      this.blobsWritten++;
      this.bytesWritten += e.size;
    } else if (e.type === "blob-skipped") this.blobsResumed++;
  }

  /** The report's fields. */
  report(): Record<string, unknown> {
    return { images: this.imagesDone, ...(this.plan ? { planned: this.plan } : {}), blobsWritten: this.blobsWritten, bytesWritten: this.bytesWritten, blobsResumed: this.blobsResumed };
  }

  /** Whether any image or blob got into the bundle. */
  movedAnything(): boolean {
    return this.imagesDone.length > 0 || this.blobsWritten > 0 || this.blobsResumed > 0;
  }

  /** One line: how far the export got. */
  failedSummary(ms: number, failed: number): string {
    const what = this.plan
      ? `${this.imagesDone.length} of ${this.plan.images} image(s) done, ${this.blobsWritten} of ${this.plan.blobs} blob(s) written (${formatBytes(this.bytesWritten)} of ${formatBytes(this.plan.bytes)})` +
        (this.blobsResumed ? `, ${this.blobsResumed} resumed from an earlier run` : "")
      : "0 image(s) done, no blob moved (it failed while reading the images)";
    const others = failed > 0 ? `; ${failed} image(s) could not be read (listed above)` : "";
    return `Export failed after ${seconds(ms)}: ${what}${others}`;
  }
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

function printExport(cli: CliContext, r: ExportResult, lock: Lock, failures: ImageFailure[]): void {
  const platformsOf = new Map(lock.images.map((i) => [i.name, i.platforms]));
  for (const i of r.images) cli.stdout.write(`${i.name} ${i.digest}${i.sourceDigest ? ` (${digestNote(i, platformsOf.get(i.name))})` : ""}\n`);
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
