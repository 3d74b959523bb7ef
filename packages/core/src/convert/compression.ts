/**
 * Layer compression: detection by magic number, and streaming (de)compression with gzip and zstd,
 * as containers/image's pkg/compression does it.
 *
 * gzip comes from `node:zlib` everywhere. zstd comes from `node:zlib` where the runtime has it
 * (Node ≥ 22.15 and ≥ 23.8; Bun 1.4 and Deno 2.9 have it, and write the same bytes); elsewhere
 * (Node 20) zstd layers are still DEcompressed, with the pure-JavaScript `fzstd` decoder, but zstd
 * COMPRESSION needs a runtime whose `node:zlib` has it: {@link compressor} throws ERR_UNSUPPORTED
 * saying so.
 * @see https://github.com/containers/image/blob/main/pkg/compression/compression.go
 */
import { Readable, Transform, type TransformCallback } from "node:stream";
import { Decompress as FzstdDecompress } from "fzstd";
import { zlib } from "../builtins.js";
import { AirlockError } from "../errors.js";

/** A layer compression airlock can write: gzip or zstd. */
export type CompressionAlgorithm = "gzip" | "zstd";

/** What a layer is stored as: uncompressed (`none`), or compressed with an algorithm. */
export type Compression = CompressionAlgorithm | "none";

/** A compression airlock can recognise (some only to name it in an error). */
export type DetectedCompression = Compression | "bzip2" | "xz";

/** The number of leading bytes {@link detectCompression} needs. */
export const COMPRESSION_MAGIC_SIZE = 6;

/**
 * Detects the compression of data from its first bytes (at least {@link COMPRESSION_MAGIC_SIZE}
 * unless the data is shorter): gzip `1F 8B 08`, zstd `28 B5 2F FD`, bzip2 `42 5A 68`,
 * xz `FD 37 7A 58 5A 00`; anything else is `none`.
 */
export function detectCompression(head: Uint8Array): DetectedCompression {
  const starts = (...bytes: number[]) => head.length >= bytes.length && bytes.every((b, i) => head[i] === b);
  if (starts(0x1f, 0x8b, 0x08)) return "gzip";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0x42, 0x5a, 0x68)) return "bzip2";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  return "none";
}

/**
 * Reads the first `n` bytes of `stream` without losing them: returns them and a stream that
 * yields everything, those bytes included. Destroying the returned stream destroys `stream`.
 */
export async function peek(stream: Readable, n = COMPRESSION_MAGIC_SIZE): Promise<{ head: Buffer; stream: Readable }> {
  const it = stream[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  try {
    while (length < n) {
      const r = await it.next();
      if (r.done) {
        done = true;
        break;
      }
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      chunks.push(chunk);
      length += chunk.length;
    }
  } catch (err) {
    stream.destroy();
    throw err;
  }
  const all = Buffer.concat(chunks, length);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      if (all.length > 0) yield all;
      if (done) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value as Buffer;
      }
    } finally {
      await it.return?.();
    }
  }
  return { head: all.subarray(0, n), stream: Readable.from(replay(), { objectMode: false }) };
}

interface ZstdZlib {
  createZstdCompress?: (options?: { params?: Record<number, number> }) => Transform;
  createZstdDecompress?: () => Transform;
  constants: { ZSTD_c_compressionLevel?: number };
}

/** Where zstd comes from in this runtime. */
export interface ZstdSupport {
  /** True when zstd layers can be written (the runtime's `node:zlib` has zstd). */
  compress: boolean;
  /** Always true: without `node:zlib` zstd, the `fzstd` decoder is used. */
  decompress: true;
  /** `node:zlib` when the runtime has zstd, else `fzstd` (decompression only). */
  implementation: "node:zlib" | "fzstd";
}

/** Reports how this runtime (de)compresses zstd. */
export function zstdSupport(): ZstdSupport {
  const native = typeof (zlib() as unknown as ZstdZlib).createZstdCompress === "function";
  return { compress: native, decompress: true, implementation: native ? "node:zlib" : "fzstd" };
}

/** A Transform that decompresses zstd with the `fzstd` decoder (for runtimes without node:zlib zstd). */
class FzstdTransform extends Transform {
  private readonly decoder: FzstdDecompress;

  constructor() {
    super();
    // fzstd may hand out views of its window buffer: copy each chunk before it is reused.
    this.decoder = new FzstdDecompress((data) => {
      if (data.length > 0) this.push(Buffer.from(data));
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.decoder.push(chunk);
      cb();
    } catch (err) {
      cb(corrupt("zstd", err));
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.decoder.push(new Uint8Array(0), true);
      cb();
    } catch (err) {
      cb(corrupt("zstd", err));
    }
  }
}

function corrupt(alg: string, cause: unknown): AirlockError {
  return new AirlockError("ERR_IO", `the ${alg} data is corrupt or truncated: ${(cause as Error)?.message ?? cause}`, { cause });
}

/**
 * A Transform that decompresses `algorithm`. Errors in the compressed data surface as the stream's
 * error (an AirlockError for zstd via fzstd, zlib's own error otherwise).
 */
export function decompressor(algorithm: CompressionAlgorithm): Transform {
  if (algorithm === "gzip") return zlib().createGunzip({ chunkSize: 256 * 1024 });
  const z = zlib() as unknown as ZstdZlib;
  if (typeof z.createZstdDecompress === "function") return z.createZstdDecompress();
  return new FzstdTransform();
}

/**
 * A Transform that compresses with `algorithm` at `level` (gzip 1–9, default 6; zstd 1–19,
 * default 3). Throws ERR_UNSUPPORTED for zstd on a runtime whose `node:zlib` has no zstd (Node 20):
 * zstd compression needs Node ≥ 22.15, Bun or Deno.
 */
export function compressor(algorithm: CompressionAlgorithm, level?: number): Transform {
  if (algorithm === "gzip") {
    if (level !== undefined && (!Number.isInteger(level) || level < 1 || level > 9)) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `gzip compression level ${level} is out of range: use 1 (fastest) to 9 (smallest)`);
    }
    return zlib().createGzip({ level: level ?? 6, chunkSize: 256 * 1024 });
  }
  const z = zlib() as unknown as ZstdZlib;
  if (typeof z.createZstdCompress !== "function") {
    throw new AirlockError(
      "ERR_UNSUPPORTED",
      `zstd compression needs a runtime whose node:zlib has zstd (Node.js ≥ 22.15, Bun, Deno); this is Node.js ${process.versions.node}: use --dest-compress-format gzip, or run airlock with a newer Node.js, Bun or Deno`,
    );
  }
  if (level !== undefined && (!Number.isInteger(level) || level < 1 || level > 19)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `zstd compression level ${level} is out of range: use 1 (fastest) to 19 (smallest)`);
  }
  const param = z.constants.ZSTD_c_compressionLevel ?? 100;
  return z.createZstdCompress({ params: { [param]: level ?? 3 } });
}

/** Reports whether `c` is an algorithm airlock can decompress. */
export function canDecompress(c: DetectedCompression): c is CompressionAlgorithm {
  return c === "gzip" || c === "zstd";
}
