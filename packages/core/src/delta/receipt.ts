/**
 * Receipts: what the air-gapped side holds, written there (`airlock inventory`, `import
 * --receipt`) and carried back to the connected side, where `export --since` ships only what the
 * receipt does not list. A receipt is a JSON document of digests; it holds no credentials.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import { type Digest, isDigest } from "../digest.js";
import { AirlockError } from "../errors.js";
import type { Manifest } from "../manifest.js";
import { limiter } from "../progress.js";
import { RegistryClient } from "../registry/client.js";
import { registryContext } from "../registry/registries-conf.js";
import type { DockerContext } from "../transports/types.js";

/** Media type of a receipt file. */
export const RECEIPT_MEDIA_TYPE = "application/vnd.airlock.receipt.v1+json";

/** One repository of a receipt: its tags and the manifest digests they name. */
export interface ReceiptRepository {
  /** Repository path in the registry, e.g. `mirror/docker.io/library/busybox`. */
  name: string;
  /** Tag → digest of the top-level manifest. */
  tags: Record<string, Digest>;
}

/** A receipt: every repository under a registry prefix, every manifest and blob they reach. */
export interface Receipt {
  mediaType: typeof RECEIPT_MEDIA_TYPE;
  /** The registry host, e.g. `registry.airgap.local:5000`. */
  registry: string;
  /** The repository prefix inventoried ("" for the whole registry). */
  prefix: string;
  /** When the inventory was taken, RFC 3339. */
  created: string;
  repositories: ReceiptRepository[];
  /** Every manifest reachable from a tag (indexes and their children), sorted. */
  manifests: Digest[];
  /** Every config and layer those manifests list that the registry has (HEAD), sorted. */
  blobs: Digest[];
}

/** Options of {@link takeInventory}. */
export interface InventoryOptions {
  /** Registry settings (TLS, credentials). */
  docker?: DockerContext;
  /** Requests at once (default 8). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Called once per repository inventoried. */
  onRepository?: (name: string, tags: number) => void;
}

/** Splits `REGISTRY[/PREFIX]` (an optional `docker://` in front) into host and prefix. */
export function splitRegistryTarget(target: string): { registry: string; prefix: string } {
  const t = target.replace(/^docker:\/\//, "").replace(/\/+$/, "");
  const slash = t.indexOf("/");
  const registry = slash < 0 ? t : t.slice(0, slash);
  if (!registry) throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid registry ${JSON.stringify(target)}: expected REGISTRY[/PREFIX], e.g. registry.local:5000/mirror`);
  return { registry, prefix: slash < 0 ? "" : t.slice(slash + 1) };
}

/**
 * Takes the inventory of `target` (`REGISTRY[/PREFIX]`): lists the repositories under the prefix
 * (`/v2/_catalog`), their tags, reads every manifest those tags reach (an index's children too),
 * and HEADs every blob the image manifests list (in the repository that lists it), keeping those
 * the registry has. Returns the receipt.
 */
export async function takeInventory(target: string, options: InventoryOptions = {}): Promise<Receipt> {
  const { registry, prefix } = splitRegistryTarget(target);
  const { signal } = options;
  // registries.conf: a blocked registry is refused, an insecure one read without TLS verification.
  const client = new RegistryClient(registry, await registryContext(prefix ? `${registry}/${prefix}` : registry, options.docker ?? {}));
  const run = limiter(Math.max(1, options.concurrency ?? 8));
  const manifests = new Set<Digest>();
  const blobs = new Set<Digest>();
  const repositories: ReceiptRepository[] = [];
  try {
    const all = await client.catalog(signal ? { signal } : {});
    const names = all.filter((n) => prefix === "" || n === prefix || n.startsWith(`${prefix}/`)).sort();
    await Promise.all(
      names.map((name) =>
        run(async () => {
          const repo = client.repository(name);
          let tags: string[];
          try {
            tags = await repo.listTags(signal ? { signal } : {});
          } catch (err) {
            // A repository whose tags were all deleted lists no tags (or 404s): it holds nothing to pull.
            if ((err as AirlockError)?.code === "ERR_IMAGE_NOT_FOUND") tags = [];
            else throw err;
          }
          const entry: ReceiptRepository = { name, tags: {} };
          const seen = new Map<Digest, Manifest>();
          const visit = async (ref: string): Promise<Manifest> => {
            const m = await repo.getParsedManifest(ref, signal);
            if (seen.has(m.digest)) return m;
            seen.set(m.digest, m);
            manifests.add(m.digest);
            if (m.isIndex) {
              for (const child of m.index.manifests) if (!seen.has(child.digest)) await visit(child.digest);
            }
            return m;
          };
          for (const tag of [...tags].sort()) entry.tags[tag] = (await visit(tag)).digest;
          const listed = new Set<Digest>();
          for (const m of seen.values()) if (!m.isIndex) for (const b of m.blobs()) listed.add(b.digest);
          await Promise.all(
            [...listed].map(async (d) => {
              if (blobs.has(d)) return;
              if ((await repo.headBlob(d, signal)) !== undefined) blobs.add(d);
            }),
          );
          repositories.push(entry);
          options.onRepository?.(name, tags.length);
        }),
      ),
    );
  } finally {
    await client.close();
  }
  repositories.sort((a, b) => a.name.localeCompare(b.name));
  return {
    mediaType: RECEIPT_MEDIA_TYPE,
    registry,
    prefix,
    created: new Date().toISOString(),
    repositories,
    manifests: [...manifests].sort(),
    blobs: [...blobs].sort(),
  };
}

/** Writes `receipt` as JSON to `path`. */
export async function writeReceipt(path: string, receipt: Receipt): Promise<void> {
  await fs.writeFile(path, `${JSON.stringify(receipt, null, 2)}\n`);
}

/** Parses and checks a receipt document; `what` names it in errors. */
export function parseReceipt(text: string, what: string): Receipt {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `${what} is not a receipt: ${(err as Error).message}`, { cause: err });
  }
  const r = doc as Partial<Receipt>;
  if (r?.mediaType !== RECEIPT_MEDIA_TYPE || !Array.isArray(r.blobs) || !Array.isArray(r.manifests)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `${what} is not a receipt (expected mediaType ${RECEIPT_MEDIA_TYPE} with manifests and blobs); write one with airlock inventory`);
  }
  for (const d of [...r.blobs, ...r.manifests]) {
    if (typeof d !== "string" || !isDigest(d)) throw new AirlockError("ERR_INVALID_ARGUMENT", `${what} lists ${JSON.stringify(d)}, which is not a digest`);
  }
  return r as Receipt;
}

/**
 * What the other side holds, as an export sees it: manifests and blobs it need not ship. `source`
 * names where the set came from (a receipt, a lock, an old bundle) for bundle.json and messages.
 */
export interface DeltaBase {
  source: string;
  manifests: ReadonlySet<string>;
  blobs: ReadonlySet<string>;
}

/**
 * The identity of a set of base blobs: sha256 over the sorted digests, one per line (each line
 * ending in `\n`). Recorded in a delta bundle with the count, so two parties can compare bases.
 */
export function baseSetDigest(digests: Iterable<string>): Digest {
  const h = createHash("sha256");
  for (const d of [...new Set(digests)].sort()) h.update(`${d}\n`);
  return `sha256:${h.digest("hex")}` as Digest;
}
