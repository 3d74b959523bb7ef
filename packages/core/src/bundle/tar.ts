/**
 * The tar codec of bundles: POSIX ustar headers, with a pax extended header only where ustar
 * cannot say it (a path longer than ustar's name/prefix fields, a size of 8 GiB or more).
 *
 * Written by hand rather than with tar-stream because a bundle is written by positional writes
 * into a planned layout (every header's offset is computed before a byte is written) and read
 * by seeking from header to header — both need the exact bytes of one header, which a streaming
 * packer/extractor does not expose.
 * @see https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06
 */
import { AirlockError } from "../errors.js";

/** The size of a tar block: headers are one block, data is padded to a whole number of blocks. */
export const BLOCK_SIZE = 512;

/** The end-of-archive marker: two zero blocks. */
export const END_OF_ARCHIVE_SIZE = 2 * BLOCK_SIZE;

/** The largest size ustar's 11-digit octal size field holds (8 GiB − 1). */
export const USTAR_MAX_SIZE = 0o77777777777;

/** Tar entry types airlock distinguishes (typeflag). */
export const TypeFlag = {
  File: "0",
  OldFile: "\0",
  Directory: "5",
  PaxExtended: "x",
  PaxGlobal: "g",
  GnuLongName: "L",
  /** GNU tar's long link target of the next entry (`././@LongLink`, as "L" is its long name). */
  GnuLongLink: "K",
} as const;

/** Rounds `size` up to a whole number of tar blocks. */
export function paddedSize(size: number): number {
  return Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE;
}

/** What {@link encodeHeader} needs to describe a regular file entry. */
export interface HeaderFields {
  /** The entry's path inside the archive (relative, `/`-separated). */
  path: string;
  /** Size of the entry's data in bytes. */
  size: number;
  /** Modification time in seconds since the epoch. */
  mtime: number;
  /** Permission bits (default 0o644). */
  mode?: number;
}

/**
 * Encodes the header of a regular file entry: one ustar block, preceded by a pax extended header
 * (its own header block and padded records) when the path or size does not fit ustar. The
 * returned bytes are exactly what precedes the entry's data in the archive.
 */
export function encodeHeader(fields: HeaderFields): Buffer {
  const pax: [string, string][] = [];
  let name = fields.path;
  let prefix = "";
  if (!isAscii(fields.path) || Buffer.byteLength(fields.path) > 100) {
    const split = splitUstarPath(fields.path);
    if (split) {
      [prefix, name] = split;
    } else {
      pax.push(["path", fields.path]);
      name = asciiTruncate(fields.path.slice(fields.path.lastIndexOf("/") + 1), 100);
    }
  }
  let size = fields.size;
  if (!Number.isSafeInteger(size) || size < 0) throw new AirlockError("ERR_INVALID_ARGUMENT", `tar entry ${fields.path}: invalid size ${size}`);
  if (size > USTAR_MAX_SIZE) {
    pax.push(["size", String(size)]);
    size = 0;
  }
  const main = ustarBlock({ name, prefix, size, mtime: fields.mtime, mode: fields.mode ?? 0o644, typeflag: TypeFlag.File });
  if (pax.length === 0) return main;
  const records = Buffer.from(pax.map(([k, v]) => paxRecord(k, v)).join(""), "utf8");
  const paxName = asciiTruncate(`PaxHeaders.0/${fields.path.slice(fields.path.lastIndexOf("/") + 1)}`, 100);
  const paxHeader = ustarBlock({ name: paxName, prefix: "", size: records.length, mtime: fields.mtime, mode: 0o644, typeflag: TypeFlag.PaxExtended });
  const out = Buffer.alloc(BLOCK_SIZE + paddedSize(records.length) + BLOCK_SIZE);
  paxHeader.copy(out, 0);
  records.copy(out, BLOCK_SIZE);
  main.copy(out, out.length - BLOCK_SIZE);
  return out;
}

/** The number of bytes {@link encodeHeader} returns for `fields`, without building them. */
export function headerSize(fields: HeaderFields): number {
  return encodeHeader(fields).length;
}

function isAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

function asciiTruncate(s: string, max: number): string {
  return s.replace(/[^\x20-\x7e]/g, "_").slice(0, max);
}

