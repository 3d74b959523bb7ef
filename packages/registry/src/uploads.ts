/**
 * Blob upload sessions (distribution spec "Pushing blobs"): each session is a file in this
 * server's own directory under the store's upload directory, appended to chunk by chunk and hashed
 * on the way. A finished upload is checked against the client's digest before the store may make
 * it a blob; nothing of an unfinished or failed upload is ever visible.
 *
 * Sessions live in memory: a restarted server has none, and the files of servers that are gone
 * (their pid is in the directory name) are removed when the next one starts.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-blobs
 */
import { createHash, type Hash, randomBytes, randomUUID } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { type Digest, digestAlgorithm } from "@airlock/core";
import { RegistryError } from "./errors.js";

/** Bytes gathered before one writev(2). */
const WRITE_BATCH = 1 << 20;
/** Chunks gathered before one writev(2), well under IOV_MAX (1024 on Linux). */
const MAX_IOVECS = 256;

/** An upload session: a repository, a file and how many bytes it holds. */
export interface UploadSession {
  /** The session id (a UUID), as in the `Location` and `Docker-Upload-UUID` headers. */
  readonly id: string;
  /** The repository the blob is pushed to. */
  readonly repository: string;
  /** The upload file. */
  readonly path: string;
  /** Bytes received so far. */
  size: number;
  /** sha256 of the bytes received so far; undefined once a chunk failed (then the file is re-hashed). */
  hash: Hash | undefined;
  /** Whether a request is writing to the session right now. */
  busy: boolean;
  /** When the session was last used (ms since the epoch). */
  touched: number;
}

/** Options of {@link Uploads.open}. */
export interface UploadsOptions {
  /** Sessions idle for longer are dropped (default 1 hour). */
  idleTimeoutMs?: number;
}

/** The upload sessions of one server. */
export class Uploads {
  private readonly dir: string;
  private readonly sessions = new Map<string, UploadSession>();
  private readonly idleTimeoutMs: number;

  private constructor(dir: string, idleTimeoutMs: number) {
    this.dir = dir;
    this.idleTimeoutMs = idleTimeoutMs;
  }

