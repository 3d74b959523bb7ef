/**
 * The air-gapped side's verbs: `verify` checks a bundle offline, `import` pushes it into the offline
 * registry (or an OCI layout / dir:). Kept apart from lock, plan and export (commands/bundle.ts),
 * which read images.yaml: these load neither YAML nor semver.
 */
import { resolve } from "node:path";
import {
  AirlockError,
  type BundleEvent,
  BundleReader,
  DockerImageReference,
  DockerReference,
  type ImageReference,
  importBundle,
  type ImportedImage,
  type ImportResult,
  isAirlockError,
  isValidRepositoryPath,
  type PolicyCheck,
  parseImageName,
  type SystemContext,
  takeInventory,
  verifyBundle,
  type VerifyReport,
  writeReceipt,
} from "@airlock/core";
import { type Command, Option } from "commander";
import { destinationName, NAMING_MODES, type NamingMode } from "../config/naming.js";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { addDockerFlags, addRetryFlags, parseCount, systemContextFrom } from "../flags.js";
import { formatBytes } from "../progress.js";
import { withFlagHints } from "../registry-hints.js";
import { configuredLookasideStaging, loadRegistriesD, loadTrustPolicy, policyChecker } from "../signing/index.js";
import { addThrottleFlags, withThrottle } from "../throttle-flags.js";
import { checkBundleSignature, errorReport, keepGoingError, listener, reportOptions, seconds, writeReport, writeSummary } from "./bundle-common.js";
import { describeReceipt } from "./inventory.js";

