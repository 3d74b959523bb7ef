/**
 * A lean HTTP/1.1 client for the requests without a body — blob and manifest GETs, HEADs, the
 * ping, tokens — on Node. Blob downloads are where the client's cost per byte decides the speed:
 * Node hands a socket's data to JavaScript in reads of at most 64 KiB, each in a freshly allocated
 * buffer, and undici then copies every read into its WebAssembly parser. On a fast link (a registry
 * on the same host or LAN) that, not the network, bounds a download: here undici took ~1.0 s for
 * two 200 MiB blobs that curl fetched in 0.33 s, and an export of the bench corpus 2.5 s against
 * 2.0 s with this client. A run that only reads from registries (an import with everything
 * present) also never loads undici (~40 ms of start-up); lookaside signatures still go through it.
 *
 * This client reads the socket with Node's `onread` into large slabs (one read takes whatever the
 * kernel holds, up to the slab's free space; no allocation per read) and hands body bytes on as
 * views, with no copy. Slabs are reused: a consumer that is done with a chunk (written and hashed)
 * gives it back with {@link releaseBulkChunk}, and a slab whose every chunk came back takes later
 * reads — the memory stays mapped and warm, where fresh buffers cost a page fault per 4 KiB and
 * keep the garbage collector busy. It parses only what a GET or HEAD needs — the status line, the
 * headers, and a body framed by Content-Length, chunked transfer coding or the end of the
 * connection — and keeps finished connections for reuse. Everything else (authentication,
 * redirects, retries, error mapping) stays with {@link RegistryConnection.send}; requests with a
 * body (uploads) go through undici, and so does everything on Bun and Deno. `AIRLOCK_HTTP_BULK=0`
 * turns it off.
 * @see https://www.rfc-editor.org/rfc/rfc9112 (HTTP/1.1 message syntax)
 */
import * as net from "node:net";
import { Readable } from "node:stream";
import type * as Tls from "node:tls";
import { tls } from "../builtins.js";
import { AirlockError } from "../errors.js";

/** A response of {@link BulkPool.request}: status, headers (lower-case names; repeated ones as arrays) and the body. */
export interface BulkResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: BulkBody;
}

/** The methods the bulk client sends: requests without a body. */
export type BulkMethod = "GET" | "HEAD";

/** Options of {@link BulkPool}. */
export interface BulkPoolOptions {
  /** TLS: the secure context (CAs, client certificate), when not the system default. */
  secureContext?: Tls.SecureContext | undefined;
  /** TLS: verify the server's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** Establishing a connection, in ms (default 30 s). */
  connectMs?: number;
  /** Waiting for the response head once the request is sent, in ms (default 5 min). */
  headersMs?: number;
  /** Longest pause between two pieces of the body while it is being read, in ms (default 2 min). */
  bodyMs?: number;
  /** How long an idle connection is kept for reuse, in ms (default 4 s, below Go's and nginx's idle timeouts). */
  idleMs?: number;
}

/** Whether the bulk client can run here: Node's `onread` (not Bun's or Deno's emulation), unless `AIRLOCK_HTTP_BULK=0`. */
export function bulkSupported(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.AIRLOCK_HTTP_BULK === "0") return false;
  return typeof process.versions.bun !== "string" && !("Deno" in globalThis);
}

/** Bytes of one slab the socket reads into; a new one is taken when less than {@link MIN_READ} is left. */
const SLAB_SIZE = 256 * 1024;
const MIN_READ = 32 * 1024;
/** Largest response head (status line and headers) accepted. */
const MAX_HEAD = 64 * 1024;
/** Idle connections kept per origin. */
const MAX_IDLE = 8;

/** A slab's state: views of it handed out and not yet released, and whether reads still land in it. */
interface SlabState {
  slab: Buffer;
  refs: number;
  retired: boolean;
}

/** Slabs whose every handed-out view was released, ready for the next read (at most {@link MAX_FREE_SLABS}). */
const freeSlabs: Buffer[] = [];
const MAX_FREE_SLABS = 32;
const slabOf = new WeakMap<ArrayBufferLike, SlabState>();
/** The body chunks handed out, each counted once in its slab's refs until released. */
const handedOut = new WeakMap<Buffer, SlabState>();

