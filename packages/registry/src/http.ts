/**
 * Small HTTP helpers of the registry server: byte ranges (RFC 9110 `Range`, the spec's upload
 * `Content-Range`), bounded request bodies, listen addresses and access-log lines.
 */
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { AirlockError } from "@airlock/core";
import { RegistryError } from "./errors.js";
import type { ByteRange } from "./store/types.js";

/**
 * Reads a `Range: bytes=…` header against a blob of `size` bytes (RFC 9110 §14.1.2): a single
 * `START-END`, `START-` or `-SUFFIX` range. Returns undefined when there is no usable single range
 * (the whole blob is then served), "unsatisfiable" when the range lies outside the blob.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | "unsatisfiable" | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, a = "", b = ""] = m;
  if (a === "" && b === "") return undefined;
  if (a === "") {
    const suffix = Number(b);
    if (suffix === 0) return "unsatisfiable";
    return size === 0 ? "unsatisfiable" : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  const end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  if (!Number.isSafeInteger(start) || start >= size) return "unsatisfiable";
  if (b !== "" && Number(b) < start) return undefined;
  return { start, end };
}

/**
 * Reads an upload chunk's `Content-Range: START-END` (both inclusive, the spec's
 * `^[0-9]+-[0-9]+$`; a `bytes ` or `bytes=` prefix is tolerated). Undefined when absent;
 * BLOB_UPLOAD_INVALID (416) when malformed.
 */
export function parseContentRange(header: string | undefined): ByteRange | undefined {
  if (header === undefined || header.trim() === "") return undefined;
  const m = /^\s*(?:bytes[ =])?\s*(\d+)-(\d+)\s*$/i.exec(header);
  const start = Number(m?.[1]);
  const end = Number(m?.[2]);
  if (!m || !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) {
    throw new RegistryError(416, "BLOB_UPLOAD_INVALID", `malformed Content-Range ${JSON.stringify(header)}: expected START-END, e.g. 0-1023`);
  }
  return { start, end };
}

/**
 * Reads a request body of at most `max` bytes. A longer body is answered with 413 and
 * `tooLarge` (the error code to use).
 */
export async function readBody(req: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    throw new RegistryError(413, "SIZE_INVALID", `${what} is ${declared} bytes, more than the ${max} this registry accepts`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > max) throw new RegistryError(413, "SIZE_INVALID", `${what} is more than the ${max} bytes this registry accepts`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, n);
}

/** A parsed listen address: a host (undefined = every interface) and a port (0 = any free port). */
export interface ListenAddress {
  host: string | undefined;
  port: number;
}

/**
 * Parses `--listen`: `PORT`, `:PORT`, `HOST:PORT` or `[IPV6]:PORT`. Throws ERR_INVALID_ARGUMENT
 * naming the accepted forms.
 */
export function parseListenAddress(addr: string): ListenAddress {
  const bad = () =>
    new AirlockError("ERR_INVALID_ARGUMENT", `invalid listen address ${JSON.stringify(addr)}: use PORT, :PORT, HOST:PORT or [IPV6]:PORT, e.g. 127.0.0.1:5000`);
  let host: string | undefined;
  let port: string;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(addr);
  if (v6) {
    host = v6[1]!;
    port = v6[2]!;
    if (isIP(host) !== 6) throw bad();
  } else if (/^\d+$/.test(addr)) {
    port = addr;
  } else {
    const colon = addr.lastIndexOf(":");
    if (colon < 0) throw bad();
    host = addr.slice(0, colon) || undefined;
    port = addr.slice(colon + 1);
    if (host !== undefined && !/^[A-Za-z0-9.-]+$/.test(host)) throw bad();
  }
  const n = Number(port);
  if (!/^\d+$/.test(port) || !Number.isInteger(n) || n > 65535) throw bad();
  return { host, port: n };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** A time as the common log format writes it, in UTC: `27/Nov/2026:03:56:04 +0000`. */
export function clfDate(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