/** Registers verify and import. */
export function registerOffline(program: Command, cli: CliContext): void {
  // ---------------------------------------------------------------- verify
  program
    .command("verify")
    .description("Check a bundle offline: every volume, blob, manifest and the metadata")
    .argument("<bundle...>", "the bundle file, or its volumes (bundle.tar.000 …), or the base name of a split bundle")
    .option("--json", "print the report as JSON on stdout")
    .option("--report <file>", "also write the report as JSON to this file (its directory is made as needed)")
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
      await writeReport(opts, alone ? { ...report, volumeAlone: alone } : report);
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
          const unchecked = v.present && v.expected === undefined ? " (no checksum recorded; its entries were checked)" : "";
          cli.stdout.write(`volume ${v.volume} ${v.path}: ${!v.present ? "MISSING" : v.ok ? "ok" : "DAMAGED"}${v.sha256 ? ` sha256:${v.sha256}` : ""}${unchecked}\n`);
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
      .option("--dry-run", "check the bundle as import does before pushing, ask the destination what it holds, and print per image and in total what would be pushed, re-tagged or is present; write nothing (blob contents are not hashed: see below)")
      .option("--image <name...>", "import only these images (their bundle names)")
      .option("--concurrency <n>", "blobs pushed at once (default 6)", (v) => parseCount(v, "--concurrency"))
      .option("--authfile <path>", "auth file (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)")
      .option("--receipt <file>", "after the import, write a receipt of what --to REGISTRY[/PREFIX] holds (for airlock export --since)")
      .option("--verify-key <file...>", "refuse the bundle unless BUNDLE.sig is a valid signature by one of these OpenPGP public keys; the whole bundle is then verified before anything is pushed")
      .option("--signature <file>", "the bundle's signature file (default: BUNDLE.sig)")
      .option("--remove-signatures", "do not store the image signatures the bundle carries (they are still checked by the trust policy)")
      .option("--require-signatures", "fail before pushing anything when a destination cannot store the image signatures the bundle carries (default: warn and import without them)")
      .option("--keep-going", "when an image fails at the destination (e.g. push denied for its repository), push the others and list the failures (a damaged bundle still stops everything)"),
  );
  addDockerFlags(importCmd, "dest-");
  addRetryFlags(importCmd);
  addThrottleFlags(importCmd);
  importCmd.addHelpText(
    "after",
    `
The bundle is checked before anything is pushed; blobs stream straight out of the archive and are
verified again on the way; what the destination already has is skipped; tags are written last.
The summary counts blobs pushed, blobs shared by several images (pushed once, then mounted or
reused for the others) and blobs already present (at the destination before this run); an image
whose blobs and manifests were all there but whose tag was missing or named another image is
listed as retagged.

--dry-run does everything up to the first write: it reads and checks every manifest against its
digest, checks that every blob is in the bundle with its size (no volume missing or truncated) and
that bundle.json agrees with index.json, applies the trust policy, then asks the destination what
it already has (HEADs of tags, manifests and blobs, as the import's skip logic) and prints the
plan; nothing is written. It does not read the blobs' contents (that is every byte of the bundle):
run airlock verify BUNDLE to check every digest, or give --verify-key, which verifies the whole
bundle first. --json (a final summary event) and --report carry the same plan.

Image signatures exported with the images travel in the bundle and are stored at the destination
(dir: signature-N files, oci: signatures/<alg>/<hex>/, docker:// the lookaside-staging location of
registries.d). The trust policy (--policy FILE, else the default policy.json) is checked on every
image, with the signatures in the bundle, before anything is pushed; an image named by a full
Docker reference (registry.example.com/app:1) is checked under that docker scope, any other name
under the policy's default.

With --keep-going, an image that fails at the destination is listed as FAILED NAME: reason, the
others are pushed completely, and the summary and --report list the failures; the exit status is
then 2 when every failed image does not exist, else 1. A bundle that is damaged or tampered with
still stops the whole import before anything wrong is pushed.

Examples:
  airlock import bundle.tar --to registry.airgap.local:5000/mirror
  airlock import bundle.tar.* --to oci:/srv/images --dry-run`,
  );
  importCmd.action(async (paths: string[], opts: Record<string, unknown>) => {
    const started = Date.now();
    const tally = new ImportTally();
    let result: ImportResult;
    // The report (--report FILE) and, with --json, the same object as the last NDJSON event ("summary", as export's).
    const summarize = async (report: Record<string, unknown>, line?: string) => {
      writeSummary(cli, opts, line, report);
      await writeReport(opts, report);
    };
    try {
      result = await runImport(paths, opts, tally);
    } catch (err) {
      // How far it got, when it got anywhere; a run refused before it moved anything says only why.
      const line = tally.movedAnything() ? tally.failedSummary(Date.now() - started) : undefined;
      await summarize({ ok: false, ...errorReport(err), path: paths.join(" "), ...(opts.dryRun ? { dryRun: true } : {}), ...tally.report(), durationMs: Date.now() - started }, line);
      throw err;
    }
    for (const line of describeImport(result)) cli.stdout.write(`${line}\n`);
    if (result.dryRun && !opts.verifyKey) {
      cli.stdout.write(`Blob contents in the bundle were not hashed (every manifest was checked against its digest, every blob found with its size): run airlock verify ${paths.join(" ")} to check every byte\n`);
    }
    const failures = result.failures.map((f) => ({ image: f.name, destination: f.destination, error: f.error.message, ...(isAirlockError(f.error) ? { code: f.error.code } : {}) }));
    const failed = failures.length > 0 ? keepGoingError(result.failures.map((f) => f.error), `${failures.length} image(s) could not be ${result.dryRun ? "checked at the destination" : "imported"} (listed above: ${failures.map((f) => f.image).join(", ")}); the others ${result.dryRun ? "were planned" : "were pushed"}`) : undefined;
    await summarize({ ok: failed === undefined, ...(failed ? errorReport(failed) : {}), ...result, failures });
    if (failed) throw failed;
    const to = opts.to as string;
    if (opts.receipt && !result.dryRun) {
      if (to.startsWith("oci:") || to.startsWith("dir:")) throw new UsageError("--receipt needs --to REGISTRY[/PREFIX]: an inventory is taken of a registry");
      const ctx = withFlagHints(systemContextFrom(opts, "dest-", cli.globals() as Record<string, unknown>), opts, "dest-");
      const receipt = await takeInventory(to, { ...(ctx.docker ? { docker: ctx.docker } : {}), signal: cli.signal });
      await writeReceipt(opts.receipt as string, receipt);
      cli.stdout.write(describeReceipt(receipt, opts.receipt as string));
    }
  });

  /** Checks the bundle and pushes it: everything of import up to its result. */
  async function runImport(paths: string[], opts: Record<string, unknown>, tally: ImportTally): Promise<ImportResult> {
    const bundle = paths.length === 1 ? (paths[0] as string) : paths;
    if (opts.verifyKey) {
      const fpr = await checkBundleSignature(paths, opts.verifyKey as string[], opts.signature as string | undefined, "--verify-key", cli.signal);
      const report = await verifyBundle(bundle, { signal: cli.signal });
      if (!report.ok) {
        throw new AirlockError("ERR_DIGEST_MISMATCH", `${paths.join(" ")} is signed by ${fpr} but its content does not match its signed metadata (${report.problems.filter((p) => p.severity === "error").map((p) => p.message).join("; ")}); nothing was pushed`);
      }
      cli.stderr.write(`Bundle signed by ${fpr} and verified; importing\n`);
    }
    // Opened once: its metadata names the lock's naming, and the import reads the same index.
    const reader = await BundleReader.open(bundle, { signal: cli.signal });
    try {
      return await importOpened(reader, opts, tally);
    } finally {
      await reader.close();
    }
  }

  async function importOpened(reader: BundleReader, opts: Record<string, unknown>, tally: ImportTally): Promise<ImportResult> {
    const to = opts.to as string;
    const metadata = await reader.metadata();
    const lockNaming = (metadata?.lock as { naming?: NamingMode } | undefined)?.naming;
    const naming = (opts.naming as NamingMode | undefined) ?? lockNaming ?? "keep-path";
    const destinationFor = destinationMapper(to, naming);
    const globals = cli.globals() as Record<string, unknown>;
    const ctx = withFlagHints(systemContextFrom(opts, "dest-", globals), opts, "dest-");
    const trust = await loadTrustPolicy({ policy: globals.policy as string | undefined, insecurePolicy: globals.insecurePolicy === true, requireSigned: globals.requireSigned === true });
    const registries = to.startsWith("oci:") || to.startsWith("dir:") ? undefined : await loadRegistriesD(globals["registries.d"] as string | undefined);
    const ctxFor = (name: string): SystemContext => {
      const ref = destinationFor(name);
      const staging = registries && ref instanceof DockerImageReference ? configuredLookasideStaging(registries.config, ref.ref) : undefined;
      return staging === undefined ? ctx : { ...ctx, docker: { ...ctx.docker, lookasideStaging: staging } };
    };
    const progress = cli.progress({ json: opts.json as boolean, quiet: opts.quiet as boolean });
    const show = listener(progress.listener);
    try {
      return await importBundle(reader, {
        destinationFor,
        ctx,
        ctxFor,
        ...(trust ? { checkPolicy: bundlePolicyChecker(policyChecker(trust)) } : {}),
        signatures: opts.removeSignatures ? "remove" : opts.requireSignatures ? "require" : "copy",
        ...(opts.concurrency ? { concurrency: opts.concurrency as number } : {}),
        ...withThrottle(opts),
        ...(opts.image ? { images: opts.image as string[] } : {}),
        dryRun: opts.dryRun === true,
        keepGoing: opts.keepGoing === true,
        signal: cli.signal,
        onProgress: (e) => {
          tally.see(e);
          show(e);
        },
      });
    } finally {
      progress.stop();
    }
  }
}

