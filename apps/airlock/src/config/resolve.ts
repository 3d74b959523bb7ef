/**
 * Resolution: from the entries of `images.yaml` to the concrete images to move. Tag filters are
 * expanded against the registry's tag list, every image gets its source reference, its name in
 * the bundle, its platforms and the settings (TLS, credentials) of its registry as a SystemContext.
 *
 * Nothing here fetches a manifest: digests are pinned by the lock (lock.ts). Credentials from
 * environment variables are read here, at resolve time, and only kept in the SystemContext.
 */
import { AirlockError, type DockerReference, type ImageReference, isAirlockError, parseImageName, type RegistryHints, type SystemContext, formatPlatform } from "@airlock/core";
import type { ImageEntry, ImagesConfig, PlatformSelection, RegistryImageEntry, RegistrySettings } from "./images.js";
import { splitBundleName } from "./naming.js";
import { selectTags } from "./tags.js";

/** One concrete image to move: where it comes from, what it is called, which platforms. */
export interface PlannedImage {
  /** The name in the bundle (`org.opencontainers.image.ref.name`): the fully-qualified reference, or the `as:` name. */
  bundleName: string;
  /** The source to read from: `docker://…` with a tag or digest for registry images, else the transport reference. */
  source: ImageReference;
  /** The source as the lock records it: `docker://FULL-REFERENCE`, or the other transport's reference as written in images.yaml. */
  sourceName: string;
  /** For registry images: the reference read (with the selected tag, or the digest). */
  dockerReference?: DockerReference;
  /** The platforms to carry. */
  platforms: PlatformSelection;
  /** With a platform list on an index: keep the whole original index (true) or write a smaller one (false). */
  keepIndex: boolean;
  /** The settings to read the source with (registry TLS and credentials). May hold credentials: never print it. */
  systemContext: SystemContext;
  /** `FILE:LINE:COL` of the images.yaml entry this image comes from. */
  origin: string;
}

/** What resolution needs from the outside world. */
export interface ResolveDeps {
  /** Lists the tags of a repository (called once per repository that has a tag filter). */
  listTags(repository: DockerReference, systemContext: SystemContext): Promise<string[]>;
  /** The environment credentials are read from (default: process.env). */
  env?: Readonly<Record<string, string | undefined>>;
}

/** An entry that could not be resolved, and why. */
export interface ResolveFailure {
  entry: ImageEntry;
  error: AirlockError;
}

/** Options of {@link resolveImages}. */
export interface ResolveOptions {
  /** How many tag lists are fetched at once (default 8). */
  concurrency?: number;
  /**
   * Called for each entry that fails; resolution then goes on with the others (`--keep-going`).
   * Without it, resolveImages throws after trying every entry (see {@link resolveImages}).
   */
  onError?(failure: ResolveFailure): void;
}

const q = (s: string): string => JSON.stringify(s);

/**
 * Expands the entries of `config` into concrete images, in file order (tags in the order the
 * registry lists them). Tag filters call `deps.listTags` once per repository. Two entries giving the
 * same bundle name are merged when they mean exactly the same thing, an error otherwise; so are two
 * names that `strip-registry` would make equal at the destination.
 *
 * Failures (an unset environment variable, a filter matching no tag, a tag list that cannot be
 * read) name the entry's `FILE:LINE:COL`. Without `options.onError`, every entry is tried and then
 * the failure is thrown: the error itself when there is one, else an AirlockError with the first
 * one's code listing them all.
 */
