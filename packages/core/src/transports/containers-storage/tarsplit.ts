/**
 * tar-split (github.com/vbatts/tar-split), the record containers/storage keeps beside every layer
 * (`<driver>-layers/<id>.tar-split.gz`) so that the layer's original uncompressed tar can be
 * produced again, byte for byte, from the extracted files: a gzip of JSON lines, one entry each,
 * in tar order. A *segment* entry (`type` 2) holds raw tar bytes (headers, padding, the end of the
 * archive) in `payload` (base64); a *file* entry (`type` 1) names a file whose `size` bytes of
 * content come from the layer's directory, with the CRC-64 (ISO polynomial, big-endian) of that
 * content in `payload`.
 * @see https://github.com/vbatts/tar-split/blob/main/tar/storage/entry.go
 * @see https://github.com/vbatts/tar-split/blob/main/tar/asm/assemble.go
 */
import { createReadStream } from "node:fs";
import { join, normalize } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { createGunzip, createGzip, constants as zlibConstants } from "node:zlib";
import { AirlockError } from "../../errors.js";

/** tar-split's entry type of a file whose content lives in the layer directory. */
export const FILE_TYPE = 1;
/** tar-split's entry type of raw tar bytes. */
export const SEGMENT_TYPE = 2;

/** One tar-split entry as stored (storage.Entry in Go). */
export interface TarSplitEntry {
  type: number;
  name?: string;
  /** The name as raw bytes (base64) when it is not valid UTF-8. */
  name_raw?: string;
  size?: number;
  /** base64: raw bytes (segment) or the CRC-64 of the content (file); null for an empty file. */
  payload: string | null;
  position: number;
}

// CRC-64 with the ISO polynomial (Go's crc64.ISO, reflected 0xD800000000000000), as two 32-bit
// halves, with Go's slicing-by-8 tables: table k maps a byte to its CRC after k more zero bytes.
const CRC_HI = new Uint32Array(256 * 8);
const CRC_LO = new Uint32Array(256 * 8);
for (let i = 0; i < 256; i++) {
  let hi = 0;
  let lo = i;
  for (let k = 0; k < 8; k++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi = hi >>> 1;
    if (carry) hi = (hi ^ 0xd8000000) >>> 0;
  }
  CRC_HI[i] = hi;
  CRC_LO[i] = lo;
}
for (let i = 0; i < 256; i++) {
  let hi = CRC_HI[i] as number;
  let lo = CRC_LO[i] as number;
  for (let j = 1; j < 8; j++) {
    const idx = lo & 0xff;
    lo = (((lo >>> 8) | (hi << 24)) ^ (CRC_LO[idx] as number)) >>> 0;
    hi = ((hi >>> 8) ^ (CRC_HI[idx] as number)) >>> 0;
    CRC_HI[j * 256 + i] = hi;
    CRC_LO[j * 256 + i] = lo;
  }
}

/** A running CRC-64/ISO, the checksum tar-split records for file content (Go's hash/crc64 with crc64.ISO). */
export class Crc64 {
  private hi = 0xffffffff;
  private lo = 0xffffffff;

  /** Adds `data` to the checksum. */
  update(data: Uint8Array): void {
    let hi = this.hi;
    let lo = this.lo;
    const n = data.length;
    let i = 0;
    const TH = CRC_HI;
    const TL = CRC_LO;
    // Eight bytes at a time (slicing-by-8), then byte by byte.
    for (; i + 8 <= n; i += 8) {
      lo ^= (data[i] as number) | ((data[i + 1] as number) << 8) | ((data[i + 2] as number) << 16) | ((data[i + 3] as number) << 24);
      hi ^= (data[i + 4] as number) | ((data[i + 5] as number) << 8) | ((data[i + 6] as number) << 16) | ((data[i + 7] as number) << 24);
      const a = 7 * 256 + (lo & 0xff);
      const b = 6 * 256 + ((lo >>> 8) & 0xff);
      const c = 5 * 256 + ((lo >>> 16) & 0xff);
      const d = 4 * 256 + (lo >>> 24);
      const e = 3 * 256 + (hi & 0xff);
      const f = 2 * 256 + ((hi >>> 8) & 0xff);
      const g = 256 + ((hi >>> 16) & 0xff);
      const h = hi >>> 24;
      lo = (TL[a] as number) ^ (TL[b] as number) ^ (TL[c] as number) ^ (TL[d] as number) ^ (TL[e] as number) ^ (TL[f] as number) ^ (TL[g] as number) ^ (TL[h] as number);
      hi = (TH[a] as number) ^ (TH[b] as number) ^ (TH[c] as number) ^ (TH[d] as number) ^ (TH[e] as number) ^ (TH[f] as number) ^ (TH[g] as number) ^ (TH[h] as number);
    }
    for (; i < n; i++) {
      const idx = (lo ^ (data[i] as number)) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ (TL[idx] as number);
      hi = (hi >>> 8) ^ (TH[idx] as number);
    }
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
  }

