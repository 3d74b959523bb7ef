/**
 * Writing blob data into its planned region of a bundle: the stream is hashed as it passes, its
 * chunks gathered into ~1 MiB and written with one positional writev (no copy), with one write in
 * flight while the next gathers. Memory per blob is about 2 MiB, whatever the blob's size.
 * Also the export journal, which records finished blobs so that a rerun can resume.
 */
import { promises as fs } from "node:fs";
import type { Readable } from "node:stream";
import { type Digest, Digester, digestAlgorithm } from "../digest.js";
import { releaseBulkChunk } from "../registry/bulk.js";
import { AirlockError } from "../errors.js";
import type { PlannedEntry } from "./plan.js";
import { paddedSize } from "./tar.js";
import type { VolumeFiles } from "./volumes.js";

/** How many bytes are gathered before they are written (and the read size of read-backs). */
export const WRITE_CHUNK_SIZE = 1024 * 1024;

/** Chunks smaller than this are packed together before they are written. */
const SMALL_CHUNK_SIZE = 16 * 1024;
const SMALL_PACK_SIZE = 64 * 1024;
const ZEROS = Buffer.alloc(512);

/** Options of {@link writeBlobData}. */
export interface WriteBlobOptions {
  signal?: AbortSignal | undefined;
  /** Called with the running byte count after every write. */
  onBytes?: ((bytes: number) => void) | undefined;
  /**
   * Called when each write completes, in order, with its logical position and bytes — before the
   * buffer is reused (the volume hasher follows the download this way).
   */
  onWritten?: ((pos: number, buf: Buffer, n: number) => void) | undefined;
  /** Names the blob in error messages, e.g. "blob sha256:… of docker://…". */
  what: string;
  /**
   * Bytes of the data already in place (kept from an earlier run): `stream` starts at this offset,
   * and `digester` MUST already hold those bytes.
   */
  startAt?: number | undefined;
  /** The digester to continue (see `startAt`). */
  digester?: Digester | undefined;
}

/**
 * Streams `stream` into the data region of `entry` (its data then zero padding to a whole
 * block), verifying digest and size while streaming. Throws ERR_SIZE_MISMATCH as soon as more
 * bytes than expected arrive, and ERR_DIGEST_MISMATCH / ERR_SIZE_MISMATCH at the end. The header
 * is not written: the caller writes it once the data is verified.
 */
