/**
 * A tar archive written front to back into a stream (an HTTP request body), with the entry format
 * of the docker-archive TarWriter (ustar, pax for long names or huge sizes, mode 0644, owner 0:0,
 * mtime 0). Unlike TarWriter there is no file to rename: the reader sees every byte as it is
 * written, so the caller decides what "committed" means (for `docker load`: the end-of-archive
 * marker and manifest.json arrive last).
 */
import type { Readable, Writable } from "node:stream";
import { BLOCK_SIZE, encodeHeader, paddedSize } from "../../bundle/tar.js";
import { AirlockError } from "../../errors.js";

/** A sequential tar writer over a Writable; honours back-pressure and fails once the Writable fails. */
export class TarStream {
  private readonly out: Writable;
  private failure: Error | undefined;

  constructor(out: Writable) {
    this.out = out;
    out.on("error", (err) => {
      this.failure ??= err;
    });
  }

  /** Adds a regular file holding `bytes`. */
  async addBytes(name: string, bytes: Uint8Array): Promise<void> {
    await this.write(encodeHeader({ path: name, size: bytes.length, mtime: 0, mode: 0o644 }));
    await this.write(bytes);
    await this.pad(bytes.length);
  }

  /**
   * Adds a regular file of exactly `size` bytes from `stream`. More or fewer bytes fail
   * (ERR_SIZE_MISMATCH); after any failure the archive is broken and must be abandoned.
   */
  async addFile(name: string, size: number, stream: Readable, what = name): Promise<void> {
    try {
      await this.write(encodeHeader({ path: name, size, mtime: 0, mode: 0o644 }));
      let n = 0;
      for await (const chunk of stream) {
        const b = chunk as Buffer;
        n += b.length;
        if (n > size) throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: more than the expected ${size} bytes`);
        await this.write(b);
      }
      if (n !== size) throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: ${n} bytes, expected ${size}`);
      await this.pad(size);
    } finally {
      stream.destroy();
    }
  }

  /** Writes the end-of-archive marker and ends the stream. */
  async end(): Promise<void> {
    await this.write(Buffer.alloc(2 * BLOCK_SIZE));
    await new Promise<void>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.out.end(() => (this.failure ? reject(this.failure) : resolve()));
    });
  }

  /** Breaks the stream off with `reason` (the reader sees a truncated archive). */
  abort(reason: Error): void {
    this.failure ??= reason;
    this.out.destroy(reason);
  }

  private async pad(size: number): Promise<void> {
    const pad = paddedSize(size) - size;
    if (pad > 0) await this.write(Buffer.alloc(pad));
  }

  private write(buf: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.out.destroyed) return Promise.reject(new AirlockError("ERR_IO", "the tar stream was closed"));
    if (this.out.write(buf)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        this.out.off("drain", onDrain);
        this.out.off("close", onClose);
        this.out.off("error", done);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(this.failure ?? new AirlockError("ERR_IO", "the tar stream was closed"));
      this.out.on("drain", onDrain);
      this.out.on("close", onClose);
      this.out.on("error", done);
    });
  }
}