function takeSlab(): Buffer {
  const slab = freeSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_SIZE);
  slabOf.set(slab.buffer, { slab, refs: 0, retired: false });
  return slab;
}

function recycle(st: SlabState): void {
  if (st.retired && st.refs === 0 && freeSlabs.length < MAX_FREE_SLABS) {
    slabOf.delete(st.slab.buffer);
    freeSlabs.push(st.slab);
  }
}

/**
 * Counts a view of a slab that is kept beyond the read it arrived in without being handed out
 * yet: Node asks for the next read's buffer as soon as a read's callback returns, which may retire
 * and recycle the slab. Returns what {@link unhold} takes.
 */
function hold(view: Buffer): SlabState | undefined {
  const st = slabOf.get(view.buffer);
  if (st) st.refs++;
  return st;
}

/** Ends a {@link hold}. */
function unhold(st: SlabState | undefined): void {
  if (!st) return;
  st.refs--;
  recycle(st);
}

/**
 * Gives a body chunk of a {@link BulkBody} back once its bytes are no longer needed (written and
 * hashed): its memory may then take the next read. Only the exact chunk object the body emitted
 * counts, once; anything else (a copy, a view of it, a second call) is ignored, and a chunk never
 * released is simply garbage-collected. A caller MUST NOT touch the chunk afterwards.
 */
export function releaseBulkChunk(chunk: Uint8Array): void {
  const st = handedOut.get(chunk as Buffer);
  if (!st) return;
  handedOut.delete(chunk as Buffer);
  unhold(st);
}

/** An error with a code the retry logic knows (`isRetryableNetworkError`, `connectionError`). */
function codedError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * Keep-alive connections for bulk GETs, by origin. One per {@link RegistryConnection}; every
 * connection it opens uses the same TLS settings, as undici's Agent does.
 */
export class BulkPool {
  private readonly options: BulkPoolOptions;
  private readonly idle = new Map<string, BulkSocket[]>();
  private closed = false;

  constructor(options: BulkPoolOptions = {}) {
    this.options = options;
  }

  /**
   * Sends `METHOD url` (GET by default) with `headers` and resolves with the response once its
   * head arrived; the caller MUST read, dump or destroy the body. A kept connection that turns out
   * to be closed by the server before answering is replaced by a fresh one, once.
   */
  async request(url: URL, headers: Record<string, string>, signal?: AbortSignal, method: BulkMethod = "GET"): Promise<BulkResponse> {
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot ${method} ${url.protocol} URLs`);
    const head = requestHead(method, url, headers);
    const key = url.origin;
    for (let reused = this.takeIdle(key); ; reused = undefined) {
      signal?.throwIfAborted();
      const sock = reused ?? (await this.connect(url, signal));
      try {
        return await sock.exchange(head, method === "HEAD", signal, (s) => this.release(key, s));
      } catch (err) {
        // A kept connection the server closed meanwhile fails before any byte of an answer: retry
        // on a fresh one. Anything else is the caller's to handle.
        if (reused && (err as { staleConnection?: boolean }).staleConnection && !signal?.aborted) continue;
        throw err;
      }
    }
  }

  /** Closes every idle connection; later requests open new ones. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const s of list) s.socket.destroy();
    this.idle.clear();
  }

  private takeIdle(key: string): BulkSocket | undefined {
    const list = this.idle.get(key);
    for (let s = list?.pop(); s; s = list?.pop()) {
      if (!s.socket.destroyed) {
        s.socket.setTimeout(0);
        s.socket.ref();
        return s;
      }
    }
    return undefined;
  }

  private release(key: string, s: BulkSocket): void {
    const list = this.idle.get(key) ?? [];
    if (this.closed || list.length >= MAX_IDLE || s.socket.destroyed) {
      s.socket.destroy();
      return;
    }
    s.socket.unref();
    s.socket.resume(); // so that a server closing it (or sending anything) is noticed
    s.socket.setTimeout(this.options.idleMs ?? 4000); // the socket's "timeout" handler closes it
    list.push(s);
    this.idle.set(key, list);
  }

  private connect(url: URL, signal?: AbortSignal): Promise<BulkSocket> {
    const o = this.options;
    return new Promise((resolve, reject) => {
      const sock = new BulkSocket(o);
      const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
      const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
      const onread = { buffer: () => sock.nextBuffer(), callback: (n: number, buf: Uint8Array) => sock.deliver(n, buf) };
      let socket: net.Socket;
      if (url.protocol === "https:") {
        const servername = net.isIP(host) ? undefined : host;
        // tls.connect takes `onread` as net.connect does (Node ≥ 12.19), though @types/node omits it.
        const t: Tls.ConnectionOptions & { onread: typeof onread } = { host, port, onread, ALPNProtocols: ["http/1.1"], rejectUnauthorized: o.rejectUnauthorized ?? true };
        if (servername) t.servername = servername;
        if (o.secureContext) t.secureContext = o.secureContext;
        socket = tls().connect(t);
      } else {
        socket = net.connect({ host, port, onread });
      }
      sock.attach(socket);
      const done = (err?: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        socket.off("error", done);
        socket.off(url.protocol === "https:" ? "secureConnect" : "connect", onConnect);
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(sock);
      };
      const onConnect = () => {
        socket.setNoDelay(true);
        done();
      };
      const onAbort = () => done(signal?.reason ?? codedError("ABORT_ERR", "aborted"));
      const timer = setTimeout(() => done(codedError("UND_ERR_CONNECT_TIMEOUT", `connecting to ${url.host} timed out`)), o.connectMs ?? 30_000);
      signal?.addEventListener("abort", onAbort, { once: true });
      socket.once(url.protocol === "https:" ? "secureConnect" : "connect", onConnect);
      socket.once("error", done);
    });
  }
}

/** The request line and headers of `METHOD url`. */
function requestHead(method: BulkMethod, url: URL, headers: Record<string, string>): Buffer {
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new AirlockError("ERR_INVALID_ARGUMENT", `header ${JSON.stringify(name)} holds a line break`);
    if (name.toLowerCase() === "host") continue;
    head += `${name}: ${value}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, "latin1");
}

