/**
 * The import journal: where the chunked uploads of a running `importBundle` stand (upload URL and
 * the offset the registry confirmed), so that a killed import, run again, continues a half-pushed
 * blob instead of sending it again. Blobs that were finished need no journal: the destination
 * has them, and import skips them.
 *
 * The journal lives in the user's state directory (`$XDG_STATE_HOME/airlock/imports/`, default
 * `~/.local/state/airlock/imports/`), one file per bundle path, readable by the user only (an
 * upload URL lets its holder write to that upload). It is removed when the import succeeds.
 */
import { createHash } from "node:crypto";
import { readFileSync, promises as fs } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { UploadSession, UploadSessionStore } from "../transports/types.js";

/** What the import journal file holds. */
export interface ImportJournalData {
  version: 1;
  /** The bundle path, as resolved. */
  bundle: string;
  /** Upload sessions by `DESTINATION@DIGEST`. */
  uploads: Record<string, UploadSession>;
}

/** The default import journal of the bundle at `bundlePath`. */
export function importJournalPath(bundlePath: string): string {
  const base = process.env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  const id = createHash("sha256").update(resolve(bundlePath)).digest("hex").slice(0, 16);
  return join(base, "airlock", "imports", `${id}.json`);
}

/** An import journal file; {@link store} gives one blob's {@link UploadSessionStore}. */
export class ImportJournal {
  /** The journal file. */
  readonly path: string;
  private readonly data: ImportJournalData;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;

  private constructor(path: string, data: ImportJournalData) {
    this.path = path;
    this.data = data;
  }

  /** Opens the journal at `path` for the bundle `bundle`; an unreadable or foreign file counts as empty. */
  static open(path: string, bundle: string): ImportJournal {
    const resolved = resolve(bundle);
    let data: ImportJournalData = { version: 1, bundle: resolved, uploads: {} };
    try {
      const read = JSON.parse(readFileSync(path, "utf8")) as ImportJournalData;
      if (read.version === 1 && read.bundle === resolved && read.uploads && typeof read.uploads === "object") data = read;
    } catch {
      // No journal: nothing to continue.
    }
    return new ImportJournal(path, data);
  }

  /** Sessions recorded (for messages and tests). */
  get size(): number {
    return Object.keys(this.data.uploads).length;
  }

  /** The session store of blob `digest` pushed to `destination`. */
  store(destination: string, digest: string): UploadSessionStore {
    const key = `${destination}@${digest}`;
    return {
      load: () => {
        const s = this.data.uploads[key];
        return s && typeof s.location === "string" && Number.isSafeInteger(s.offset) ? { ...s } : undefined;
      },
      save: (session) => {
        this.data.uploads[key] = { location: session.location, offset: session.offset };
        return this.write();
      },
      clear: () => {
        if (!(key in this.data.uploads)) return Promise.resolve();
        delete this.data.uploads[key];
        return this.write();
      },
    };
  }

  /** Writes the journal (after the write in flight); resolves when the current content is on disk. */
  private write(): Promise<void> {
    this.dirty = true;
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      try {
        await fs.mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
        const tmp = `${this.path}.tmp`;
        await fs.writeFile(tmp, JSON.stringify(this.data), { mode: 0o600 });
        await fs.rename(tmp, this.path);
      } catch {
        // A journal that cannot be written only costs a rerun its shortcut.
      }
    });
    return this.writing;
  }

  /** Deletes the journal file (the import finished). */
  async remove(): Promise<void> {
    await this.writing;
    await fs.rm(this.path, { force: true });
  }
}