/** Splits a path into ustar's prefix (≤155) and name (≤100) at a slash, if possible. */
function splitUstarPath(path: string): [string, string] | undefined {
  if (!isAscii(path) || path.length > 256) return undefined;
  for (let i = path.indexOf("/"); i >= 0; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (prefix.length <= 155 && name.length > 0 && name.length <= 100) return [prefix, name];
  }
  return undefined;
}

/** A pax record `LEN key=value\n`, where LEN counts the whole record including its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length + bodyLen !== len) len = bodyLen + String(len).length;
  return `${len}${body}`;
}

interface UstarFields {
  name: string;
  prefix: string;
  size: number;
  mtime: number;
  mode: number;
  typeflag: string;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.write(f.name, 0, 100, "ascii");
  writeOctal(b, 100, 8, f.mode);
  writeOctal(b, 108, 8, 0); // uid
  writeOctal(b, 116, 8, 0); // gid
  writeOctal(b, 124, 12, f.size);
  writeOctal(b, 136, 12, Math.max(0, Math.floor(f.mtime)));
  b.write(f.typeflag, 156, 1, "ascii");
  b.write("ustar\u000000", 257, 8, "ascii");
  b.write(f.prefix, 345, 155, "ascii");
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += b[i] as number;
  b.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, 8, "ascii");
  return b;
}

function writeOctal(b: Buffer, offset: number, length: number, value: number): void {
  b.write(`${value.toString(8).padStart(length - 1, "0")}\u0000`, offset, length, "ascii");
}

/** One decoded header block (before pax records are applied). */
export interface RawHeader {
  /** The path: ustar prefix and name joined. */
  path: string;
  /** The size field. */
  size: number;
  /** The typeflag character. */
  typeflag: string;
  /** The modification time in seconds. */
  mtime: number;
}

/** Reports whether a block is all zeros (part of the end-of-archive marker). */
export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Decodes one header block. Throws ERR_INVALID_LAYOUT when the block's checksum does not match
 * (a damaged header). Call {@link isZeroBlock} first: a zero block is not a header.
 */
export function decodeHeader(block: Uint8Array, where = "tar header"): RawHeader {
  if (block.length < BLOCK_SIZE) throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: truncated (${block.length} of ${BLOCK_SIZE} bytes)`);
  const b = Buffer.from(block.buffer, block.byteOffset, BLOCK_SIZE);
  const stored = parseNumber(b, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : (b[i] as number);
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new AirlockError("ERR_INVALID_LAYOUT", `${where}: damaged (checksum ${stored} does not match ${unsigned})`);
  }
  const name = cString(b, 0, 100);
  const magic = b.toString("ascii", 257, 263);
  const prefix = magic.startsWith("ustar") ? cString(b, 345, 155) : "";
  const tf = String.fromCharCode(b[156] as number);
  return { path: prefix ? `${prefix}/${name}` : name, size: parseNumber(b, 124, 12), typeflag: tf, mtime: parseNumber(b, 136, 12) };
}

function cString(b: Buffer, offset: number, length: number): string {
  const end = b.indexOf(0, offset);
  return b.toString("utf8", offset, end < 0 || end > offset + length ? offset + length : end);
}

/** Parses an octal field, or a GNU base-256 field (high bit of the first byte set). */
function parseNumber(b: Buffer, offset: number, length: number): number {
  if (((b[offset] as number) & 0x80) !== 0) {
    let v = (b[offset] as number) & 0x7f;
    for (let i = offset + 1; i < offset + length; i++) v = v * 256 + (b[i] as number);
    return v;
  }
  const s = b.toString("ascii", offset, offset + length).replace(/[\0 ]+.*$/s, "").trim();
  return s === "" ? 0 : Number.parseInt(s, 8);
}

/** Parses pax extended header records (`LEN key=value\n`…) into a map. */
export function parsePaxRecords(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let i = 0;
  while (i < b.length) {
    const sp = b.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number.parseInt(b.toString("ascii", i, sp), 10);
    if (!Number.isInteger(len) || len <= 0 || i + len > b.length) break;
    const rec = b.toString("utf8", sp + 1, i + len - 1);
    const eq = rec.indexOf("=");
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}