type Framing = { kind: "length"; left: number } | { kind: "chunked" } | { kind: "close" };

/**
 * One connection: reads land in slabs and go to the exchange in progress (the response head, then
 * the body). Between exchanges nothing may arrive; anything that does (or the server closing)
 * ends the connection.
 */
class BulkSocket {
  socket!: net.Socket;
  private readonly options: BulkPoolOptions;
  private slab = takeSlab();
  private used = 0;
  /** Receives each read while an exchange is in progress; returns false to pause the socket. */
  private sink: ((chunk: Buffer) => boolean) | undefined;
  /** Hears the end of the connection (and errors) while an exchange is in progress. */
  private onEnd: ((err?: Error) => void) | undefined;

  constructor(options: BulkPoolOptions) {
    this.options = options;
  }

  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.on("end", () => this.ended());
    socket.on("close", () => this.ended());
    socket.on("error", (err) => this.ended(err));
    socket.on("timeout", () => {
      // In an exchange: the server went silent mid-body. Idle in the pool: kept long enough.
      if (this.onEnd) socket.destroy(codedError("UND_ERR_BODY_TIMEOUT", `no data from the server for ${(this.options.bodyMs ?? 120_000) / 1000} s`));
      else socket.destroy();
    });
  }

  /** The memory the next read goes into: the current slab's free part, or a fresh slab. */
  nextBuffer(): Buffer {
    if (this.slab.length - this.used < MIN_READ) {
      // The old slab stays alive as long as views of it are being consumed.
      this.retire();
      this.slab = takeSlab();
      this.used = 0;
    }
    return this.slab.subarray(this.used);
  }

  /** A read of `n` bytes into the buffer {@link nextBuffer} gave. */
  deliver(n: number, buf: Uint8Array): boolean {
    const chunk = Buffer.from(buf.buffer, buf.byteOffset, n); // a view, not a copy
    this.used += n;
    if (!this.sink) {
      // Bytes nobody asked for: the connection is out of step, drop it.
      this.socket.destroy();
      return false;
    }
    return this.sink(chunk);
  }

  /** No more reads land in the current slab: it goes back to the pool once its views are released. */
  retire(): void {
    const st = slabOf.get(this.slab.buffer);
    if (st && !st.retired) {
      st.retired = true;
      recycle(st);
    }
  }

  private ended(err?: Error): void {
    const f = this.onEnd;
    if (f) f(err);
  }

  /** Sends a request head and resolves with the response; `release` gets the connection back once the body is read. */
  exchange(head: Buffer, headOnly: boolean, signal: AbortSignal | undefined, release: (s: BulkSocket) => void): Promise<BulkResponse> {
    const socket = this.socket;
    return new Promise((resolve, reject) => {
      if (socket.destroyed) {
        reject(Object.assign(codedError("ECONNRESET", "the connection was closed"), { staleConnection: true }));
        return;
      }
      let received = 0;
      /** The start of a response head that has not ended yet (a copy). */
      let pending: Buffer | undefined;
      let body: BulkBody | undefined;
      let framing: Framing | undefined;
      let reusable = true;
      let chunked: ChunkedDecoder | undefined;
      let finished = false;
      const headersTimer = setTimeout(() => fail(codedError("UND_ERR_HEADERS_TIMEOUT", "the server sent no response head in time")), this.options.headersMs ?? 300_000);

      const cleanup = () => {
        clearTimeout(headersTimer);
        signal?.removeEventListener("abort", onAbort);
        this.sink = undefined;
        this.onEnd = undefined;
      };
      // Before the head is complete: the promise fails; after: the body does.
      const fail = (err: Error) => {
        if (finished) return;
        finished = true;
        cleanup();
        socket.destroy();
        if (body) body.destroy(err);
        else reject(err);
      };
      const onAbort = () => fail((signal?.reason as Error) ?? codedError("ABORT_ERR", "aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });

      const finish = () => {
        if (finished) return;
        finished = true;
        cleanup();
        socket.setTimeout(0);
        const b = body as BulkBody;
        b.complete = true; // from now on the connection may serve another request
        b.push(null);
        if (reusable) release(this);
        else socket.destroy();
      };

      // Hands body bytes on; returns false when the reader wants no more for now.
      const bodyBytes = (chunk: Buffer): boolean => {
        const f = framing as Framing;
        const b = body as BulkBody;
        if (f.kind === "close") return b.push(chunk);
        if (f.kind === "chunked") {
          const d = chunked as ChunkedDecoder;
          let more = true;
          try {
            for (const piece of d.feed(chunk)) more = b.push(piece) && more;
          } catch (err) {
            fail(err as Error);
            return false;
          }
          if (d.done) {
            if (d.extra) reusable = false;
            finish();
          }
          return more;
        }
        const take = Math.min(chunk.length, f.left);
        f.left -= take;
        if (take < chunk.length) reusable = false; // bytes past the body: out of step
        const more = take > 0 ? b.push(take === chunk.length ? chunk : chunk.subarray(0, take)) : true;
        if (f.left === 0) finish();
        return more;
      };

      const onHead = (all: Buffer, end: number): boolean => {
        let parsed: ParsedHead;
        try {
          parsed = parseHead(all.subarray(0, end).toString("latin1"));
        } catch (err) {
          fail(err as Error);
          return false;
        }
        if (parsed.statusCode >= 100 && parsed.statusCode < 200) {
          // An interim answer (100 Continue, 103 Early Hints): the real one follows, within the
          // same headers timeout.
          const rest = all.subarray(end + 4);
          return rest.length ? (this.sink as (chunk: Buffer) => boolean)(rest) : true;
        }
        clearTimeout(headersTimer);
        const h = parsed.headers;
        const te = String(h["transfer-encoding"] ?? "").toLowerCase();
        const conn = String(h.connection ?? "").toLowerCase();
        if (parsed.version !== "1.1" || /\bclose\b/.test(conn)) reusable = false;
        // A HEAD's answer describes a body it does not carry (RFC 9110 §9.3.2).
        const noBody = headOnly || parsed.statusCode === 204 || parsed.statusCode === 304;
        if (noBody) framing = { kind: "length", left: 0 };
        else if (te) {
          if (te.trim() !== "chunked") {
            fail(new AirlockError("ERR_REGISTRY", `the server answered with Transfer-Encoding ${JSON.stringify(te)}, which airlock cannot read`));
            return false;
          }
          framing = { kind: "chunked" };
          chunked = new ChunkedDecoder();
        } else if (h["content-length"] !== undefined) {
          const len = Array.isArray(h["content-length"]) ? h["content-length"] : [h["content-length"]];
          const n = Number(len[0]);
          if (!/^\d+$/.test(len[0] ?? "") || len.some((v) => v !== len[0]) || !Number.isSafeInteger(n)) {
            fail(new AirlockError("ERR_REGISTRY", `the server answered with an invalid Content-Length ${JSON.stringify(h["content-length"])}`));
            return false;
          }
          framing = { kind: "length", left: n };
        } else {
          framing = { kind: "close" };
          reusable = false;
        }
        body = new BulkBody(socket, this.options.bodyMs ?? 120_000);
        this.sink = bodyBytes;
        socket.setTimeout(this.options.bodyMs ?? 120_000);
        resolve({ statusCode: parsed.statusCode, headers: h, body });
        const rest = all.subarray(end + 4);
        if (framing.kind === "length" && framing.left === 0) {
          if (rest.length) reusable = false; // bytes where no body belongs: out of step
          finish();
          return true;
        }
        if (rest.length === 0) return true;
        // The body bytes that came with the head are handed on at the body's first read: a fault in
        // them (a malformed chunk) then fails a body its reader listens to, not one whose 'error'
        // event would fire before the caller got the response. The socket is paused meanwhile, but
        // over TLS the records of a read already taken keep coming (and the end with them): those
        // queue behind, and an end waits for them. Every queued view is held: its slab must not
        // take other reads before it is handed on.
        const queue: { chunk: Buffer; held: SlabState | undefined }[] = [{ chunk: rest, held: hold(rest) }];
        this.sink = (chunk: Buffer): boolean => {
          queue.push({ chunk, held: hold(chunk) });
          return false;
        };
        this.onEnd = (err?: Error) => {
          endedMeanwhile = { err };
          // The reader destroyed the body before reading it: nothing will read the queue.
          if (body?.destroyed) onEnd(err);
        };
        body.deferFirst(() => {
          let more = true;
          for (const { chunk, held } of queue.splice(0)) {
            try {
              if (finished) {
                // Bytes after the end of the body: the connection is out of step.
                if (reusable) socket.destroy();
                reusable = false;
              } else more = bodyBytes(chunk) && more;
            } finally {
              unhold(held);
            }
          }
          if (!finished) {
            this.sink = bodyBytes;
            this.onEnd = onEnd;
            if (endedMeanwhile) {
              onEnd(endedMeanwhile.err);
              return false;
            }
          }
          return more;
        });
        return false;
      };

      this.sink = (chunk: Buffer): boolean => {
        received += chunk.length;
        const all = pending ? Buffer.concat([pending, chunk]) : chunk;
        const end = all.indexOf("\r\n\r\n", 0, "latin1");
        if ((end < 0 ? all.length : end) > MAX_HEAD) {
          fail(new AirlockError("ERR_REGISTRY", `the server's response head is larger than ${MAX_HEAD} bytes`));
          return false;
        }
        if (end < 0) {
          // Kept as a copy: the slab `chunk` lies in takes other reads once its body views come back.
          pending = pending ? all : Buffer.from(all);
          return true;
        }
        pending = undefined;
        return onHead(all, end);
      };
      /** The connection ended while the first body bytes waited (see onHead). */
      let endedMeanwhile: { err: Error | undefined } | undefined;
      const onEnd = (err?: Error) => {
        if (finished) return;
        if (body && framing?.kind === "close" && !err) {
          finished = true;
          cleanup();
          body.push(null);
          socket.destroy();
          return;
        }
        const what = body ? `the connection closed in the middle of the response body` : `the connection closed before a response arrived`;
        const e = codedError((err as { code?: string } | undefined)?.code ?? "ECONNRESET", err ? `${what}: ${err.message}` : what);
        if (!body && received === 0) (e as { staleConnection?: boolean }).staleConnection = true;
        fail(e);
      };
      this.onEnd = onEnd;

      socket.write(head);
      socket.resume();
    });
  }
}

interface ParsedHead {
  version: string;
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
}

/** Parses a response head (status line and header lines, without the blank line). */
function parseHead(text: string): ParsedHead {
  const lines = text.split("\r\n");
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!m) throw new AirlockError("ERR_REGISTRY", `the server's answer is not HTTP/1.x: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const headers: Record<string, string | string[] | undefined> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const c = line.indexOf(":");
    if (c <= 0 || /^[ \t]/.test(line)) throw new AirlockError("ERR_REGISTRY", `the server sent a malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, c).trim().toLowerCase();
    const value = line.slice(c + 1).trim();
    const prev = headers[name];
    headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return { version: m[1] as string, statusCode: Number(m[2]), headers };
}

