/**
 * `airlock sync --src docker|dir|oci|yaml --dest docker|dir|oci SOURCE DESTINATION`: skopeo sync's
 * interface and naming, with images copied in parallel, images already at the destination skipped
 * without moving a blob, tag filters and platform lists on the command line, per-repository
 * destinations in the YAML, and `dir:`/`oci:` destinations updated in place.
 */
import { writeFile } from "node:fs/promises";
import {
  AirlockError,
  dirSyncImages,
  DockerImageReference,
  dockerSyncImages,
  formatPlatform,
  type MultiArch,
  ociSyncImages,
  type Platform,
  parsePlatform,
  planSync,
  repositorySyncImages,
  runScheduled,
  runSync,
  type SyncDestinationTransport,
  type SyncEvent,
  type SyncImage,
  type SyncImageResult,
  type SyncOptions,
  type RegistryHints,
  type SystemContext,
} from "@airlock/core";
import { type Command, Option } from "commander";
import { regexProblem, selectTags } from "../config/tags.js";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { addDockerFlags, addRetryFlags, addSkopeoCopyFlags, parseCount, platformFrom, systemContextFrom } from "../flags.js";
import { withFlagHints } from "../registry-hints.js";
import { addThrottleFlags, withThrottle } from "../throttle-flags.js";
import { formatBytes } from "../progress.js";
import { configuredLookasideStaging, loadRegistriesD, loadTrustPolicy, lookasideForReading, policyChecker } from "../signing/index.js";
import { loadSyncYaml, registryContext, selectForEntry, type SyncYamlRegistry } from "../sync-yaml.js";

const SOURCES = ["docker", "dir", "oci", "yaml"] as const;
const DESTINATIONS = ["docker", "dir", "oci"] as const;

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
const positive = (flag: string) => (v: string) => {
  const n = parseCount(v, flag);
  if (n < 1) throw new UsageError(`${flag} takes a number of at least 1, got ${JSON.stringify(v)}`);
  return n;
};

