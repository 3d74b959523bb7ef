/**
 * Streaming helpers for blobs: a download stream that resumes with a Range request when the
 * connection is cut mid-body (containers/image's `docker/body_reader.go`), and the piecewise
 * reading that chunked uploads need to resume from the offset a registry reports.
 */
import { Readable } from "node:stream";
import { AirlockError } from "../errors.js";
import { isRetryableNetworkError, sleep } from "./retry.js";

/** A response body being read: the stream and the absolute offset of its first byte. */
export interface OpenedBody {
  body: Readable;
  /** Absolute offset in the blob of the body's first byte. */
  start: number;
}

/** Options of {@link ResumableBlobStream}. */
export interface ResumableOptions {
  /** Reopens the blob at an absolute offset (sends `Range: bytes=OFFSET-`). */
  reopen: (offset: number, signal?: AbortSignal) => Promise<OpenedBody>;
  /** Consecutive resumes allowed without 1 MiB of progress in between (default 5). */
  maxResumes?: number;
  /** Wait before a resume, in ms (default 500, doubled per consecutive resume). */
  resumeDelayMs?: number;
  signal?: AbortSignal | undefined;
  /** Names the blob in messages. */
  what: string;
  /** Called after each successful resume with the offset it resumed at. */
  onResume?: (offset: number) => void;
}

/** Progress (bytes) after which a resume no longer counts against the limit. */
const RESUME_PROGRESS_RESET = 1024 * 1024;

/**
 * A readable blob that hides connection cuts: when the underlying body fails with a transient
 * network error, it reopens the blob from the current position and continues, so the consumer
 * sees one seamless stream. Bytes before the position a body starts at are skipped (a server
 * that ignores Range answers 200 with the whole blob).
 */
export class ResumableBlobStream extends Readable {
  private body: Readable | undefined;
  private position: number;
  private skip = 0;
  private resumes = 0;
  private progressSinceResume = 0;
  private resuming = false;
  private readonly opts: ResumableOptions;

  constructor(first: OpenedBody, offset: number, opts: ResumableOptions) {
    super({ highWaterMark: 1024 * 1024 });
    this.opts = opts;
    this.position = offset;
    this.attach(first);
  }

  /** Absolute offset of the next byte this stream will deliver. */
  get offset(): number {
    return this.position;
  }

  private attach(opened: OpenedBody): void {
    const body = opened.body;
    this.body = body;
    this.skip = this.position - opened.start;
    if (this.skip < 0) {
      body.destroy();
      this.destroy(new AirlockError("ERR_REGISTRY", `${this.opts.what}: the registry resumed at byte ${opened.start}, after the requested ${this.position}`));
      return;
    }
    body.on("data", (chunk: Buffer) => {
      if (this.body !== body) return;
      let c = chunk;
      if (this.skip > 0) {
        if (c.length <= this.skip) {
          this.skip -= c.length;
          return;
        }
        c = c.subarray(this.skip);
        this.skip = 0;
      }
      this.position += c.length;
      this.progressSinceResume += c.length;
      if (this.progressSinceResume >= RESUME_PROGRESS_RESET) this.resumes = 0;
      if (!this.push(c)) body.pause();
    });
    body.once("end", () => {
      if (this.body === body) this.push(null);
    });
    body.once("error", (err) => {
      if (this.body === body) void this.onBodyError(err);
    });
  }

  private async onBodyError(err: unknown): Promise<void> {
    this.body = undefined;
    const max = this.opts.maxResumes ?? 5;
    if (this.destroyed || this.opts.signal?.aborted || !isRetryableNetworkError(err) || this.resumes >= max) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.resuming = true;
    const delay = (this.opts.resumeDelayMs ?? 500) * 2 ** this.resumes;
    this.resumes++;
    this.progressSinceResume = 0;
    try {
      await sleep(delay + Math.random() * delay * 0.25, this.opts.signal);
      if (this.destroyed) return;
      const opened = await this.opts.reopen(this.position, this.opts.signal);
      if (this.destroyed) {
        opened.body.destroy();
        return;
      }
      this.opts.onResume?.(this.position);
      this.resuming = false;
      this.attach(opened);
    } catch (e) {
      this.resuming = false;
      if (isRetryableNetworkError(e) && this.resumes < max && !this.destroyed) {
        await this.onBodyError(e);
        return;
      }
      this.destroy(e instanceof Error ? e : new Error(String(e)));
    }
  }

