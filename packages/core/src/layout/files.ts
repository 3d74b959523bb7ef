/**
 * File primitives shared by every transport that stores content-addressed files (the OCI layout,
 * skopeo's `dir:` layout, later the bundle): write a blob so that no partial or unverified file is
 * ever visible under its final name, and open a stored blob for reading from an offset.
 */
import { createReadStream, promises as fs } from "node:fs";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Digester, digestAlgorithm, type Expected, VerifyingStream } from "../digest.js";
import { AirlockError } from "../errors.js";
import { tempPathFor } from "../fsutil.js";
import type { BlobReader, GetBlobOptions } from "../transports/types.js";

/** Bytes gathered before one write(2): large writes are what makes the file-write path fast. */
const WRITE_BATCH = 1 << 20;

/** Most chunks in one writev(2) (IOV_MAX is 1024 on Linux). */
const MAX_IOVECS = 1024;

/** Options of {@link writeVerifiedFile}. */
export interface WriteVerifiedOptions {
  signal?: AbortSignal | undefined;
  /** Names the content in error messages, e.g. "blob sha256:… for oci:/srv/layout:app". */
  what?: string;
}

/**
 * Writes `stream` to `path` so that `path` only ever holds verified content: the bytes go to a
 * temporary file beside `path` while being hashed, and only when the stream ended cleanly with the
 * expected digest (and size, when known) is the file fsynced and renamed onto `path`. When the
 * stream errors, is aborted, or does not match, the temporary file is removed and `path` is
 * untouched. The stream is always consumed to its end or destroyed.
 */
export async function writeVerifiedFile(path: string, expected: Expected, stream: Readable, options: WriteVerifiedOptions = {}): Promise<void> {
  const what = options.what ?? `blob ${expected.digest}`;
  const tmp = tempPathFor(path);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(tmp, "wx", 0o644);
  } catch (cause) {
    stream.destroy();
    throw ioError(`cannot create a temporary file for ${what} in ${tmp}`, cause);
  }
  let open = true;
  let done = false;
  try {
    const sink = async (source: AsyncIterable<Buffer>) => {
      // Chunks are gathered and written with one writev(2): large writes without copying them.
      let batch: Buffer[] = [];
      let n = 0;
      for await (const chunk of source) {
        batch.push(chunk);
        n += chunk.length;
        if (n >= WRITE_BATCH || batch.length >= MAX_IOVECS) {
          await writeAll(fh, batch, n);
          batch = [];
          n = 0;
        }
      }
      if (n > 0) await writeAll(fh, batch, n);
    };
    const abort = options.signal ? { signal: options.signal } : {};
    // A stream that verifies the same digest and size itself (the copy pipeline's) fails before it
    // ends when the content is wrong: hashing it a second time would only cost CPU.
    if (stream instanceof VerifyingStream && stream.verifies(expected)) await pipeline(stream, sink, abort);
    else await pipeline(stream, new VerifyingStream(expected, what), sink, abort);
    await fh.sync();
    open = false;
    await fh.close();
    await fs.rename(tmp, path);
    done = true;
  } catch (err) {
    if (err instanceof AirlockError) throw err;
    if ((err as Error).name === "AbortError") throw new AirlockError("ERR_ABORTED", `writing ${what} was aborted`, { cause: err });
    throw ioError(`storing ${what} as ${path} failed`, err);
  } finally {
    if (open) await fh.close().catch(() => {});
    if (!done) await fs.rm(tmp, { force: true }).catch(() => {});
  }
}

/** Writes `bufs` (`total` bytes) at the file's position, going on after a short write. */
async function writeAll(fh: fs.FileHandle, bufs: Buffer[], total: number): Promise<void> {
  let { bytesWritten } = bufs.length === 1 ? await fh.write(bufs[0] as Buffer) : await fh.writev(bufs);
  if (bytesWritten === total) return;
  for (const buf of bufs) {
    if (bytesWritten >= buf.length) {
      bytesWritten -= buf.length;
      continue;
    }
    let off = bytesWritten;
    bytesWritten = 0;
    while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
  }
}

/**
 * Opens the file at `path` for reading from byte `offset` (default 0). `notFound` builds the error
 * thrown when there is no such file. The returned size is the number of bytes the stream will
 * deliver (the file's size minus `offset`).
 */
