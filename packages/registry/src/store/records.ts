/**
 * airlock's repository records in an OCI layout directory: `repositories/<name>.json` (the name
 * percent-encoded, so `a/b` is `a%2Fb.json`), listing the manifests and blobs pushed to a
 * repository that its tags do not reach. Other tools ignore these files.
 *
 * Each file is changed under its own lock file and replaced atomically. Changes to one repository
 * that arrive while a write is in progress are applied together in the next write, so many
 * concurrent uploads cost few writes and lose nothing.
 */
import { promises as fs, statSync } from "node:fs";
import { join } from "node:path";
import { AirlockError, isNotFoundError, withFileLock, writeFileAtomic } from "@airlock/core";
import { isRepositoryName } from "../names.js";
import type { RepositoryRecord, RepositoryRecords } from "./repositories.js";

/** The directory of repository records, under the layout's root. */
export const RECORDS_DIR = "repositories";

interface Pending {
  change: (record: RepositoryRecord) => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Cached {
  key: string;
  record: RepositoryRecord | undefined;
}

/** The repository records of the layout at `root`, read and written. */
export class RepositoryRecordFiles implements RepositoryRecords {
  private readonly dir: string;
  private readonly cache = new Map<string, Cached>();
  private readonly queues = new Map<string, Pending[]>();

  constructor(root: string) {
    this.dir = join(root, RECORDS_DIR);
  }

  private pathOf(repository: string): string {
    if (!isRepositoryName(repository)) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid repository name ${JSON.stringify(repository)}`);
    }
    return join(this.dir, `${encodeURIComponent(repository)}.json`);
  }

  /** Names of the repositories that have a record. */
  async list(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await fs.readdir(this.dir);
    } catch (err) {
      if (isNotFoundError(err)) return [];
      throw err;
    }
    const names: string[] = [];
    for (const e of entries) {
      if (!e.endsWith(".json") || e.startsWith(".")) continue;
      let name: string;
      try {
        name = decodeURIComponent(e.slice(0, -".json".length));
      } catch {
        continue;
      }
      if (isRepositoryName(name)) names.push(name);
    }
    return names.sort();
  }

  /** The record of `repository`, or undefined when it has none. */
  async get(repository: string): Promise<RepositoryRecord | undefined> {
    const path = this.pathOf(repository);
    // A synchronous stat(2): cheaper than a thread-pool round trip, and asked on every request.
    const st = statSync(path, { bigint: true, throwIfNoEntry: false });
    if (!st) return undefined;
    const key = `${st.ino}:${st.size}:${st.mtimeNs}`;
    const cached = this.cache.get(repository);
    if (cached?.key === key) return cached.record;
    const record = await readRecord(path);
    this.cache.set(repository, { key, record });
    return record;
  }

  /**
   * Changes the record of `repository` (creating it): `change` mutates the current record, which
   * is then written. Resolves once the change is on disk.
   */
  update(repository: string, change: (record: RepositoryRecord) => void): Promise<void> {
    const path = this.pathOf(repository);
    return new Promise<void>((resolve, reject) => {
      let queue = this.queues.get(repository);
      const start = queue === undefined;
      if (!queue) {
        queue = [];
        this.queues.set(repository, queue);
      }
      queue.push({ change, resolve, reject });
      if (start) void this.drain(repository, path, queue);
    });
  }

  private async drain(repository: string, path: string, queue: Pending[]): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0);
      try {
        await fs.mkdir(this.dir, { recursive: true });
        await withFileLock(`${path}.lock`, async () => {
          const record = (await readRecord(path)) ?? { manifests: {}, blobs: new Set<string>() };
          for (const p of batch) p.change(record);
          const json = { name: repository, manifests: record.manifests, blobs: [...record.blobs].sort() };
          await writeFileAtomic(path, `${JSON.stringify(json)}\n`);
        });
        this.cache.delete(repository);
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.queues.delete(repository);
  }
}

async function readRecord(path: string): Promise<RepositoryRecord | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path, "utf8");
  } catch (err) {
    if (isNotFoundError(err)) return undefined;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_LAYOUT", `${path} is not valid JSON; remove it or restore it from a backup`, { cause });
  }
  const o = (typeof json === "object" && json !== null ? json : {}) as { manifests?: unknown; blobs?: unknown };
  const manifests: Record<string, string> = {};
  if (typeof o.manifests === "object" && o.manifests !== null) {
    for (const [d, mt] of Object.entries(o.manifests)) if (typeof mt === "string") manifests[d] = mt;
  }
  const blobs = new Set<string>(Array.isArray(o.blobs) ? o.blobs.filter((b): b is string => typeof b === "string") : []);
  return { manifests, blobs };
}