/**
 * The lines an import prints on stdout: one per image (what was done, or in a dry run what would
 * be done, with that image's blob counts), a FAILED line per failed image, and the totals.
 */
function describeImport(result: ImportResult): string[] {
  const lines: string[] = [];
  const blobCounts = (i: ImportedImage, verb: string) => `${i.blobsPushed} blob(s) ${verb} (${formatBytes(i.bytesPushed)}), ${i.blobsShared} shared, ${i.blobsPresent} already present`;
  for (const i of result.images) {
    const sigs = i.signatures > 0 ? ` (${i.signatures} signature${i.signatures > 1 ? "s" : ""})` : "";
    if (!result.dryRun) {
      const word = i.status === "pushed" ? "pushed " : i.status === "retagged" ? "retagged" : "present";
      lines.push(`${word} ${i.destination} ${i.digest}${sigs}`);
      continue;
    }
    if (i.action === "push") lines.push(`would push  ${i.destination} ${i.digest}${sigs}: ${blobCounts(i, "to push")}`);
    else if (i.action === "retag") lines.push(`would retag ${i.destination} ${i.digest}${sigs}: its blobs and manifests are there; the tag is missing or names another image`);
    else lines.push(`present     ${i.destination} ${i.digest}${sigs}: nothing to push`);
  }
  for (const f of result.failures) lines.push(`FAILED ${f.name}: ${f.error.message}`);
  const shared = `${result.blobsShared} shared by several images (pushed once)`;
  if (result.dryRun) {
    const n = (a: ImportedImage["action"]) => result.images.filter((i) => i.action === a).length;
    lines.push(
      `Dry run: ${result.images.length} image(s) (${n("push")} to push, ${n("retag")} to retag, ${n("none")} present)${result.failures.length > 0 ? `, ${result.failures.length} FAILED` : ""}; ` +
        `${result.blobsPushed} blob(s) to push (${formatBytes(result.bytesPushed)}), ${shared}, ${result.blobsSkipped} already present; ` +
        `${result.manifestsPushed} manifest(s) and ${result.tagsWritten} tag(s) to write; nothing was written (${seconds(result.durationMs)})`,
    );
  } else {
    lines.push(
      `${result.images.length} image(s)${result.failures.length > 0 ? `, ${result.failures.length} FAILED` : ""}; ${result.blobsPushed} blob(s) pushed (${formatBytes(result.bytesPushed)}), ${shared}, ${result.blobsSkipped} already present; ` +
        `${result.manifestsPushed} manifest(s), ${result.tagsWritten} tag(s) written in ${seconds(result.durationMs)}`,
    );
  }
  return lines;
}