/** Registers the `sync` verb. */
export function registerSync(program: Command, cli: CliContext): void {
  const cmd = program
    .command("sync")
    .description("Synchronize images between registry repositories, directories and OCI layouts")
    .argument("<source>", "a repository or image (--src docker), a directory of dir: images (--src dir), an OCI layout (--src oci) or a sync YAML file (--src yaml)")
    .argument("<destination>", "a registry with an optional path (--dest docker), a directory (--dest dir) or an OCI layout (--dest oci)")
    .option("-s, --src <transport>", `SOURCE transport: ${SOURCES.join(", ")}`)
    .option("-d, --dest <transport>", `DESTINATION transport: ${DESTINATIONS.join(", ")}`)
    .option("--authfile <path>", "auth file for both sides (default: $REGISTRY_AUTH_FILE, then containers' and Docker's auth files)")
    .option("--scoped", "keep the full source path (registry and namespace) in destination names")
    .option("--append-suffix <suffix>", "append SUFFIX to every destination name (after the tag)")
    .option("-a, --all", "copy whole multi-arch indexes (default: the image for this platform)")
    .option("--platform <os/arch[/variant]>", "copy this platform from indexes; repeat for several (then whole indexes are copied)", collect)
    .option("--include <regex>", "sync only tags matching REGEX (repeatable: any may match; unanchored)", collect)
    .option("--exclude <regex>", "do not sync tags matching REGEX (repeatable)", collect)
    .option("--preserve-digests", "fail instead of changing any digest")
    .option("--keep-going", "do not stop at a failed image; report every failure and exit non-zero at the end")
    .option("--dry-run", "say what would be copied and what is already present; write nothing")
    .option("--digestfile <path>", "write `DIGEST TRANSPORT:DESTINATION` for every image synced (copied or already present)")
    .option("--parallel <n>", "images copied at once (default 4)", positive("--parallel"))
    .option("--max-per-registry <n>", "images copied at once against any one registry, source or destination (default: --parallel)", positive("--max-per-registry"))
    .option("--image-parallel-copies <n>", "blobs copied at once within one image (default 6)", positive("--image-parallel-copies"))
    .option("--remove-signatures", "do not copy the sources' signatures (they are still checked against the trust policy)")
    .addOption(new Option("-f, --format <format>", "write manifests in this format: oci or v2s2 (Docker v2 schema 2); a converted image gets a new digest").choices(["oci", "v2s2"]))
    .option("--sign-passphrase-file <file>", "skopeo's passphrase for --sign-by; airlock sync does not sign (sign with airlock copy --sign-by-key FILE)")
    .option("-q, --quiet", "print nothing but errors")
    .option("--json", "print progress and results as NDJSON events on stderr");
  addDockerFlags(cmd, "src-");
  addDockerFlags(cmd, "dest-");
  addSkopeoCopyFlags(cmd, (m) => cli.stderr.write(`warning: ${m}\n`));
  addRetryFlags(cmd);
  addThrottleFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Destination names are skopeo's: DESTINATION/NAME followed by --append-suffix, where NAME is the last element of
the source (busybox:1.0), or with --scoped its whole path (registry.example.com/ns/busybox:1.0).
With --dest oci, DESTINATION is one OCI layout and NAME is each image's name in it.

An image whose manifest is already under its destination name is skipped ("skipped: already
present") after a HEAD of each side; nothing else is read. Existing dir: and oci: destinations are
updated in place.

Examples:
  airlock sync --src docker --dest docker --include '^1\\.' quay.io/org/app registry.lan:5000/mirror
  airlock sync --src yaml --dest dir --parallel 8 sync.yaml /media/usb/images
  airlock sync --src docker --dest oci --platform linux/arm64 docker.io/library/alpine ./layout`,
  );
  cmd.action(async (source: string, destination: string, opts: Record<string, unknown>) => {
    await runSyncCommand(cli, source, destination, opts);
  });
}

interface Enumerated {
  images: SyncImage[];
  /** Enumeration units that yielded images (skopeo's "sources"). */
  sources: number;
  /** Repositories that could not be listed (only with --keep-going). */
  failures: { what: string; error: Error }[];
}

async function runSyncCommand(cli: CliContext, source: string, destination: string, opts: Record<string, unknown>): Promise<void> {
  const globals = cli.globals() as Record<string, unknown>;
  const srcKind = opts.src as string | undefined;
  const dstKind = opts.dest as string | undefined;
  if (!srcKind) throw new UsageError("A source transport must be specified: --src docker, dir, oci or yaml");
  if (!(SOURCES as readonly string[]).includes(srcKind)) throw new UsageError(`${JSON.stringify(srcKind)} is not a valid source transport: use ${SOURCES.join(", ")}`);
  if (!dstKind) throw new UsageError("A destination transport must be specified: --dest docker, dir or oci");
  if (!(DESTINATIONS as readonly string[]).includes(dstKind)) throw new UsageError(`${JSON.stringify(dstKind)} is not a valid destination transport: use ${DESTINATIONS.join(", ")}`);

  const include = (opts.include as string[] | undefined) ?? [];
  const exclude = (opts.exclude as string[] | undefined) ?? [];
  for (const [flag, list] of [["--include", include], ["--exclude", exclude]] as const) {
    for (const re of list) {
      const problem = regexProblem(re);
      if (problem) throw new UsageError(`${flag} ${JSON.stringify(re)} is not a valid regular expression: ${problem}`);
    }
  }
  const filtering = include.length > 0 || exclude.length > 0;
  if (filtering && (srcKind === "dir" || srcKind === "oci")) throw new UsageError(`--include and --exclude filter registry tags; they do not apply to --src ${srcKind}`);
  const cliSelect = (tags: string[]): string[] => (filtering ? selectTags(tags, { ...(include.length ? { include } : {}), ...(exclude.length ? { exclude } : {}) }) : tags);

  let platforms: Platform[];
  try {
    platforms = ((opts.platform as string[] | undefined) ?? []).map(parsePlatform);
  } catch (err) {
    throw new UsageError(`--platform: ${(err as Error).message}`);
  }
  if (opts.all && platforms.length > 0) throw new UsageError("--all and --platform cannot be used together: --all copies every platform");
  let multiArch: Extract<MultiArch, "system" | "all"> = opts.all ? "all" : "system";
  let platform: Partial<Platform> | undefined = platformFrom(globals);
  if (platforms.length === 1) platform = platforms[0];
  else if (platforms.length > 1) {
    multiArch = "all";
    platform = undefined;
  }

  const srcCtx = withFlagHints(systemContextFrom(opts, "src-", globals), opts, "src-");
  const dstCtx = withFlagHints(systemContextFrom(opts, "dest-", globals), opts, "dest-");
  const keepGoing = opts.keepGoing === true;
  const parallel = (opts.parallel as number | undefined) ?? 4;
  const maxPerRegistry = opts.maxPerRegistry as number | undefined;
  const out = new SyncOutput(cli, opts.json === true, opts.quiet === true);
  const progress = cli.progress({ json: opts.json as boolean, quiet: opts.quiet as boolean });
  const dryRun = opts.dryRun === true;
  const results: SyncImageResult[] = [];
  try {
    // As in copy: the trust policy is checked before any blob of a copied image is read.
    const trust = await loadTrustPolicy({ policy: globals.policy as string | undefined, insecurePolicy: globals.insecurePolicy === true, requireSigned: globals.requireSigned === true });
    if (dryRun) out.line("Running in dry-run mode: nothing will be written");
    const found = await enumerate(srcKind as (typeof SOURCES)[number], source, { srcCtx, cliSelect, keepGoing, parallel, maxPerRegistry, out, signal: cli.signal });
    const tasks = planSync(found.images, {
      transport: dstKind as SyncDestinationTransport,
      destination,
      scoped: opts.scoped === true,
      ...(opts.appendSuffix ? { appendSuffix: opts.appendSuffix as string } : {}),
    });
    // As in copy: registry images read and write their signatures where registries.d says.
    if (tasks.some((t) => t.image.source instanceof DockerImageReference || t.destination instanceof DockerImageReference)) {
      const { config } = await loadRegistriesD(globals["registries.d"] as string | undefined);
      const ctx = contextCache();
      for (const t of tasks) {
        const src = t.image.source;
        if (src instanceof DockerImageReference) t.image.sourceContext = ctx(t.image.sourceContext, "lookaside", lookasideForReading(config, src.ref));
        if (t.destination instanceof DockerImageReference) {
          const staging = configuredLookasideStaging(config, t.destination.ref);
          if (staging !== undefined) t.destinationContext = ctx(dstCtx, "lookasideStaging", staging);
        }
      }
    }
    if (platforms.length > 1) out.line(`Platforms ${platforms.map(formatPlatform).join(", ")}: multi-arch images are copied whole (an index of only some platforms would have a new digest)`);
    const options: SyncOptions = {
      destinationContext: dstCtx,
      multiArch,
      ...(platform && Object.keys(platform).length > 0 ? { platform } : {}),
      ...(platforms.length > 1 ? { platforms } : {}),
      preserveDigests: opts.preserveDigests === true,
      dryRun,
      keepGoing,
      parallel,
      ...(maxPerRegistry === undefined ? {} : { maxPerRegistry }),
      retryTimes: (opts.retryTimes as number | undefined) ?? 0,
      ...(opts.retryDelay === undefined ? {} : { retryDelayMs: opts.retryDelay as number }),
      ...(opts.imageParallelCopies === undefined ? {} : { concurrency: opts.imageParallelCopies as number }),
      copyOptions: {
        removeSignatures: opts.removeSignatures === true,
        ...withThrottle(opts),
        ...(trust ? { checkPolicy: policyChecker(trust) } : {}),
        ...(opts.format === undefined ? {} : { convert: { format: opts.format as "oci" | "v2s2" } }),
      },
      signal: cli.signal,
      onProgress: progress.listener,
      onEvent: (e) => {
        if (e.type === "image-end") results.push(e.result);
        out.event(e);
      },
    };
    const started = Date.now();
    let failure: unknown;
    try {
      await runSync(tasks, options);
    } catch (err) {
      failure = err;
    }
    progress.stop();
    results.sort((a, b) => a.task.index - b.task.index);
    if (opts.digestfile && !dryRun) await writeDigestFile(opts.digestfile as string, results);
    if (failure !== undefined) throw failure;
    out.summary(results, found, Date.now() - started, dryRun);
    const failed = [...found.failures.map((f) => ({ what: f.what, error: f.error })), ...results.filter((r) => r.status === "failed").map((r) => ({ what: `${r.task.image.source} → ${r.task.destination}`, error: r.error as Error }))];
    if (failed.length > 0) {
      out.failures(failed);
      const first = failed[0]?.error;
      const code = first instanceof AirlockError ? first.code : "ERR_DESTINATION";
      throw new AirlockError(code, `Sync failed due to previous reported error(s) for ${failed.length} ${failed.length === 1 ? "image or repository" : "images or repositories"} (listed above)`);
    }
  } finally {
    progress.stop();
  }
}

/**
 * Derives contexts with one registry setting changed, one object per distinct (base, value): the
 * sync reuses a registry connection per context object, so equal settings must be one object.
 */
function contextCache(): (base: SystemContext | undefined, key: "lookaside" | "lookasideStaging", value: string) => SystemContext {
  const cache = new Map<SystemContext | undefined, Map<string, SystemContext>>();
  return (base, key, value) => {
    let m = cache.get(base);
    if (!m) {
      m = new Map();
      cache.set(base, m);
    }
    const id = `${key}\0${value}`;
    let ctx = m.get(id);
    if (!ctx) {
      ctx = { ...base, docker: { ...base?.docker, [key]: value } };
      m.set(id, ctx);
    }
    return ctx;
  };
}

/** `DIGEST TRANSPORT:DESTINATION` lines, in plan order, for every image now at its destination. */
async function writeDigestFile(path: string, results: readonly SyncImageResult[]): Promise<void> {
  const lines = results.filter((r) => (r.status === "copied" || r.status === "skipped") && r.digest).map((r) => `${r.digest} ${r.task.destination}\n`);
  try {
    await writeFile(path, lines.join(""));
  } catch (cause) {
    throw new AirlockError("ERR_IO", `Error creating digest file ${path}: ${(cause as Error).message}`, { cause });
  }
}

interface EnumerateOptions {
  srcCtx: SystemContext;
  cliSelect: (tags: string[]) => string[];
  keepGoing: boolean;
  parallel: number;
  maxPerRegistry: number | undefined;
  out: SyncOutput;
  signal: AbortSignal;
}

async function enumerate(kind: (typeof SOURCES)[number], source: string, o: EnumerateOptions): Promise<Enumerated> {
  switch (kind) {
    case "docker":
      return { images: await dockerSyncImages(source, { context: o.srcCtx, selectTags: o.cliSelect, signal: o.signal }), sources: 1, failures: [] };
    case "dir":
      return { images: await dirSyncImages(source), sources: 1, failures: [] };
    case "oci":
      return { images: await ociSyncImages(source), sources: 1, failures: [] };
    case "yaml":
      return enumerateYaml(source, o);
  }
}

async function enumerateYaml(file: string, o: EnumerateOptions): Promise<Enumerated> {
  const yaml = await loadSyncYaml(file);
  for (const w of yaml.warnings) o.out.warning(w);
  const entries = yaml.registries.flatMap((reg) => {
    const context = withYamlHints(registryContext(o.srcCtx, reg), reg, file);
    return reg.repositories.map((entry) => ({ entry, context }));
  });
  const lists: SyncImage[][] = entries.map(() => []);
  const failures: Enumerated["failures"] = [];
  await runScheduled(
    entries,
    async ({ entry, context }, i) => {
      try {
        lists[i] = await repositorySyncImages(entry.repository, {
          refs: entry.refs,
          selectTags: (tags) => o.cliSelect(selectForEntry(entry, tags)),
          context,
          ...(entry.destination ? { destination: entry.destination } : {}),
          signal: o.signal,
        });
        if (lists[i]?.length === 0) o.out.warning(`${entry.at}: No refs to sync found in ${entry.repository.name} (${entry.section})`);
      } catch (err) {
        const error = new AirlockError(err instanceof AirlockError ? err.code : "ERR_REGISTRY", `${entry.at}: cannot enumerate ${entry.repository.name}: ${(err as Error).message}`, { cause: err });
        if (!o.keepGoing) throw error;
        failures.push({ what: entry.repository.name, error });
        o.out.error(error.message);
      }
    },
    { parallel: o.parallel, ...(o.maxPerRegistry === undefined ? {} : { perKey: o.maxPerRegistry }), keysOf: ({ entry }) => [entry.repository.domain] },
  );
  const images = lists.flat();
  if (images.length === 0 && failures.length === 0) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `No images to sync found in ${JSON.stringify(file)}`);
  return { images, sources: lists.filter((l) => l.length > 0).length, failures };
}

/**
 * `ctx` with hints that name the sync YAML's settings of `reg` (`"REGISTRY".credentials`,
 * `.tls-verify`, `.cert-dir`), which take the place of the --src-* flags; where the YAML sets
 * nothing, either helps.
 */
function withYamlHints(ctx: SystemContext, reg: SyncYamlRegistry, file: string): SystemContext {
  const flags: RegistryHints = ctx.docker?.hints ?? {};
  const key = (name: string) => `${JSON.stringify(reg.name)}.${name} in ${file}`;
  const either = (flag: string | undefined, yaml: string) => (flag === undefined ? yaml : `${flag} or ${yaml}`);
  const hints: RegistryHints = {
    credentials: reg.credentials ? key("credentials") : either(flags.credentials, key("credentials: {username: USERNAME, password: PASSWORD}")),
    tlsVerify: reg.tlsVerify !== undefined ? key("tls-verify: false") : either(flags.tlsVerify, key("tls-verify: false")),
    certDir: reg.certDir !== undefined ? key("cert-dir") : either(flags.certDir, key("cert-dir: DIR")),
  };
  return { ...ctx, docker: { ...ctx.docker, hints } };
}

/** What `sync` prints on stderr: one line per image, warnings, the summary; NDJSON with --json. */
class SyncOutput {
  private readonly cli: CliContext;
  private readonly json: boolean;
  private readonly quiet: boolean;

  constructor(cli: CliContext, json: boolean, quiet: boolean) {
    this.cli = cli;
    this.json = json;
    this.quiet = quiet;
  }

  private write(obj: Record<string, unknown>, text: string, always = false): void {
    if (this.json) this.cli.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...obj })}\n`);
    else if (always || !this.quiet) this.cli.stderr.write(`${text}\n`);
  }

  line(text: string): void {
    this.write({ type: "sync-note", message: text }, text);
  }

  warning(message: string): void {
    this.write({ type: "warning", message }, `warning: ${message}`);
  }

  error(message: string): void {
    this.write({ type: "sync-error", message }, `error: ${message}`, true);
  }

  event(e: SyncEvent): void {
    if (e.type === "warning") {
      this.warning(e.message);
      return;
    }
    if (e.type === "image-start" || e.type === "image-copy") {
      const { task } = e;
      const obj = { type: `sync-${e.type}`, index: task.index + 1, total: e.total, source: String(task.image.source), destination: String(task.destination) };
      if (this.json) this.write(obj, "");
      else if (e.type === "image-copy") this.write(obj, `Copying image ref ${task.index + 1}/${e.total} from=${task.image.source} to=${task.destination}`);
      return;
    }
    const r = e.result;
    const n = `${r.task.index + 1}/${e.total}`;
    const from = String(r.task.image.source);
    const to = String(r.task.destination);
    const obj = { type: "sync-image", index: r.task.index + 1, total: e.total, source: from, destination: to, status: r.status, digest: r.digest, bytes: r.bytesCopied, blobs: r.blobsCopied };
    switch (r.status) {
      case "copied":
        this.write(obj, `Copied image ref ${n} to=${to}: ${r.digest} (${r.blobsCopied} blob(s), ${formatBytes(r.bytesCopied)} moved)`);
        break;
      case "skipped":
        this.write(obj, `Image ref ${n} from=${from} to=${to} skipped: already present (${r.digest})`);
        break;
      case "would-copy":
        this.write(obj, `Would have copied image ref ${n} from=${from} to=${to}`);
        break;
      case "would-skip":
        this.write(obj, `Would skip image ref ${n} from=${from} to=${to}: already present (${r.digest})`);
        break;
      case "failed":
        this.write({ ...obj, error: r.error?.message }, `Error copying ref ${from} to ${to}: ${r.error?.message}`, true);
        break;
    }
  }

  summary(results: readonly SyncImageResult[], found: Enumerated, ms: number, dryRun: boolean): void {
    const count = (...s: string[]) => results.filter((r) => s.includes(r.status)).length;
    const copied = count("copied", "would-copy");
    const skipped = count("skipped", "would-skip");
    const failed = count("failed") + found.failures.length;
    const bytes = results.reduce((a, r) => a + r.bytesCopied, 0);
    const images = results.length;
    const text = dryRun
      ? `Would have synced ${images} images from ${found.sources} sources: ${copied} to copy, ${skipped} skipped: already present, ${failed} failed`
      : `Synced ${images - count("failed")} images from ${found.sources} sources: ${copied} copied, ${skipped} skipped: already present, ${failed} failed; ${formatBytes(bytes)} moved in ${(ms / 1000).toFixed(1)}s`;
    this.write({ type: "sync-summary", dryRun, images, sources: found.sources, copied, skipped, failed, bytes, durationMs: ms }, text);
  }

  failures(list: readonly { what: string; error: Error }[]): void {
    const lines = [`${list.length} failure(s):`, ...list.map((f) => `  ${f.what}: ${f.error.message}`)];
    this.write({ type: "sync-failures", failures: list.map((f) => ({ what: f.what, error: f.error.message })) }, lines.join("\n"), true);
  }
}