export async function resolveImages(config: ImagesConfig, deps: ResolveDeps, options: ResolveOptions = {}): Promise<PlannedImage[]> {
  const env = deps.env ?? process.env;
  const limit = limiter(options.concurrency ?? 8);
  const tagLists = new Map<string, Promise<string[]>>();
  const listTags = (repo: DockerReference, ctx: SystemContext): Promise<string[]> => {
    let p = tagLists.get(repo.name);
    if (p === undefined) {
      p = limit(() => deps.listTags(repo, ctx));
      tagLists.set(repo.name, p);
    }
    return p;
  };

  const settled = await Promise.allSettled(config.images.map((entry) => resolveEntry(config, entry, env, listTags)));
  const failures: ResolveFailure[] = [];
  const planned: PlannedImage[] = [];
  const byName = new Map<string, PlannedImage>();
  const byDestination = new Map<string, PlannedImage>();
  settled.forEach((r, i) => {
    const entry = config.images[i] as ImageEntry;
    if (r.status === "rejected") {
      failures.push({ entry, error: withOrigin(r.reason, entry) });
      return;
    }
    for (const image of r.value) {
      const same = byName.get(image.bundleName);
      if (same !== undefined) {
        if (!sameMeaning(same, image)) {
          failures.push({
            entry,
            error: new AirlockError("ERR_INVALID_ARGUMENT", `${entry.at}: ${q(image.bundleName)} is also selected at ${same.origin} with a different source, platforms or keepIndex; give one of them another name with as:`),
          });
        }
        continue;
      }
      const dest = config.destination.naming === "strip-registry" ? splitBundleName(image.bundleName).rest : image.bundleName;
      const clash = byDestination.get(dest);
      if (clash !== undefined) {
        failures.push({
          entry,
          error: new AirlockError(
            "ERR_INVALID_ARGUMENT",
            `${entry.at}: ${q(image.bundleName)} and ${q(clash.bundleName)} (${clash.origin}) both become ${q(dest)} at the destination with naming: strip-registry; rename one with as:, or use naming: keep-path`,
          ),
        });
        continue;
      }
      byName.set(image.bundleName, image);
      byDestination.set(dest, image);
      planned.push(image);
    }
  });
  if (failures.length > 0) {
    if (options.onError !== undefined) {
      for (const f of failures) options.onError(f);
    } else {
      const first = failures[0] as ResolveFailure;
      if (failures.length === 1) throw first.error;
      throw new AirlockError(first.error.code, [`${failures.length} images could not be resolved:`, ...failures.map((f) => f.error.message)].join("\n"), {
        cause: first.error,
      });
    }
  }
  return planned;
}

async function resolveEntry(
  config: ImagesConfig,
  entry: ImageEntry,
  env: Readonly<Record<string, string | undefined>>,
  listTags: (repo: DockerReference, ctx: SystemContext) => Promise<string[]>,
): Promise<PlannedImage[]> {
  const base = { platforms: entry.platforms, keepIndex: entry.keepIndex, origin: entry.at };
  if (entry.kind === "transport") {
    const bundleName = `${entry.as.repository}:${entry.as.tag}`;
    return [{ ...base, bundleName, source: parseImageName(entry.source), sourceName: entry.sourceAsWritten, systemContext: {} }];
  }
  const systemContext = systemContextFor(config, entry, env);
  const refs = await selectedReferences(entry, systemContext, listTags);
  return refs.map((ref) => {
    const sourceName = `docker://${ref}`;
    return { ...base, bundleName: bundleNameOf(entry, ref), source: parseImageName(sourceName), sourceName, dockerReference: ref, systemContext };
  });
}

async function selectedReferences(
  entry: RegistryImageEntry,
  ctx: SystemContext,
  listTags: (repo: DockerReference, ctx: SystemContext) => Promise<string[]>,
): Promise<DockerReference[]> {
  const sel = entry.selection;
  if (sel.kind === "digest") return [entry.repository.withDigest(sel.digest)];
  if (sel.kind === "tags") return sel.tags.map((t) => entry.repository.withTag(t));
  let all: string[];
  try {
    all = await listTags(entry.repository, ctx);
  } catch (err) {
    const code = isAirlockError(err) ? err.code : "ERR_REGISTRY";
    throw new AirlockError(code, `cannot list the tags of ${entry.repository.name}: ${(err as Error).message}`, {
      cause: err,
      retryable: isAirlockError(err) && err.retryable,
    });
  }
  const tags = selectTags(all, sel.filter);
  if (tags.length === 0) {
    const sample = all.slice(0, 8).map(q).join(", ");
    throw new AirlockError(
      "ERR_IMAGE_NOT_FOUND",
      `the tag filter ${JSON.stringify(sel.filter)} matched none of the ${all.length} tags of ${entry.repository.name}${all.length > 0 ? ` (${sample}${all.length > 8 ? ", …" : ""})` : ""}; check the filter with \`airlock list-tags docker://${entry.repository.name}\``,
    );
  }
  return tags.map((t) => entry.repository.withTag(t));
}

/** The bundle name of a registry image: the fully-qualified reference, or the `as:` name with the tag (or digest) it keeps. */
function bundleNameOf(entry: RegistryImageEntry, ref: DockerReference): string {
  if (entry.as === undefined) return ref.toString();
  if (entry.as.tag !== undefined) return `${entry.as.repository}:${entry.as.tag}`;
  return ref.tag !== undefined ? `${entry.as.repository}:${ref.tag}` : `${entry.as.repository}@${ref.digest}`;
}