  /** The checksum as 8 big-endian bytes (Go's `Sum(nil)`). */
  sum(): Buffer {
    const out = Buffer.alloc(8);
    out.writeUInt32BE(~this.hi >>> 0, 0);
    out.writeUInt32BE(~this.lo >>> 0, 4);
    return out;
  }
}

/** Reads the entries of a tar-split file (gzip of JSON lines) one by one. */
export async function* readTarSplit(path: string): AsyncGenerator<TarSplitEntry> {
  const input = createReadStream(path).pipe(createGunzip());
  let rest = "";
  try {
    for await (const chunk of input) {
      rest += (chunk as Buffer).toString("utf8");
      let nl = rest.indexOf("\n");
      while (nl >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line.trim() !== "") yield JSON.parse(line) as TarSplitEntry;
        nl = rest.indexOf("\n");
      }
    }
    if (rest.trim() !== "") yield JSON.parse(rest) as TarSplitEntry;
  } finally {
    input.destroy();
  }
}

/** The name of a file entry (`name`, or `name_raw` decoded as Latin-1 bytes, as Go keeps them). */
export function entryName(e: TarSplitEntry): string {
  if (e.name !== undefined && e.name !== "") return e.name;
  if (e.name_raw) return Buffer.from(e.name_raw, "base64").toString("latin1");
  return "";
}

/** Where file entries' contents are read: the layer's directory (vfs `dir/<id>`, overlay `<id>/diff`). */
function contentPath(root: string, name: string): string {
  const clean = normalize(`/${name}`);
  return join(root, clean);
}

/**
 * Regenerates a layer's uncompressed tar from its tar-split record and the files under `root`, as
 * tar-split's `asm.WriteOutputTarStream` does: segments verbatim, each file's content from disk,
 * checked against the recorded size and CRC-64. `what` names the layer in error messages.
 */
export function assembleLayer(tarSplitPath: string, root: string, what: string): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for await (const e of readTarSplit(tarSplitPath)) {
      if (e.type === SEGMENT_TYPE) {
        if (e.payload) yield Buffer.from(e.payload, "base64");
        continue;
      }
      if (e.type !== FILE_TYPE) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: unknown tar-split entry type ${e.type} at position ${e.position} in ${tarSplitPath}`);
      const size = e.size ?? 0;
      if (size === 0) continue;
      const name = entryName(e);
      const path = contentPath(root, name);
      const crc = new Crc64();
      let got = 0;
      try {
        for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
          const b = chunk as Buffer;
          crc.update(b);
          got += b.length;
          yield b;
        }
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code === "EACCES") {
          throw new AirlockError(
            "ERR_UNSUPPORTED",
            `${what}: cannot read ${path}: permission denied; the files of a rootless store belong to its user namespace: run airlock inside podman unshare (a rootful store needs root)`,
            { cause },
          );
        }
        throw new AirlockError("ERR_BLOB_NOT_FOUND", `${what}: cannot read ${JSON.stringify(name)} from the layer's files (${path}): ${(cause as Error).message}; the store is damaged or the layer is being removed`, { cause });
      }
      if (got !== size) throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: ${JSON.stringify(name)} has ${got} bytes on disk, the layer's tar-split says ${size}; the layer's files were changed`);
      if (e.payload && !crc.sum().equals(Buffer.from(e.payload, "base64"))) {
        throw new AirlockError("ERR_DIGEST_MISMATCH", `${what}: file integrity checksum failed for ${JSON.stringify(name)}: the layer's files were changed since it was stored`);
      }
    }
  }
  return Readable.from(generate(), { objectMode: false });
}

const BLOCK = 512;

function parseNumber(field: Buffer): number {
  if (field.length > 0 && ((field[0] as number) & 0x80) !== 0) {
    // GNU base-256: big-endian, the top bit of the first byte is the marker.
    let n = (field[0] as number) & 0x7f;
    for (let i = 1; i < field.length; i++) n = n * 256 + (field[i] as number);
    return n;
  }
  const s = field.toString("latin1").replace(/\0.*$/s, "").trim();
  return s === "" ? 0 : Number.parseInt(s, 8);
}