export async function writeBlobData(files: VolumeFiles, entry: PlannedEntry, digest: Digest, stream: Readable, options: WriteBlobOptions): Promise<void> {
  const { signal, onBytes, onWritten, what } = options;
  const size = entry.size;
  const digester = options.digester ?? new Digester(digestAlgorithm(digest));
  let pos = entry.dataOffset + (options.startAt ?? 0);
  // Chunks are gathered by reference and written with one writev once WRITE_CHUNK_SIZE bytes are
  // there (no copy); small chunks are first packed into a small buffer, so a source that yields
  // tiny chunks does not turn into thousands of pieces. One write is in flight while the next
  // gathers.
  let pieces: Buffer[] = [];
  let gathered = 0;
  let small = Buffer.allocUnsafe(SMALL_PACK_SIZE);
  let smallFill = 0;
  let pending: Promise<void> | undefined;
  // Set when the blob failed: a flush still waiting for the previous write must then issue none
  // (it could land after a retry's writes and overwrite them).
  let stopped = false;

  const packSmall = () => {
    if (smallFill === 0) return;
    pieces.push(small.subarray(0, smallFill));
    small = Buffer.allocUnsafe(SMALL_PACK_SIZE);
    smallFill = 0;
  };
  // Waits for the write in flight, then starts writing the gathered pieces at `pos`.
  const flush = async (): Promise<void> => {
    packSmall();
    const list = pieces;
    const n = gathered;
    pieces = [];
    gathered = 0;
    if (pending) {
      await pending;
      pending = undefined;
    }
    if (stopped) throw new AirlockError("ERR_ABORTED", `${what}: stopped`);
    const at = pos;
    let write = files.writev(list, at);
    if (onWritten) {
      write = write.then(() => {
        let p = at;
        for (const b of list) {
          onWritten(p, b, b.length);
          p += b.length;
        }
      });
    }
    write = write.then(() => {
      for (const b of list) releaseBulkChunk(b);
    });
    write.catch(() => {}); // awaited by the next flush; this only keeps it from being "unhandled"
    pending = write;
    pos += n;
    onBytes?.(Math.min(pos - entry.dataOffset, size));
  };

  // This function owns `stream` now: it reads it to its end or destroys it. An error the stream
  // emits while nobody listens (before eachChunk attaches, or after it stopped: the blob already
  // failed, or the run was aborted and the stream is being torn down) is then expected, not an
  // unhandled 'error' event that would kill the process; eachChunk still hears every error while
  // it reads.
  stream.on("error", ignoreError);
  const onAbort = () => stream.destroy(signal?.reason ?? new AirlockError("ERR_ABORTED", `${what}: aborted`));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    // Gathers a chunk; returns a promise when enough was gathered to write (the stream is paused
    // meanwhile), else nothing.
    const take = (chunk: Buffer): Promise<void> | undefined => {
      if (chunk.length < SMALL_CHUNK_SIZE) {
        if (smallFill + chunk.length > small.length) packSmall();
        chunk.copy(small, smallFill);
        smallFill += chunk.length;
        releaseBulkChunk(chunk);
      } else {
        packSmall();
        pieces.push(chunk);
      }
      gathered += chunk.length;
      return gathered >= WRITE_CHUNK_SIZE ? flush() : undefined;
    };
    await eachChunk(stream, (chunk) => {
      digester.update(chunk);
      if (digester.size > size) {
        throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: more than the expected ${size} bytes arrived; the source is corrupt or does not match its manifest`);
      }
      return take(chunk);
    });
    signal?.throwIfAborted();
    if (digester.size !== size) {
      throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: got ${digester.size} bytes, expected ${size}; the source is truncated or does not match its manifest`);
    }
    const actual = digester.digest();
    if (actual !== digest) {
      throw new AirlockError("ERR_DIGEST_MISMATCH", `${what}: content has digest ${actual}, expected ${digest}; the source is corrupt or was tampered with`);
    }
    // Zero padding to the next block boundary goes out with the last write.
    const pad = paddedSize(size) - size;
    if (pad > 0) {
      packSmall();
      pieces.push(ZEROS.subarray(0, pad));
      gathered += pad;
    }
    if (gathered > 0) await flush();
    if (pending) await pending;
  } catch (err) {
    stopped = true;
    stream.destroy();
    // Wait for every write already issued, so none lands after this attempt is over.
    for (let p = pending; p; p = pending === p ? undefined : pending) await p.catch(() => {});
    if (signal?.aborted && !(err instanceof AirlockError && err.code !== "ERR_ABORTED")) {
      throw new AirlockError("ERR_ABORTED", `${what}: aborted`, { cause: err });
    }
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** An 'error' listener for a stream whose errors are heard elsewhere, or no longer matter. */
function ignoreError(): void {}

/**
 * Feeds each chunk of `stream` to `onChunk` as it arrives — through 'data' events, so chunks are
 * never concatenated (an async iterator's read() would copy them together) — pausing the stream
 * while a promise `onChunk` returned is pending. Resolves when the stream ended and the last
 * chunk was handled; rejects on the first error (the stream's or `onChunk`'s).
 */
export function eachChunk(stream: Readable, onChunk: (chunk: Buffer) => Promise<void> | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    // A stream destroyed before we came (aborted, or failed while nobody read it) sends no more
    // events: settle now instead of waiting forever.
    if (stream.destroyed) {
      const errored = (stream as { errored?: Error | null }).errored;
      if (errored) reject(errored);
      else if (stream.readableEnded) resolve();
      else reject(new AirlockError("ERR_ABORTED", "the blob stream was closed before it was read"));
      return;
    }
    let done = false;
    let inflight: Promise<void> | undefined;
    const cleanup = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", finish);
      stream.off("close", onClose);
    };
    function finish(err?: unknown): void {
      if (done) return;
      done = true;
      cleanup();
      if (err === undefined) resolve();
      else reject(err);
    }
    function onData(chunk: Buffer): void {
      if (done) return;
      let p: Promise<void> | undefined;
      try {
        p = onChunk(chunk);
      } catch (err) {
        finish(err);
        return;
      }
      if (p) {
        stream.pause();
        inflight = p.then(
          () => {
            inflight = undefined;
            if (!done) stream.resume();
          },
          (err: unknown) => finish(err),
        );
      }
    }
    function onEnd(): void {
      if (inflight) inflight.then(() => finish(), finish);
      else finish();
    }
    function onClose(): void {
      // 'close' after 'end' is normal; before it, the stream was cut short without an error.
      if (!stream.readableEnded) finish(new AirlockError("ERR_NETWORK", "the blob stream closed before its end", { retryable: true }));
    }
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("error", finish);
    stream.once("close", onClose);
  });
}