  override _read(): void {
    if (!this.resuming) this.body?.resume();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    const b = this.body;
    this.body = undefined;
    b?.destroy();
    cb(err);
  }
}

/** Reads a stream in pieces of at most a given size (a piece never crosses a chunk boundary). */
export class PieceReader {
  private readonly it: AsyncIterator<Buffer>;
  private leftover: Buffer | undefined;
  private ended = false;

  constructor(stream: Readable) {
    this.it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  /** The next piece of at most `max` bytes, or undefined at the end of the stream. */
  async next(max: number): Promise<Buffer | undefined> {
    let b = this.leftover;
    this.leftover = undefined;
    if (!b) {
      if (this.ended) return undefined;
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return undefined;
      }
      b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    }
    if (b.length > max) {
      this.leftover = b.subarray(max);
      return b.subarray(0, max);
    }
    return b;
  }

  /** Stops reading (destroys the stream). */
  async close(): Promise<void> {
    this.leftover = undefined;
    if (!this.ended) await this.it.return?.().catch(() => {});
    this.ended = true;
  }
}

/**
 * One chunk of an upload, read lazily from a {@link PieceReader} and retained until the registry
 * has it, so that a failed request can be repeated from any offset inside the chunk.
 */
export class RetainedChunk {
  private readonly pieces: Buffer[] = [];
  private have = 0;
  private readonly reader: PieceReader;
  /** Chunk length in bytes. */
  readonly length: number;
  private readonly checkEnd: boolean;
  private readonly what: string;
  private reading: Promise<void> | undefined;
  private ending: Promise<void> | undefined;
  private failed: unknown;

  /** `checkEnd`: after the chunk, the stream must end (and its end — where a verifying stream checks the digest — is awaited). */
  constructor(reader: PieceReader, length: number, checkEnd: boolean, what: string) {
    this.reader = reader;
    this.length = length;
    this.checkEnd = checkEnd;
    this.what = what;
  }

  /** The chunk's bytes from `from` (relative to the chunk) on, reading more from the stream as needed. */
  async *bytes(from = 0): AsyncGenerator<Buffer> {
    let idx = 0;
    let pos = 0;
    for (;;) {
      if (idx < this.pieces.length) {
        const p = this.pieces[idx++] as Buffer;
        const start = pos;
        pos += p.length;
        if (pos > from) yield from > start ? p.subarray(from - start) : p;
        continue;
      }
      if (this.have >= this.length) break;
      await this.readMore();
    }
    if (this.checkEnd) await this.readEnd();
  }

  /** Reads one more piece; concurrent callers (an abandoned body and its replacement) share the read. */
  private readMore(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    this.reading ??= (async () => {
      try {
        const p = await this.reader.next(this.length - this.have);
        if (!p) throw new AirlockError("ERR_SIZE_MISMATCH", `${this.what}: the stream ended early, after fewer bytes than the descriptor's size`);
        this.pieces.push(p);
        this.have += p.length;
      } catch (err) {
        this.failed = err;
        throw err;
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  private readEnd(): Promise<void> {
    this.ending ??= (async () => {
      const extra = await this.reader.next(1);
      if (extra) throw new AirlockError("ERR_SIZE_MISMATCH", `${this.what}: the stream has more bytes than the descriptor's size`);
    })();
    return this.ending;
  }

  /** A fresh stream of {@link bytes} from `from`, usable as a request body. */
  body(from = 0): Readable {
    return Readable.from(this.bytes(from), { objectMode: false, highWaterMark: 1024 * 1024 });
  }
}