/**
 * Decodes the chunked transfer coding (RFC 9112 §7.1): chunk sizes in hex with optional
 * extensions, data, CRLF, and a last zero-size chunk with optional trailers.
 */
export class ChunkedDecoder {
  /** The last chunk and the trailers were read. */
  done = false;
  /** Bytes arrived after the end of the message. */
  extra = false;
  private state: "size" | "data" | "data-crlf" | "trailer" = "size";
  private line = "";
  private left = 0;

  /** Returns the data in `chunk` (views, no copy); throws on a malformed stream. */
  feed(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.done) {
        this.extra = true;
        break;
      }
      if (this.state === "data") {
        const n = Math.min(this.left, chunk.length - i);
        out.push(chunk.subarray(i, i + n));
        i += n;
        this.left -= n;
        if (this.left === 0) this.state = "data-crlf";
        continue;
      }
      // A line: the size, the CRLF after data, or a trailer.
      const nl = chunk.indexOf(10, i);
      const end = nl < 0 ? chunk.length : nl + 1;
      this.line += chunk.toString("latin1", i, end);
      i = end;
      if (this.line.length > 8192) throw new AirlockError("ERR_REGISTRY", "a chunked response has a line longer than 8 KiB");
      if (nl < 0) continue;
      const line = this.line.replace(/\r?\n$/, "");
      this.line = "";
      if (this.state === "data-crlf") {
        if (line !== "") throw new AirlockError("ERR_REGISTRY", "a chunk of a chunked response is longer than its size says");
        this.state = "size";
      } else if (this.state === "size") {
        const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
        if (!m) throw new AirlockError("ERR_REGISTRY", `a chunked response has an invalid chunk size ${JSON.stringify(line.slice(0, 40))}`);
        this.left = Number.parseInt(m[1] as string, 16);
        this.state = this.left === 0 ? "trailer" : "data";
      } else if (line === "") {
        this.done = true;
      }
    }
    return out;
  }
}