/**
 * Reads back the data region of `entry` and checks its digest (resume: a blob the journal says is
 * done is skipped only if its bytes on disk are still right).
 */
export async function checkBlobData(files: VolumeFiles, entry: PlannedEntry, digest: Digest): Promise<boolean> {
  // The header is written only after the data is verified: without it, the blob is not done (a cheap check first).
  const head = Buffer.alloc(entry.header.length);
  if ((await files.read(head, 0, head.length, entry.headerOffset)) !== head.length || !head.equals(entry.header)) return false;
  const digester = new Digester(digestAlgorithm(digest));
  const buf = Buffer.allocUnsafe(Math.min(WRITE_CHUNK_SIZE, Math.max(entry.size, 1)));
  let pos = entry.dataOffset;
  let remaining = entry.size;
  while (remaining > 0) {
    const n = await files.read(buf, 0, Math.min(buf.length, remaining), pos);
    if (n === 0) return false;
    digester.update(buf.subarray(0, n));
    pos += n;
    remaining -= n;
  }
  const header = Buffer.alloc(entry.header.length);
  const n = await files.read(header, 0, header.length, entry.headerOffset);
  return n === header.length && header.equals(entry.header) && digester.digest() === digest;
}

/** Shortest interval between two journal saves for download progress, in ms. */
export const PROGRESS_SAVE_MS = 250;

/** What the journal file holds. */
export interface JournalData {
  version: 1;
  /** Digest of the plan the partial files were written for. */
  plan: Digest;
  /** The bundle id and creation time of that run, reused by a resumed run. */
  bundle: string;
  created: string;
  /** Blobs whose data and header are written. */
  done: Digest[];
  /** Blobs being written: bytes of data written from the start (a rerun continues from there). */
  partial?: Record<string, number>;
}

/**
 * The export journal `OUT.journal.json`: which blobs of the partial archive are finished. It is
 * rewritten (to a temporary name, then renamed) after blobs finish, at most one write at a time.
 */
export class Journal {
  readonly path: string;
  readonly data: JournalData;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private lastProgressSave = 0;

  constructor(path: string, data: JournalData) {
    this.path = path;
    this.data = data;
  }

  /** Loads the journal at `path`, or returns undefined when it is missing or unreadable. */
  static async load(path: string): Promise<JournalData | undefined> {
    try {
      const data = JSON.parse(await fs.readFile(path, "utf8")) as JournalData;
      if (data.version !== 1 || typeof data.plan !== "string" || !Array.isArray(data.done)) return undefined;
      return data;
    } catch {
      return undefined;
    }
  }

  /** Records that `digest` is done and schedules a save. */
  markDone(digest: Digest): void {
    this.data.done.push(digest);
    if (this.data.partial) delete this.data.partial[digest];
    this.save();
  }

  /**
   * Records that the first `bytes` of blob `digest`'s data are written; saved at most every
   * {@link PROGRESS_SAVE_MS} (a kill loses only what came after the last save).
   */
  markProgress(digest: Digest, bytes: number): void {
    this.data.partial ??= {};
    this.data.partial[digest] = bytes;
    const now = Date.now();
    if (now - this.lastProgressSave < PROGRESS_SAVE_MS) return;
    this.lastProgressSave = now;
    this.save();
  }

  /** Bytes of blob `digest` an earlier run recorded as written (0 when none). */
  written(digest: Digest): number {
    const n = this.data.partial?.[digest];
    return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : 0;
  }

  /** Schedules a save; at most one is in flight, and a change during it triggers one more. */
  save(): void {
    this.dirty = true;
    if (this.writing) return;
    this.writing = (async () => {
      try {
        while (this.dirty) {
          this.dirty = false;
          const tmp = `${this.path}.tmp`;
          await fs.writeFile(tmp, JSON.stringify(this.data));
          await fs.rename(tmp, this.path);
        }
      } catch {
        // A journal that cannot be written (the disk is full) only costs a resume its shortcut;
        // its half-written temporary file goes.
        await fs.rm(`${this.path}.tmp`, { force: true }).catch(() => {});
      } finally {
        this.writing = undefined;
      }
    })();
  }

  /** Waits for pending saves. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  /** Deletes the journal (the export finished). */
  async remove(): Promise<void> {
    await this.flush();
    await fs.rm(this.path, { force: true });
  }
}