  /**
   * Prepares this server's upload directory under `root` (the store's upload directory), first
   * removing the directories left by servers that are no longer running.
   */
  static async open(root: string, options: UploadsOptions = {}): Promise<Uploads> {
    await fs.mkdir(root, { recursive: true });
    for (const entry of await fs.readdir(root)) {
      const pid = Number.parseInt(entry, 10);
      if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || isAlive(pid))) continue;
      await fs.rm(join(root, entry), { recursive: true, force: true });
    }
    const dir = join(root, `${process.pid}.${randomBytes(4).toString("hex")}`);
    await fs.mkdir(dir);
    return new Uploads(dir, options.idleTimeoutMs ?? 60 * 60 * 1000);
  }

  /** Starts a session for `repository` (an empty file). */
  async create(repository: string): Promise<UploadSession> {
    this.expire();
    const id = randomUUID();
    const path = join(this.dir, id);
    await fs.writeFile(path, "", { flag: "wx" });
    const session: UploadSession = { id, repository, path, size: 0, hash: createHash("sha256"), busy: false, touched: Date.now() };
    this.sessions.set(id, session);
    return session;
  }

  /** The session `id` of `repository`; BLOB_UPLOAD_UNKNOWN (404) when there is none. */
  get(repository: string, id: string): UploadSession {
    const s = this.sessions.get(id);
    if (!s || s.repository !== repository) {
      throw new RegistryError(404, "BLOB_UPLOAD_UNKNOWN", `no upload ${id} for repository ${repository}: it finished, was cancelled or expired; start a new upload`);
    }
    s.touched = Date.now();
    return s;
  }

  /**
   * Appends `body` to the session's file. When the body fails part-way (the client went away),
   * the file is cut back to where it was, so the session can go on from its last good offset.
   * `length`, when given, is the exact number of bytes the body must hold (SIZE_INVALID otherwise,
   * and nothing of the body is kept).
   */
  async append(session: UploadSession, body: Readable, length?: number): Promise<void> {
    if (session.busy) {
      body.resume();
      throw new RegistryError(416, "BLOB_UPLOAD_INVALID", `upload ${session.id} is already receiving a chunk; send chunks one after another`);
    }
    session.busy = true;
    const start = session.size;
    const fh = await fs.open(session.path, "r+");
    let written = 0;
    try {
      let batch: Buffer[] = [];
      let n = 0;
      const flush = async () => {
        // One writev(2) of the gathered chunks: no copy into a bigger buffer (a fresh megabyte per
        // batch costs more in page faults and garbage collection than the write itself).
        const chunks = batch;
        batch = [];
        n = 0;
        let pending = chunks;
        while (pending.length > 0) {
          const { bytesWritten } = await fh.writev(pending, start + written);
          written += bytesWritten;
          pending = unwritten(pending, bytesWritten);
        }
        for (const c of chunks) session.hash?.update(c);
      };
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (length !== undefined && written + n + chunk.length > length) {
          throw new RegistryError(400, "SIZE_INVALID", `upload ${session.id}: the chunk is longer than the ${length} bytes its Content-Range says`);
        }
        batch.push(chunk);
        n += chunk.length;
        if (n >= WRITE_BATCH || batch.length >= MAX_IOVECS) await flush();
      }
      if (length !== undefined && written + n !== length) {
        throw new RegistryError(400, "SIZE_INVALID", `upload ${session.id}: the chunk has ${written + n} bytes, not the ${length} its Content-Range says`);
      }
      if (n > 0) await flush();
      session.size = start + written;
    } catch (err) {
      // Forget the partial chunk: cut the file back and re-hash it when the upload finishes.
      await fh.truncate(start).catch(() => {});
      session.size = start;
      if (written > 0) session.hash = undefined;
      throw err;
    } finally {
      await fh.close().catch(() => {});
      session.busy = false;
      session.touched = Date.now();
    }
  }

  /**
   * Ends the session and checks its content against `digest`: on a match, the file is fsynced
   * and its path returned (the caller hands it to the store); otherwise the file is removed and
   * DIGEST_INVALID thrown. Either way the session is gone.
   */
  async finish(session: UploadSession, digest: Digest): Promise<string> {
    this.sessions.delete(session.id);
    try {
      let actual: string;
      if (session.hash && digestAlgorithm(digest) === "sha256") actual = `sha256:${session.hash.digest("hex")}`;
      else actual = await hashFile(session.path, digestAlgorithm(digest));
      if (actual !== digest) {
        throw new RegistryError(400, "DIGEST_INVALID", `the uploaded content (${session.size} bytes) has digest ${actual}, not ${digest}; nothing was stored`, { digest });
      }
      const fh = await fs.open(session.path, "r+");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      return session.path;
    } catch (err) {
      await fs.rm(session.path, { force: true });
      throw err;
    }
  }

  /** Cancels the session and removes its file. */
  async cancel(session: UploadSession): Promise<void> {
    this.sessions.delete(session.id);
    await fs.rm(session.path, { force: true });
  }

  /** Drops every session and removes this server's upload directory. */
  async close(): Promise<void> {
    this.sessions.clear();
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  private expire(): void {
    const now = Date.now();
    for (const s of this.sessions.values()) {
      if (!s.busy && now - s.touched > this.idleTimeoutMs) void this.cancel(s);
    }
  }
}

/** What is left of `chunks` after their first `n` bytes were written. */
function unwritten(chunks: Buffer[], n: number): Buffer[] {
  let i = 0;
  let left = n;
  while (i < chunks.length && left >= chunks[i]!.length) left -= chunks[i++]!.length;
  if (i === chunks.length) return [];
  return [chunks[i]!.subarray(left), ...chunks.slice(i + 1)];
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function hashFile(path: string, algorithm: string): Promise<string> {
  const h = createHash(algorithm);
  for await (const chunk of createReadStream(path, { highWaterMark: WRITE_BATCH })) h.update(chunk as Buffer);
  return `${algorithm}:${h.digest("hex")}`;
}
