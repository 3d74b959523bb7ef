/**
 * Streaming helpers for blobs: a download stream that resumes with a Range request when the
 * connection is cut mid-body (containers/image's `docker/body_reader.go`), and the upload body
 * that chunked uploads need to resume from the offset a registry reports.
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
 * The bytes of one blob upload, read once from the caller's stream and offered as request bodies
 * for any byte range, so a failed request can be repeated from any offset the registry reports.
 * Bytes already taken from the stream come again from `reopen` (a seekable source: nothing kept in
 * memory) or, for a stream that cannot be re-read, from a window of retained pieces that starts
 * at the last offset the registry confirmed ({@link confirm}) — bounded by the chunk size.
 */
export class UploadBody {
  /** Blob size in bytes. */
  readonly size: number;
  private readonly reader: PieceReader;
  private readonly reopen: ((offset: number) => Readable) | undefined;
  private readonly what: string;
  /** Bytes taken from the stream so far. */
  private consumed = 0;
  private retained: Buffer[] = [];
  /** Blob offset of the first retained byte. */
  private retainedFrom = 0;
  private ended: Promise<void> | undefined;
  /** The body being produced; a new one waits for it (an abandoned body may still be reading). */
  private busy: Promise<void> | undefined;
  private current: Readable | undefined;

  constructor(stream: Readable, size: number, reopen: ((offset: number) => Readable) | undefined, what: string) {
    this.reader = new PieceReader(stream);
    this.size = size;
    this.reopen = reopen;
    this.what = what;
  }

  /** Whether any byte taken from the stream can be produced again. */
  get seekable(): boolean {
    return this.reopen !== undefined;
  }

  /** Whether bytes from `offset` on can be produced (re-read, retained, or still in the stream). */
  canStartAt(offset: number): boolean {
    return offset >= 0 && offset <= this.size && (this.reopen !== undefined || offset >= this.retainedFrom);
  }

  /** The registry holds every byte before `offset`: retained bytes before it are released. */
  confirm(offset: number): void {
    while (this.retained.length > 0 && this.retainedFrom + (this.retained[0] as Buffer).length <= offset) {
      this.retainedFrom += (this.retained.shift() as Buffer).length;
    }
  }

  /**
   * Reads and discards the stream up to `offset` (a resumed upload: those bytes are at the
   * registry already, and pass whatever verifies the stream).
   */
  async skipTo(offset: number): Promise<void> {
    for await (const _ of this.range(this.consumed, offset)) void _;
    this.confirm(offset);
  }

  /** Bytes [from, to) as a fresh request body (a body given out before is destroyed). */
  body(from: number, to: number): Readable {
    this.current?.destroy();
    this.current = Readable.from(this.range(from, to), { objectMode: false, highWaterMark: 1024 * 1024 });
    return this.current;
  }

  /** Bytes [from, to); after the blob's last byte, the stream's end (where the digest is checked) is awaited. */
  async *range(from: number, to: number): AsyncGenerator<Buffer> {
    while (this.busy) await this.busy;
    let release: () => void = () => {};
    this.busy = new Promise<void>((r) => {
      release = r;
    });
    try {
      let pos = from;
      if (pos < this.consumed) {
        for await (const b of this.again(pos, Math.min(to, this.consumed))) {
          pos += b.length;
          yield b;
        }
      }
      while (pos < to) {
        const p = await this.reader.next(to - pos);
        if (!p) throw new AirlockError("ERR_SIZE_MISMATCH", `${this.what}: the stream ended after ${this.consumed} bytes, before the descriptor's size ${this.size}`);
        this.consumed += p.length;
        if (!this.reopen) this.retained.push(p);
        pos += p.length;
        yield p;
      }
      if (to === this.size) await this.end();
    } finally {
      this.busy = undefined;
      release();
    }
  }

  /** Bytes [from, to) that were taken from the stream before. */
  private async *again(from: number, to: number): AsyncGenerator<Buffer> {
    if (this.reopen) {
      const s = this.reopen(from);
      let pos = from;
      try {
        for await (const c of s) {
          const b = Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
          const n = Math.min(b.length, to - pos);
          if (n > 0) yield n === b.length ? b : b.subarray(0, n);
          pos += n;
          if (pos >= to) break;
        }
      } finally {
        s.destroy();
      }
      if (pos < to) throw new AirlockError("ERR_SIZE_MISMATCH", `${this.what}: re-reading from byte ${from} ended at ${pos}, before ${to}`);
      return;
    }
    if (from < this.retainedFrom) throw new AirlockError("ERR_REGISTRY", `${this.what}: bytes from ${from} on are no longer held (held from ${this.retainedFrom})`, { retryable: true });
    let at = this.retainedFrom;
    for (const p of this.retained) {
      const start = at;
      at += p.length;
      if (at <= from) continue;
      if (start >= to) break;
      yield p.subarray(Math.max(0, from - start), Math.min(p.length, to - start));
    }
  }

  /** The stream must end after the blob's size (a verifying stream checks the digest there). */
  private end(): Promise<void> {
    this.ended ??= (async () => {
      const extra = await this.reader.next(1);
      if (extra) throw new AirlockError("ERR_SIZE_MISMATCH", `${this.what}: the stream has more bytes than the descriptor's size ${this.size}`);
    })();
    return this.ended;
  }

  /** Stops reading (destroys the stream). */
  close(): Promise<void> {
    this.current?.destroy();
    return this.reader.close();
  }
}