function cString(field: Buffer): string {
  const z = field.indexOf(0);
  return (z < 0 ? field : field.subarray(0, z)).toString("utf8");
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

const XATTR_PREFIX = "SCHILY.xattr.";

/** The `path` and the extended attributes (`SCHILY.xattr.NAME`, values as raw bytes) of a PAX record set. */
function parsePax(data: Buffer): { path: string | undefined; xattrs: Map<string, Buffer> } {
  let rest = data;
  let path: string | undefined;
  const xattrs = new Map<string, Buffer>();
  while (rest.length > 0) {
    const sp = rest.indexOf(0x20);
    if (sp < 0) break;
    const len = Number.parseInt(rest.subarray(0, sp).toString("latin1"), 10);
    if (!len || len > rest.length) break;
    const rec = rest.subarray(sp + 1, len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq > 0) {
      const key = rec.subarray(0, eq).toString("utf8");
      if (key === "path") path = rec.subarray(eq + 1).toString("utf8");
      else if (key.startsWith(XATTR_PREFIX)) xattrs.set(key.slice(XATTR_PREFIX.length), Buffer.from(rec.subarray(eq + 1)));
    }
    rest = rest.subarray(len);
  }
  return { path, xattrs };
}

/** What a {@link TarSplitRecorder} learned about the tar it saw. */
export interface TarSplitSummary {
  /** Bytes of the whole tar stream. */
  size: number;
}

/**
 * A pass-through stream that records the tar flowing through it as tar-split entries, written
 * gzip-compressed to `out` (as containers/storage does while it applies a layer): every header
 * block (with the PAX and GNU long-name records before it) and every padding as a segment, every
 * regular file's content as a file entry with its CRC-64, and the end of the archive (and whatever
 * follows it) as a final segment. Regular files' bytes must then be stored under their names in the
 * layer directory, which the extractor downstream does.
 */
export class TarSplitRecorder extends Transform {
  private readonly gzip = createGzip({ level: zlibConstants.Z_BEST_SPEED });
  private position = 0;
  /** Raw bytes not yet emitted as a segment. */
  private pending: Buffer[] = [];
  private pendingSize = 0;
  /** Bytes of the current block being assembled. */
  private block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  /** Bytes left of the current entry's data (file content or meta record). */
  private dataLeft = 0;
  /** Padding bytes left after the current entry's data. */
  private padLeft = 0;
  /** The data is file content (recorded as a file entry) rather than raw meta bytes. */
  private inFile = false;
  private fileName = "";
  private fileSize = 0;
  private crc = new Crc64();
  /** A PAX or GNU long-name record being collected. */
  private meta: { kind: "pax" | "longname" | "other"; chunks: Buffer[] } | undefined;
  private nextName: string | undefined;
  private nextXattrs: Map<string, Buffer> | undefined;
  /**
   * The extended attributes of the entries seen so far, by entry name, read from their PAX
   * records byte for byte (a consumer downstream sees an entry only after this stream has).
   */
  readonly xattrs = new Map<string, Map<string, Buffer>>();
  private ended = false;
  private total = 0;
  private readonly done: Promise<void>;

  constructor(out: NodeJS.WritableStream) {
    super();
    this.gzip.pipe(out);
    this.done = new Promise((resolve, reject) => {
      (out as unknown as NodeJS.EventEmitter).once("finish", resolve);
      (out as unknown as NodeJS.EventEmitter).once("close", resolve);
      (out as unknown as NodeJS.EventEmitter).once("error", reject);
      this.gzip.once("error", reject);
    });
  }

  /** Resolves when the tar-split file is completely written (after this stream has finished). */
  written(): Promise<void> {
    return this.done;
  }

  /** The summary of what passed through (valid after the stream ends). */
  summary(): TarSplitSummary {
    return { size: this.total };
  }

  private emit1(e: Omit<TarSplitEntry, "position">): void {
    const entry: TarSplitEntry = { ...e, position: this.position++ } as TarSplitEntry;
    // Field order and names of Go's storage.Entry.
    const json: Record<string, unknown> = { type: entry.type };
    if (entry.name) json.name = entry.name;
    if (entry.size) json.size = entry.size;
    json.payload = entry.payload;
    json.position = entry.position;
    this.gzip.write(`${JSON.stringify(json)}\n`);
  }

  private flushSegment(): void {
    if (this.pendingSize === 0) return;
    this.emit1({ type: SEGMENT_TYPE, payload: Buffer.concat(this.pending, this.pendingSize).toString("base64") });
    this.pending = [];
    this.pendingSize = 0;
  }

  private raw(b: Buffer): void {
    if (b.length === 0) return;
    this.pending.push(Buffer.from(b));
    this.pendingSize += b.length;
    // Long runs of raw bytes (padding after the end of the archive) go out in 1 MiB segments, as tar-split does.
    if (this.pendingSize >= 1024 * 1024) this.flushSegment();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.total += chunk.length;
      this.consume(chunk);
      cb(null, chunk);
    } catch (err) {
      cb(err as Error);
    }
  }

  private consume(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.ended) {
        this.raw(chunk.subarray(off));
        return;
      }
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, chunk.length - off);
        const part = chunk.subarray(off, off + n);
        if (this.inFile) this.crc.update(part);
        else if (this.meta) this.meta.chunks.push(Buffer.from(part));
        if (!this.inFile) this.raw(part);
        this.dataLeft -= n;
        off += n;
        if (this.dataLeft === 0) this.endData();
        continue;
      }
      if (this.padLeft > 0) {
        const n = Math.min(this.padLeft, chunk.length - off);
        this.raw(chunk.subarray(off, off + n));
        this.padLeft -= n;
        off += n;
        continue;
      }
      const n = Math.min(BLOCK - this.blockFill, chunk.length - off);
      chunk.copy(this.block, this.blockFill, off, off + n);
      this.blockFill += n;
      off += n;
      if (this.blockFill === BLOCK) {
        this.blockFill = 0;
        this.header(this.block);
      }
    }
  }

  private endData(): void {
    if (this.inFile) {
      this.emit1({ type: FILE_TYPE, name: this.fileName, size: this.fileSize, payload: this.crc.sum().toString("base64") });
      this.inFile = false;
    } else if (this.meta) {
      const data = Buffer.concat(this.meta.chunks);
      if (this.meta.kind === "pax") {
        const pax = parsePax(data);
        this.nextName = pax.path ?? this.nextName;
        if (pax.xattrs.size > 0) this.nextXattrs = pax.xattrs;
      }
      else if (this.meta.kind === "longname") this.nextName = cString(data);
      this.meta = undefined;
    }
  }

  private header(b: Buffer): void {
    this.raw(b);
    if (isZeroBlock(b)) {
      // The end of the archive: this block, the next and everything after are one raw tail.
      this.ended = true;
      return;
    }
    const type = String.fromCharCode(b[156] as number);
    const size = parseNumber(b.subarray(124, 136));
    this.padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type === "x" || type === "g" || type === "L" || type === "K") {
      this.meta = { kind: type === "x" ? "pax" : type === "L" ? "longname" : "other", chunks: [] };
      if (type === "g") this.meta.kind = "other";
      this.dataLeft = size;
      if (size === 0) this.endData();
      return;
    }
    let name = cString(b.subarray(0, 100));
    const magic = b.subarray(257, 263).toString("latin1");
    if (magic === "ustar\0" && b[345] !== 0) name = `${cString(b.subarray(345, 500))}/${name}`;
    if (this.nextName !== undefined) name = this.nextName;
    this.nextName = undefined;
    if (this.nextXattrs !== undefined) this.xattrs.set(name, this.nextXattrs);
    this.nextXattrs = undefined;
    const regular = type === "0" || type === "\0" || type === "7";
    if (regular && size > 0) {
      // The header (and what came before it) is a segment; the content is a file entry.
      this.flushSegment();
      this.inFile = true;
      this.fileName = name;
      this.fileSize = size;
      this.crc = new Crc64();
      this.dataLeft = size;
      return;
    }
    this.flushSegment();
    this.emit1({ type: FILE_TYPE, name, payload: null });
    // Any data of a non-regular entry stays raw: it is reproduced from the segment.
    this.dataLeft = size;
    if (size === 0) this.padLeft = 0;
  }

  override _flush(cb: TransformCallback): void {
    if (this.dataLeft > 0 || this.blockFill > 0) {
      cb(new AirlockError("ERR_INVALID_LAYOUT", "the layer's tar ends in the middle of an entry: it is truncated"));
      return;
    }
    this.flushSegment();
    this.gzip.end();
    cb();
  }
}