/**
 * The SystemContext for reading a registry image: TLS and credentials of its registry's settings
 * (`registries:` in images.yaml), credentials from environment variables read now. Throws
 * ERR_INVALID_ARGUMENT naming the variable and the image when a variable is not set.
 */
export function systemContextFor(config: ImagesConfig, entry: RegistryImageEntry, env: Readonly<Record<string, string | undefined>> = process.env): SystemContext {
  const settings = config.registries.get(entry.repository.domain);
  const hints = registryHints(config, entry.repository.domain, settings);
  if (settings === undefined) return { docker: { hints } };
  const docker: NonNullable<SystemContext["docker"]> = { hints };
  if (settings.tlsVerify !== undefined) docker.tlsVerify = settings.tlsVerify;
  if (settings.certDir !== undefined) docker.certDir = settings.certDir;
  const creds = settings.credentials;
  if (creds?.kind === "none") docker.noCreds = true;
  else if (creds?.kind === "authFile") docker.authFile = creds.path;
  else if (creds?.kind === "env") {
    const missing = [creds.usernameVar, creds.passwordVar].filter((v) => (env[v] ?? "") === "");
    if (missing.length > 0) {
      throw new AirlockError(
        "ERR_INVALID_ARGUMENT",
        `${entry.at}: ${entry.repository.name} needs the environment variable${missing.length > 1 ? "s" : ""} ${missing.join(" and ")} (credentials of ${settings.host}, set at ${settings.at}), which ${missing.length > 1 ? "are" : "is"} not set; export ${missing.length > 1 ? "them" : "it"} before running airlock`,
      );
    }
    docker.credentials = { username: env[creds.usernameVar] as string, password: env[creds.passwordVar] as string };
  }
  return { docker };
}

/**
 * What error messages name for a registry's credentials and TLS settings: its keys in images.yaml
 * (`registries."HOST".credentials`, `.tlsVerify`, `.certDir`), where they are when set, and for
 * credentials from the environment the names of the variables (never their values). One value per
 * registry, so that its images share one registry client.
 */
export function registryHints(config: ImagesConfig, host: string, settings: RegistrySettings | undefined): RegistryHints {
  const key = `registries.${q(host)}`;
  const where = settings === undefined ? `in ${config.file}` : `at ${settings.at}`;
  const creds = settings?.credentials;
  const now =
    creds?.kind === "env"
      ? `the environment variables ${creds.usernameVar} and ${creds.passwordVar}`
      : creds?.kind === "authFile"
        ? `the auth file ${creds.path}`
        : creds?.kind === "none"
          ? "now none: true"
          : "env: {username: VAR, password: VAR} or authFile: PATH";
  return { credentials: `${key}.credentials ${where} (${now})`, tlsVerify: `${key}.tlsVerify: false ${where}`, certDir: `${key}.certDir ${where}` };
}

function sameMeaning(a: PlannedImage, b: PlannedImage): boolean {
  const plats = (p: PlatformSelection) => (p === "all" ? "all" : p.map(formatPlatform).sort().join(","));
  return a.sourceName === b.sourceName && plats(a.platforms) === plats(b.platforms) && a.keepIndex === b.keepIndex;
}

/** Prefixes a failure with the entry's position (once), keeping its code. */
function withOrigin(err: unknown, entry: ImageEntry): AirlockError {
  const message = (err as Error)?.message ?? String(err);
  if (isAirlockError(err) && message.startsWith(`${entry.at}:`)) return err;
  const what = entry.kind === "registry" ? entry.repository.name : entry.sourceAsWritten;
  const text = message.includes(what) ? `${entry.at}: ${message}` : `${entry.at}: ${what}: ${message}`;
  return new AirlockError(isAirlockError(err) ? err.code : "ERR_INVALID_ARGUMENT", text, { cause: err, retryable: isAirlockError(err) && err.retryable });
}

/** Runs at most `n` of the given tasks at once. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const queue: (() => void)[] = [];
  const next = () => {
    running--;
    queue.shift()?.();
  };
  return <T>(task: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      const run = () => {
        running++;
        task().then(resolve, reject).finally(next);
      };
      if (running < Math.max(1, n)) run();
      else queue.push(run);
    });
}
