/**
 * Random access to the files of a tar archive without extracting it, and a sequential tar writer:
 * the shared ground of the `docker-archive:` and `oci-archive:` transports (containers/image's
 * docker/internal/tarfile).
 *
 * Opening a {@link TarFile} indexes the archive by reading its headers only — one 512-byte block
 * per entry, seeking over the data — then every file is read as a byte range of the archive. The
 * header codec is the bundle's (`bundle/tar.ts`); the walk is separate from the bundle's
 * BundleReader because an archive transport needs other things: one file instead of volumes, a
 * strict reading (the first damaged header is an error, not a recorded problem), symbolic links
 * (`docker save` links duplicate layers), and compressed archives.
 *
 * A compressed archive (`docker save | gzip`) cannot be read at random: it is decompressed ONCE, as
 * a stream, into a temporary file under `tmpDir` (the SystemContext's, default os.tmpdir()), which
 * is indexed instead and removed by {@link TarFile.close}. So a `.tar.gz` costs its uncompressed
 * size in temporary disk space while it is open, as with containers/image.
 * @see https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06
 */
import { createReadStream, promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { addAbortSignal, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { BLOCK_SIZE, decodeHeader, encodeHeader, isZeroBlock, paddedSize, parsePaxRecords } from "../../bundle/tar.js";
import { canDecompress, decompressor, detectCompression } from "../../convert/compression.js";
import { AirlockError } from "../../errors.js";
import { tempPathFor } from "../../fsutil.js";
import { ioError, isNotFoundError } from "../../layout/files.js";

/** One entry of an archive, located by the offset of its data. */
export interface TarFileEntry {
  /** The normalised path (no leading `./` or `/`, no trailing `/`). */
  path: string;
  /** The size of its data in bytes (0 for links and directories). */
  size: number;
  /** The tar typeflag: `0` (or NUL) file, `1` hard link, `2` symbolic link, `5` directory, … */
  typeflag: string;
  /** The target of a link. */
  linkname?: string;
  /** Where its data starts in the (uncompressed) archive file. */
  dataOffset: number;
}

/** Options of {@link TarFile.open}. */
export interface OpenTarOptions {
  /** Where a compressed archive is decompressed to (default os.tmpdir()). */
  tmpDir?: string | undefined;
  signal?: AbortSignal | undefined;
  /** Names the archive in errors, e.g. `docker-archive:/tmp/app.tar` (default: its path). */
  what?: string;
}

const READ_AHEAD = 64 * 1024;
const MAX_EXTENDED_HEADER = 1024 * 1024;
const MAX_LINK_DEPTH = 8;

/** Normalises a path inside an archive: `./a//b/` → `a/b`. Returns "" for the root. */
export function normalizeArchivePath(p: string): string {
  const n = posix.normalize(`/${p}`).replace(/^\/+/, "").replace(/\/+$/, "");
  return n === "." ? "" : n;
}

function isRegular(e: TarFileEntry): boolean {
  return e.typeflag === "0" || e.typeflag === "\0" || e.typeflag === "7";
}

/** A tar archive opened for random access. Safe for concurrent reads. */
export class TarFile {
  /** The archive as the user named it. */
  readonly path: string;
  /** The file actually read: `path`, or a decompressed temporary copy. */
  readonly file: string;
  /** The compression the archive had (`none` for a plain tar). */
  readonly compression: "none" | "gzip" | "zstd";
  /** Names the archive in errors. */
  readonly what: string;
  private readonly fh: FileHandle;
  private readonly size: number;
  private readonly byPath = new Map<string, TarFileEntry>();
  private readonly list: TarFileEntry[] = [];
  private readonly temp: string | undefined;
  private cache: { start: number; buf: Buffer } | undefined;
  private closed = false;

  private constructor(path: string, file: string, fh: FileHandle, size: number, compression: "none" | "gzip" | "zstd", temp: string | undefined, what: string) {
    this.path = path;
    this.file = file;
    this.fh = fh;
    this.size = size;
    this.compression = compression;
    this.temp = temp;
    this.what = what;
  }

  /**
   * Opens and indexes the archive at `path`. A gzip- or zstd-compressed archive is first
   * decompressed into a temporary file (see the module comment). Throws ERR_IO when the file
   * cannot be read, ERR_INVALID_LAYOUT when it is not a complete tar archive (a damaged header,
   * data cut short, no end-of-archive marker) or is compressed with bzip2 or xz.
   */
  static async open(path: string, options: OpenTarOptions = {}): Promise<TarFile> {
    const what = options.what ?? path;
    let fh: FileHandle;
    try {
      fh = await fs.open(path, "r");
    } catch (cause) {
      if (isNotFoundError(cause)) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `${what}: there is no file ${path}; check the path`, { cause });
      throw ioError(`cannot open ${path}`, cause);
    }
    let temp: string | undefined;
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: ${path} is not a regular file; give the path of a tar archive`);
      const head = Buffer.alloc(6);
      const { bytesRead } = await fh.read(head, 0, 6, 0);
      const compression = detectCompression(head.subarray(0, bytesRead));
      if (compression === "none") {
        const tar = new TarFile(path, path, fh, st.size, "none", undefined, what);
        await tar.index(options.signal);
        return tar;
      }
      if (!canDecompress(compression)) {
        throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: ${path} is ${compression}-compressed, which airlock does not read; decompress it first (e.g. ${compression === "xz" ? "xz -d" : "bunzip2"} -k ${path})`);
      }
      await fh.close();
      const dir = await fs.mkdtemp(join(options.tmpDir ?? tmpdir(), "airlock-archive-"));
      temp = dir;
      const file = join(dir, "archive.tar");
      try {
        const input = createReadStream(path, { highWaterMark: 1024 * 1024 });
        if (options.signal) addAbortSignal(options.signal, input);
        const out = await fs.open(file, "wx");
        await pipeline(input, decompressor(compression), out.createWriteStream({ highWaterMark: 1024 * 1024 }));
      } catch (cause) {
        if ((cause as Error).name === "AbortError") throw new AirlockError("ERR_ABORTED", `decompressing ${what} was aborted`, { cause });
        throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: cannot decompress ${path} (${compression}) into ${dir}: ${(cause as Error).message}`, { cause });
      }
      fh = await fs.open(file, "r");
      const tar = new TarFile(path, file, fh, (await fh.stat()).size, compression, dir, what);
      await tar.index(options.signal);
      return tar;
    } catch (err) {
      await fh.close().catch(() => {});
      if (temp) await fs.rm(temp, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** Every entry, in archive order. */
  entries(): readonly TarFileEntry[] {
    return this.list;
  }

  /** The entry at `path` as stored (a link is not followed), or undefined. */
  lookup(path: string): TarFileEntry | undefined {
    return this.byPath.get(normalizeArchivePath(path));
  }

  /**
   * The regular file at `path`, following symbolic and hard links inside the archive (a relative
   * symlink target is taken from the link's directory). Undefined when there is no such file.
   * Throws ERR_INVALID_LAYOUT when `path` is a directory or a link that goes nowhere or loops.
   */
  resolve(path: string): TarFileEntry | undefined {
    let p = normalizeArchivePath(path);
    for (let depth = 0; depth <= MAX_LINK_DEPTH; depth++) {
      const e = this.byPath.get(p);
      if (!e) return undefined;
      if (isRegular(e)) return e;
      if (e.typeflag === "2" && e.linkname !== undefined) {
        p = normalizeArchivePath(e.linkname.startsWith("/") ? e.linkname : posix.join(posix.dirname(p), e.linkname));
        continue;
      }
      if (e.typeflag === "1" && e.linkname !== undefined) {
        p = normalizeArchivePath(e.linkname);
        continue;
      }
      throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what}: ${path} is not a regular file (tar type ${JSON.stringify(e.typeflag)})`);
    }
    throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what}: ${path} is a chain of more than ${MAX_LINK_DEPTH} links`);
  }

  /** Like {@link resolve}, but throws `notFound()` (default ERR_INVALID_LAYOUT naming the path) when it is missing. */
  require(path: string, notFound?: () => AirlockError): TarFileEntry {
    const e = this.resolve(path);
    if (!e) throw notFound ? notFound() : new AirlockError("ERR_INVALID_LAYOUT", `${this.what} has no file ${path}`);
    return e;
  }

  /** Reads a whole file (following links) into memory; refuses one larger than `max` bytes. */
  async read(path: string | TarFileEntry, max: number): Promise<Buffer> {
    const e = typeof path === "string" ? this.require(path) : path;
    if (e.size > max) {
      throw new AirlockError("ERR_MANIFEST_INVALID", `${this.what}: ${e.path} is ${e.size} bytes, more than the ${max} airlock reads into memory`);
    }
    return this.readAt(e.dataOffset, e.size);
  }

  /** Reads the first `n` bytes of a file (fewer when it is shorter). */
  async head(entry: TarFileEntry, n: number): Promise<Buffer> {
    return this.readAt(entry.dataOffset, Math.min(n, entry.size));
  }

  /** Opens a file's data (from byte `offset`) as a stream of the archive's bytes. */
  open(entry: TarFileEntry, options: { offset?: number; signal?: AbortSignal | undefined } = {}): Readable {
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > entry.size) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read ${entry.path} of ${this.what} from offset ${offset}: it has ${entry.size} bytes`);
    }
    if (this.closed) throw new AirlockError("ERR_INVALID_ARGUMENT", `${this.what} was closed`);
    const length = entry.size - offset;
    // Read through the open handle, not the path: the data stays that of the file that was
    // indexed even when the path is replaced meanwhile (an archive rewritten by a commit). By its
    // descriptor: a stream made from the FileHandle itself adds a 'close' listener to the handle
    // that is never removed (Node warns of a leak past ten streams of one archive).
    const stream =
      length === 0
        ? Readable.from([])
        : createReadStream("", { fd: this.fh.fd, start: entry.dataOffset + offset, end: entry.dataOffset + entry.size - 1, highWaterMark: 1024 * 1024, autoClose: false });
    if (options.signal) addAbortSignal(options.signal, stream);
    return stream;
  }

  /** Closes the archive and removes a decompressed temporary copy. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close().catch(() => {});
    if (this.temp) await fs.rm(this.temp, { recursive: true, force: true }).catch(() => {});
  }

  private async readAt(offset: number, n: number): Promise<Buffer> {
    const c = this.cache;
    if (c && offset >= c.start && offset + n <= c.start + c.buf.length) return Buffer.from(c.buf.subarray(offset - c.start, offset - c.start + n));
    const len = n <= READ_AHEAD ? Math.min(READ_AHEAD, this.size - offset) : n;
    const buf = Buffer.allocUnsafe(Math.max(len, 0));
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < n) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what}: the archive ends at byte ${offset + got}, inside data that should reach byte ${offset + n}; it is truncated`);
    if (n <= READ_AHEAD) this.cache = { start: offset, buf: buf.subarray(0, got) };
    return Buffer.from(buf.subarray(0, n));
  }

  /** Walks the headers from the start to the end-of-archive marker. */
  private async index(signal?: AbortSignal): Promise<void> {
    const truncated = (at: number) =>
      new AirlockError("ERR_INVALID_LAYOUT", `${this.what} is truncated: it ends at byte ${this.size}, inside the tar entry that starts at byte ${at}; copy the archive again`);
    let off = 0;
    let paxPath: string | undefined;
    let paxLink: string | undefined;
    let paxSize: number | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      signal?.throwIfAborted();
      if (off + BLOCK_SIZE > this.size) {
        if (off === 0) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what} is not a tar archive: it is ${this.size === 0 ? "empty" : `only ${this.size} bytes`}`);
        throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what} is truncated: it ends at byte ${this.size} without the tar end-of-archive marker; copy the archive again`);
      }
      const block = await this.readAt(off, BLOCK_SIZE);
      if (isZeroBlock(block)) return;
      let h: ReturnType<typeof decodeHeader>;
      try {
        h = decodeHeader(block, `tar header at byte ${off}`);
      } catch (cause) {
        const first = off === 0 ? " (it is not a tar archive)" : "";
        throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what}: the tar header at byte ${off} is damaged${first}: ${(cause as Error).message}`, { cause });
      }
      const dataOffset = off + BLOCK_SIZE;
      if (!Number.isSafeInteger(h.size) || h.size < 0) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what}: the tar header at byte ${off} has an invalid size`);
      const tf = h.typeflag;
      if (tf === "x" || tf === "g" || tf === "L" || tf === "K") {
        if (h.size > MAX_EXTENDED_HEADER) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.what}: the extended tar header at byte ${off} is ${h.size} bytes, more than airlock reads`);
        if (dataOffset + h.size > this.size) throw truncated(off);
        const data = await this.readAt(dataOffset, h.size);
        if (tf === "x") {
          const rec = parsePaxRecords(data);
          paxPath = rec.get("path") ?? paxPath;
          paxLink = rec.get("linkpath") ?? paxLink;
          const s = rec.get("size");
          if (s !== undefined) paxSize = Number.parseInt(s, 10);
        } else if (tf === "L") {
          longName = data.toString("utf8").replace(/\0+$/, "");
        } else if (tf === "K") {
          longLink = data.toString("utf8").replace(/\0+$/, "");
        }
        off = dataOffset + paddedSize(h.size);
        continue;
      }
      const size = paxSize ?? h.size;
      // Links and directories carry no data, whatever their size field says.
      const hasData = tf !== "1" && tf !== "2" && tf !== "5";
      const dataSize = hasData ? size : 0;
      if (dataOffset + dataSize > this.size) throw truncated(off);
      const rawLink = Buffer.from(block.subarray(157, 257));
      const nul = rawLink.indexOf(0);
      const ustarLink = rawLink.toString("utf8", 0, nul < 0 ? 100 : nul);
      const entry: TarFileEntry = { path: normalizeArchivePath(paxPath ?? longName ?? h.path), size: dataSize, typeflag: tf, dataOffset };
      const link = paxLink ?? longLink ?? ustarLink;
      if ((tf === "1" || tf === "2") && link !== "") entry.linkname = link;
      this.list.push(entry);
      // As when extracting, a later entry with the same path replaces an earlier one.
      if (entry.path !== "") this.byPath.set(entry.path, entry);
      paxPath = paxLink = longName = longLink = undefined;
      paxSize = undefined;
      off = dataOffset + paddedSize(dataSize);
    }
  }
}

/**
 * Writes a tar archive to a temporary file beside `path` and renames it onto `path` only in
 * {@link commit}: until then nothing at `path` changes, and {@link abort} removes the temporary
 * file. Entries are POSIX ustar (with pax records for long names or sizes ≥ 8 GiB), mode 0644,
 * owner 0:0, mtime 0, so the same content gives the same bytes.
 */
export class TarWriter {
  /** The archive's final path. */
  readonly path: string;
  /** The temporary file being written. */
  readonly tempPath: string;
  private readonly fh: FileHandle;
  private offset = 0;
  private done = false;

  private constructor(path: string, tempPath: string, fh: FileHandle) {
    this.path = path;
    this.tempPath = tempPath;
    this.fh = fh;
  }

  /** Creates the temporary file beside `path`. */
  static async create(path: string): Promise<TarWriter> {
    const tempPath = tempPathFor(path);
    try {
      return new TarWriter(path, tempPath, await fs.open(tempPath, "wx", 0o644));
    } catch (cause) {
      throw ioError(`cannot create a temporary file ${tempPath} for ${path}`, cause);
    }
  }

  /** Adds a regular file holding `bytes`. */
  async addBytes(name: string, bytes: Uint8Array): Promise<void> {
    await this.write(encodeHeader({ path: name, size: bytes.length, mtime: 0, mode: 0o644 }));
    await this.write(bytes);
    await this.pad(bytes.length);
  }

  /**
   * Adds a regular file of exactly `size` bytes read from the stream `open()` returns. A stream
   * that yields more or fewer bytes fails (ERR_SIZE_MISMATCH); a stream error is rethrown; either
   * way the archive cannot be committed. `what` names the content in errors.
   */
  async addFile(name: string, size: number, open: () => Readable | Promise<Readable>, what = name): Promise<void> {
    await this.write(encodeHeader({ path: name, size, mtime: 0, mode: 0o644 }));
    let n = 0;
    let batch: Buffer[] = [];
    let batched = 0;
    const stream = await open();
    try {
      for await (const chunk of stream) {
        const b = chunk as Buffer;
        n += b.length;
        if (n > size) throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: more than the expected ${size} bytes`);
        batch.push(b);
        batched += b.length;
        if (batched >= 1024 * 1024) {
          await this.write(Buffer.concat(batch, batched));
          batch = [];
          batched = 0;
        }
      }
    } finally {
      stream.destroy();
    }
    if (batched > 0) await this.write(Buffer.concat(batch, batched));
    if (n !== size) throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: ${n} bytes, expected ${size}`);
    await this.pad(size);
  }

  private async pad(size: number): Promise<void> {
    const pad = paddedSize(size) - size;
    if (pad > 0) await this.write(Buffer.alloc(pad));
  }

  /** Writes the end-of-archive marker, fsyncs, and renames the archive onto its path. */
  async commit(): Promise<void> {
    await this.write(Buffer.alloc(2 * BLOCK_SIZE));
    try {
      await this.fh.sync();
      await this.fh.close();
      this.done = true;
      await fs.rename(this.tempPath, this.path);
    } catch (cause) {
      await this.abort();
      throw ioError(`cannot write ${this.path}`, cause);
    }
  }

  /** Removes the temporary file; `path` is left as it was. Safe to call after {@link commit}. */
  async abort(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => {});
    }
    await fs.rm(this.tempPath, { force: true }).catch(() => {});
  }

  private async write(buf: Uint8Array): Promise<void> {
    let off = 0;
    try {
      while (off < buf.length) {
        const { bytesWritten } = await this.fh.write(buf, off, buf.length - off, this.offset + off);
        off += bytesWritten;
      }
    } catch (cause) {
      throw ioError(`cannot write ${this.tempPath} (for ${this.path})`, cause);
    }
    this.offset += buf.length;
  }
}