/** What an import did before it failed, counted from its progress events: for the summary and report of a failed run. */
class ImportTally {
  /** What the bundle carries (its `bundle-plan` event), once it is checked. */
  plan: { images: number; blobs: number; bytes: number } | undefined;
  /** The images complete at the destination. */
  readonly imagesDone: { name: string; digest: string }[] = [];
  blobsPushed = 0;
  bytesPushed = 0;
  blobsSkipped = 0;
  /** Blobs reused from an upload of this run for another image (not "already present"). */
  blobsShared = 0;

  see(e: BundleEvent): void {
    if (e.type === "bundle-plan") this.plan = { images: e.images, blobs: e.blobs, bytes: e.bytes };
    else if (e.type === "image-done") this.imagesDone.push({ name: e.image, digest: e.digest });
    else if (e.type === "blob-done") {
      this.blobsPushed++;
      this.bytesPushed += e.size;
    } else if (e.type === "blob-skipped") {
      if (e.reason.startsWith("shared")) this.blobsShared++;
      else this.blobsSkipped++;
    }
  }

  /** The report's fields. */
  report(): Record<string, unknown> {
    return { images: this.imagesDone, ...(this.plan ? { planned: this.plan } : {}), blobsPushed: this.blobsPushed, bytesPushed: this.bytesPushed, blobsShared: this.blobsShared, blobsSkipped: this.blobsSkipped };
  }

  /** Whether any image or blob got to the destination. */
  movedAnything(): boolean {
    return this.imagesDone.length > 0 || this.blobsPushed > 0;
  }

  /** One line: how far the import got. */
  failedSummary(ms: number): string {
    const what = this.plan
      ? `${this.imagesDone.length} of ${this.plan.images} image(s) done, ${this.blobsPushed} of ${this.plan.blobs} blob(s) pushed (${formatBytes(this.bytesPushed)} of ${formatBytes(this.plan.bytes)}), ${this.blobsSkipped} already present`
      : "0 image(s) done, no blob pushed (it failed while checking the bundle)";
    return `Import failed after ${seconds(ms)}: ${what}`;
  }
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

/** Checks the repository prefix of `--to REGISTRY[/PREFIX]` by itself, so that an error names it and nothing else. */
function checkPrefix(to: string, target: string): void {
  const slash = target.indexOf("/");
  if (slash < 0) return;
  const prefix = target.slice(slash + 1).replace(/\/+$/, "");
  if (isValidRepositoryPath(prefix)) return;
  const lower = prefix.toLowerCase();
  const bad = prefix.split("/").find((c) => !isValidRepositoryPath(c)) ?? prefix;
  const why = isValidRepositoryPath(lower) ? `must be lowercase (use ${JSON.stringify(`${target.slice(0, slash)}/${lower}`)})` : `has the invalid part ${JSON.stringify(bad)}: use lowercase letters and digits, separated by . _ or -`;
  throw new UsageError(`--to ${to}: the repository prefix ${JSON.stringify(prefix)} ${why}`);
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
  checkPrefix(to, target);
  destinationName("example/check:1", naming, target); // validates the rest of --to once
  return (name) => parseImageName(`docker://${destinationName(name, naming, target).toString()}`);
}