export async function openBlobFile(path: string, options: GetBlobOptions, notFound: () => AirlockError): Promise<BlobReader> {
  options.signal?.throwIfAborted();
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, "r");
  } catch (cause) {
    if (isNotFoundError(cause)) throw notFound();
    throw ioError(`cannot open ${path}`, cause);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notFound();
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > st.size) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read ${path} from offset ${offset}: the file has ${st.size} bytes`);
    }
    // Aborted while the file was being opened (a sibling download failed): no stream is made.
    options.signal?.throwIfAborted();
    const stream = destroyOnAbort(fh.createReadStream({ start: offset, highWaterMark: WRITE_BATCH }), options.signal);
    return { stream, size: st.size - offset };
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

/**
 * Ties `stream` to `signal`: when the signal aborts (or already has), the stream is destroyed with
 * an `AbortError` whose `cause` is the signal's reason — and that 'error' event is never an
 * unhandled one. A reader that listens gets the error; when nobody reads the stream yet (it was
 * returned to a caller that has not attached its reader, or that stopped reading), the error is
 * dropped and a reader that comes later finds the stream destroyed (`stream.errored`). Node's
 * `addAbortSignal` emits such an error unheard when the signal is already aborted, which kills
 * the process. Returns `stream`.
 */
export function destroyOnAbort<T extends Readable>(stream: T, signal: AbortSignal | undefined): T {
  if (!signal) return stream;
  const onAbort = () => {
    stream.on("error", ignoreError);
    const err = new Error("The operation was aborted", { cause: signal.reason });
    err.name = "AbortError";
    stream.destroy(err);
  };
  if (signal.aborted) {
    onAbort();
    return stream;
  }
  signal.addEventListener("abort", onAbort, { once: true });
  stream.once("close", () => signal.removeEventListener("abort", onAbort));
  return stream;
}

/** An 'error' listener for a stream being torn down, whose error nobody needs any more. */
function ignoreError(): void {}

/**
 * Reads a small file (a manifest, index.json) whole, refusing one larger than `maxSize` bytes.
 * `notFound` builds the error thrown when there is no such file.
 */
export async function readSmallFile(path: string, maxSize: number, notFound: () => AirlockError): Promise<Buffer> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, "r");
  } catch (cause) {
    if (isNotFoundError(cause)) throw notFound();
    throw ioError(`cannot open ${path}`, cause);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notFound();
    if (st.size > maxSize) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${path} is ${st.size} bytes, more than the ${maxSize} airlock reads for a manifest or index`);
    }
    return await fh.readFile();
  } finally {
    await fh.close().catch(() => {});
  }
}

/** Returns the size of the regular file at `path`, or undefined when there is none. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    const st = await fs.stat(path);
    return st.isFile() ? st.size : undefined;
  } catch (cause) {
    if (isNotFoundError(cause)) return undefined;
    throw ioError(`cannot stat ${path}`, cause);
  }
}

/**
 * Reports whether the regular file at `path` has exactly the expected content (size when
 * non-negative, then digest, by hashing the file). False when there is no such file.
 */
export async function fileMatches(path: string, expected: Expected, signal?: AbortSignal): Promise<boolean> {
  const size = await fileSize(path);
  if (size === undefined) return false;
  if (expected.size !== undefined && expected.size >= 0 && size !== expected.size) return false;
  const digester = new Digester(digestAlgorithm(expected.digest));
  const stream = destroyOnAbort(createReadStream(path, { highWaterMark: WRITE_BATCH }), signal);
  try {
    for await (const chunk of stream) digester.update(chunk as Buffer);
  } catch (cause) {
    if (isNotFoundError(cause)) return false;
    if ((cause as Error).name === "AbortError") throw new AirlockError("ERR_ABORTED", `checking ${path} was aborted`, { cause });
    throw ioError(`cannot read ${path}`, cause);
  }
  return digester.digest() === expected.digest;
}

/** Reports whether `err` is a file-system "no such file" (ENOENT, or ENOTDIR for a path through a file). */
export function isNotFoundError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** Wraps a file-system error as ERR_IO with a message that says what failed. */
export function ioError(message: string, cause: unknown): AirlockError {
  const detail = (cause as Error | undefined)?.message;
  return new AirlockError("ERR_IO", detail ? `${message}: ${detail}` : message, { cause });
}

/**
 * The in-flight writes of a destination, so that `close()` without a commit can stop them and wait
 * until they have settled (and removed their temporary files) before it cleans up. The copy
 * pipeline may close a destination while sibling blob copies are still running after one failed.
 */
export class InflightWrites {
  private readonly controller = new AbortController();
  private readonly pending = new Set<Promise<unknown>>();

  /**
   * Runs `fn` with a signal that fires when `signal` does or when {@link abortAll} is called, and
   * tracks it until it settles.
   */
  run<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const combined = signal ? AbortSignal.any([signal, this.controller.signal]) : this.controller.signal;
    const p = fn(combined);
    this.pending.add(p);
    p.then(
      () => this.pending.delete(p),
      () => this.pending.delete(p),
    );
    return p;
  }

  /** Aborts every write still running and waits until all of them have settled. */
  async abortAll(): Promise<void> {
    this.controller.abort(new AirlockError("ERR_ABORTED", "the destination was closed without a commit"));
    await Promise.allSettled([...this.pending]);
  }
}