/**
 * The body of a {@link BulkResponse}: a readable stream of views into the connection's slabs.
 * Reading slower than the network pauses the socket (backpressure); `destroy()` closes the
 * connection.
 */
export class BulkBody extends Readable {
  /** Every byte of the body arrived (the connection may already serve another request). */
  complete = false;
  private readonly socket: net.Socket;
  private readonly bodyMs: number;
  /** Hands on the bytes that arrived with the head; returns false when the reader wants no more for now. */
  private first: (() => boolean) | undefined;

  constructor(socket: net.Socket, bodyMs: number) {
    super({ highWaterMark: SLAB_SIZE });
    this.socket = socket;
    this.bodyMs = bodyMs;
  }

  /** Pauses the socket until the body is first read, which then calls `first` before anything else arrives. */
  deferFirst(first: () => boolean): void {
    this.first = first;
    this.socket.setTimeout(0);
    this.socket.pause();
  }

  override _read(): void {
    const first = this.first;
    if (first) {
      this.first = undefined;
      if (!first()) return;
    }
    if (!this.complete && this.socket.isPaused()) {
      this.socket.setTimeout(this.bodyMs);
      this.socket.resume();
    }
  }

  override push(chunk: Buffer | null): boolean {
    if (chunk !== null && !handedOut.has(chunk)) {
      // Counted whatever the slab's state: a counted view only delays the slab's reuse.
      const st = hold(chunk);
      if (st) handedOut.set(chunk, st);
    }
    const more = super.push(chunk);
    if (chunk !== null && !more && !this.complete) {
      // Waiting for the reader is not the server's silence: no body timeout meanwhile.
      this.socket.setTimeout(0);
      this.socket.pause();
    }
    return more;
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (!this.complete) this.socket.destroy();
    cb(err);
  }

  /** Reads and discards the body (at most `limit` bytes; past that the connection is closed instead), like undici's `dump()`. */
  async dump(options: { limit?: number } = {}): Promise<void> {
    const limit = options.limit ?? 128 * 1024;
    let n = 0;
    for await (const chunk of this) {
      n += (chunk as Buffer).length;
      if (n > limit) {
        this.destroy();
        return;
      }
    }
  }
}
