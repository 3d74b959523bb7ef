/**
 * Sending blobs that lie in files: read into a few reused buffers and written to the response,
 * one buffer read while the other is being written, each buffer reused only once the socket has
 * taken its bytes (the write's callback). A blob costs no allocation per chunk — a stream per blob
 * allocates a new buffer for every chunk, and the garbage collector then spends more time than the
 * reads — and a slow client holds at most two buffers of the server's memory.
 */
import { promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import type { FileSpan } from "./store/types.js";

/** Bytes per read and per write. */
export const SEND_CHUNK = 1 << 20;

/** Buffers of {@link SEND_CHUNK} bytes, handed out and taken back; at most `keep` are kept idle. */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly keep: number;

  constructor(keep = 8) {
    this.keep = keep;
  }

  /** A buffer of {@link SEND_CHUNK} bytes (contents undefined). */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(SEND_CHUNK);
  }

  /** Gives a buffer back; it must no longer be in use. */
  give(buf: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buf);
  }
}

/** Opens the file of a span; an error here comes before any byte is sent. */
export function openSpan(span: FileSpan): Promise<FileHandle> {
  return fs.open(span.path, "r");
}

/**
 * Writes the bytes of `spans` to `res` (whose headers are set, with the total length), ending it.
 * `first` is the already-open file of the first span (see {@link openSpan}), closed here. `onSent` hears of
 * every chunk the socket took. Rejects when a file is shorter than its span or cannot be read, or
 * when the client goes away; the caller then cuts the connection.
 */
export async function sendSpans(res: ServerResponse, spans: readonly FileSpan[], first: FileHandle | undefined, pool: BufferPool, onSent: (n: number) => void): Promise<void> {
  const bufs: Buffer[] = [];
  let writing: Promise<void> | undefined;
  let clean = false;
  // The connection closing before the response finished means a write may never call back.
  let onClose!: () => void;
  const closed = new Promise<never>((_, reject) => {
    onClose = () => {
      if (!res.writableFinished) reject(new Error("the client closed the connection"));
    };
    res.once("close", onClose);
  });
  closed.catch(() => {});
  const write = (chunk: Buffer): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      res.write(chunk, (err) => (err ? reject(err) : resolve()));
    });
  try {
    let which = 0;
    for (let i = 0; i < spans.length; i++) {
      const span = spans[i]!;
      const fh = i === 0 && first ? first : await openSpan(span);
      try {
        let pos = span.start;
        let left = span.length;
        while (left > 0) {
          let buf = bufs[which];
          if (!buf) {
            buf = pool.take();
            bufs[which] = buf;
          }
          which ^= 1;
          const want = Math.min(left, buf.length);
          let got = 0;
          while (got < want) {
            const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
            if (bytesRead === 0) throw new Error(`${span.path} ends ${left - got} bytes before the blob does`);
            got += bytesRead;
          }
          // The other buffer's write must be done before the next read goes into it.
          if (writing) await Promise.race([writing, closed]);
          const n = got;
          writing = write(buf.subarray(0, n)).then(() => onSent(n));
          // Awaited before the next write; until then a failure must not count as unhandled.
          writing.catch(() => {});
          pos += n;
          left -= n;
        }
      } finally {
        await fh.close().catch(() => {});
      }
    }
    if (writing) await Promise.race([writing, closed]);
    await Promise.race([new Promise<void>((resolve) => res.end(resolve)), closed]);
    clean = true;
  } finally {
    res.off("close", onClose);
    // A buffer whose write did not complete may still be referenced by the socket: drop it.
    if (clean) for (const b of bufs) pool.give(b);
  }
}
