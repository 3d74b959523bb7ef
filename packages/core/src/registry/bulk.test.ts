/**
 * The bulk HTTP/1.1 client (bulk.ts) against servers started here, whose faults are produced on
 * demand: framing (Content-Length, chunked, close), connection reuse, errors, timeouts, aborts,
 * backpressure and slab recycling; then through RegistryConnection (a cross-origin redirect) and
 * Repository.getBlob against the real docker-registry, plain and TLS.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer as createHttpServer, type Server } from "node:http";
import * as net from "node:net";
import { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type RunningRegistry, startRegistry } from "../../../../test/harness/registry.js";
import type { Digest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { type BulkBody, BulkPool, type BulkResponse, bulkSupported, releaseBulkChunk } from "./bulk.js";
import { RegistryClient } from "./client.js";
import { isRetryableNetworkError } from "./retry.js";

const SLAB = 256 * 1024;
const MiB = 1024 * 1024;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A TCP server speaking whatever its handler writes; counts connections and records request heads. */
interface RawServer {
  url(path?: string): URL;
  /** Connections accepted so far. */
  connections: number;
  /** Connections closed so far. */
  closed: number;
  /** Every request head received (without the blank line), in order. */
  heads: string[];
  close(): Promise<void>;
}

/** Called for each request head: `n` counts requests on this connection, `c` is the connection's index. */
type Handler = (sock: net.Socket, head: string, n: number, c: number) => unknown;

const servers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function rawServer(handler: Handler): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const c = srv.connections++;
    sockets.add(sock);
    sock.on("close", () => {
      sockets.delete(sock);
      srv.closed++;
    });
    sock.on("error", () => {});
    sock.setNoDelay(true);
    let buf = "";
    let n = 0;
    sock.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      for (let i = buf.indexOf("\r\n\r\n"); i >= 0; i = buf.indexOf("\r\n\r\n")) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        srv.heads.push(head);
        void handler(sock, head, n++, c);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const srv: RawServer = {
    url: (path = "/blob") => new URL(`http://127.0.0.1:${port}${path}`),
    connections: 0,
    closed: 0,
    heads: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(srv);
  return srv;
}

/** Writes `pieces` one by one with a pause between them, so that they reach the client as separate reads. */
async function writeSlowly(sock: net.Socket, pieces: (string | Buffer)[], gapMs = 3): Promise<void> {
  for (const p of pieces) {
    if (sock.destroyed) return;
    sock.write(p);
    await sleep(gapMs);
  }
}

/** Reads a body to its end, copying every chunk; also returns the chunks as emitted (views). */
async function collect(body: Readable): Promise<{ bytes: Buffer; chunks: Buffer[] }> {
  const copies: Buffer[] = [];
  const chunks: Buffer[] = [];
  // 'data' events, not an async iterator: read() may join buffered chunks into a copy.
  await new Promise<void>((resolve, reject) => {
    body.on("data", (c: Buffer) => {
      chunks.push(c);
      copies.push(Buffer.from(c));
    });
    body.once("end", resolve);
    body.once("error", reject);
  });
  return { bytes: Buffer.concat(copies), chunks };
}

/** Reads a body to its end, releasing every chunk at once; returns where each lay (empty views of it: slab and offset). */
async function drainReleasing(body: Readable, release = true): Promise<Buffer[]> {
  const slabs: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    body.on("data", (c: Buffer) => {
      slabs.push(c.subarray(0, 0));
      if (release) releaseBulkChunk(c);
    });
    body.once("end", resolve);
    body.once("error", reject);
  });
  return slabs;
}

/** The error a body fails with (fails the test when it ends cleanly). */
async function bodyError(body: Readable): Promise<Error & { code?: string }> {
  try {
    for await (const _ of body) {
      // drain
    }
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("the body ended without an error");
}

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("the promise resolved");
}

const okHead = (length: number, extra = "") => `HTTP/1.1 200 OK\r\nContent-Length: ${length}\r\n${extra}\r\n`;

/** The chunked coding of `parts` as pieces to write separately: size lines and CRLFs split in two, data split in the middle. */
function chunkedPieces(parts: Buffer[], trailers: string): (string | Buffer)[] {
  const out: (string | Buffer)[] = [];
  parts.forEach((p, i) => {
    const line = `${p.length.toString(16)}${i % 2 === 0 ? `;ext${i}="v ${i}"` : ""}\r\n`;
    const h = p.length >> 1;
    out.push(line.slice(0, 1), line.slice(1, -1), "\n", p.subarray(0, h), p.subarray(h), "\r", "\n");
  });
  out.push("0", "\r\n", trailers.slice(0, 3), `${trailers.slice(3)}\r`, "\n");
  return out;
}

describe("BulkPool", () => {
  it("reads a Content-Length body spanning many slabs byte-exact, into slabs, and reuses the connection", async () => {
    const data = randomBytes(4 * MiB + 123);
    const srv = await rawServer((sock) => {
      sock.write(okHead(data.length));
      sock.write(data);
    });
    const pool = new BulkPool();
    try {
      const res = await pool.request(srv.url("/v2/a/blobs/x?q=1"), { "x-test": "one", Host: "ignored.example" });
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-length"]).toBe(String(data.length));
      const { bytes, chunks } = await collect(res.body);
      expect(bytes.equals(data)).toBe(true);
      expect(res.body.complete).toBe(true);
      // Views into 256 KiB slabs, not per-read buffers; many of them.
      expect(chunks.every((c) => c.buffer.byteLength === SLAB)).toBe(true);
      expect(new Set(chunks.map((c) => c.buffer)).size).toBeGreaterThanOrEqual(2);

      const again = await pool.request(srv.url("/second"), {});
      expect(sha256((await collect(again.body)).bytes)).toBe(sha256(data));
      expect(srv.connections).toBe(1);
      expect(srv.heads).toHaveLength(2);
      expect(srv.heads[0]).toBe(`GET /v2/a/blobs/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:${srv.url().port}\r\nx-test: one`);
      expect(srv.heads[1]?.startsWith("GET /second HTTP/1.1\r\n")).toBe(true);
    } finally {
      pool.close();
    }
  });

  it("reads empty bodies (Content-Length 0, 204) and keeps the connection", async () => {
    const srv = await rawServer((sock, _h, n) => sock.write(n === 0 ? okHead(0) : "HTTP/1.1 204 No Content\r\n\r\n"));
    const pool = new BulkPool();
    try {
      for (const status of [200, 204]) {
        const res = await pool.request(srv.url(), {});
        expect(res.statusCode).toBe(status);
        expect((await collect(res.body)).bytes.length).toBe(0);
      }
      expect(srv.connections).toBe(1);
    } finally {
      pool.close();
    }
  });

  it("skips an interim 100 answer", async () => {
    const srv = await rawServer((sock) => sock.write(`HTTP/1.1 100 Continue\r\n\r\n${okHead(5)}hello`));
    const pool = new BulkPool();
    try {
      const res = await pool.request(srv.url(), {});
      expect(res.statusCode).toBe(200);
      expect((await collect(res.body)).bytes.toString()).toBe("hello");
    } finally {
      pool.close();
    }
  });

  it("does not reuse a connection that sent bytes past a Content-Length body, or said Connection: close", async () => {
    const srv = await rawServer((sock, _h, _n, c) => sock.write(c === 0 ? `${okHead(5)}helloEXTRA` : `${okHead(2, "Connection: close\r\n")}ok`));
    const pool = new BulkPool();
    try {
      expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("hello");
      expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("ok");
      expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("ok");
      expect(srv.connections).toBe(3);
    } finally {
      pool.close();
    }
  });

  describe("chunked transfer coding", () => {
    it("decodes chunks split across writes, with extensions and trailers, and reuses the connection", async () => {
      const parts = [randomBytes(70_000), randomBytes(5), randomBytes(300_000), randomBytes(1)];
      const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n";
      const srv = await rawServer((sock) => writeSlowly(sock, [head.slice(0, -3), head.slice(-3), ...chunkedPieces(parts, "X-Checksum: abc\r\nX-Other: 1\r\n")]));
      const pool = new BulkPool();
      try {
        for (let i = 0; i < 2; i++) {
          const res = await pool.request(srv.url(), {});
          expect(res.headers["transfer-encoding"]).toBe("chunked");
          const { bytes } = await collect(res.body);
          expect(bytes.equals(Buffer.concat(parts))).toBe(true);
        }
        expect(srv.connections).toBe(1);
      } finally {
        pool.close();
      }
    });

    it("fails the body on a malformed chunk size or a chunk longer than its size", async () => {
      const answers = ["5\r\nhello\r\nzz\r\n", "3\r\nhello\r\n0\r\n\r\n"];
      // The bad part comes in a read of its own (see the skipped test below for why).
      const srv = await rawServer((sock, _h, _n, c) => writeSlowly(sock, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", answers[c] as string], 30));
      const pool = new BulkPool();
      try {
        const e1 = await bodyError((await pool.request(srv.url(), {})).body);
        expect(e1).toBeInstanceOf(AirlockError);
        expect(e1.message).toMatch(/invalid chunk size "zz"/);
        const e2 = await bodyError((await pool.request(srv.url(), {})).body);
        expect(e2.message).toMatch(/longer than its size/);
        expect(srv.connections).toBe(2);
      } finally {
        pool.close();
      }
    });

    // The bytes that came with the head reach the body at its first read: when they fail it (a bad
    // chunk size), the 'error' goes to a reader, not to nobody before request() has resolved (an
    // uncaught exception that would end the process).
    it("fails the body when a malformed chunk comes in the same read as the head", async () => {
      const srv = await rawServer((sock) => sock.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
      const pool = new BulkPool();
      try {
        const err = await bodyError((await pool.request(srv.url(), {})).body);
        expect(err.message).toMatch(/invalid chunk size/);
      } finally {
        pool.close();
      }
    });

    it("delivers the body but drops the connection when bytes follow the last chunk", async () => {
      const srv = await rawServer((sock, _h, _n, c) => sock.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${c === 0 ? "HTTP/1.1 200 OK\r\n" : ""}`));
      const pool = new BulkPool();
      try {
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("hello");
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("hello");
        expect(srv.connections).toBe(2);
      } finally {
        pool.close();
      }
    });
  });

  it("reads a close-delimited body (HTTP/1.0, or HTTP/1.1 without a length) to the close and does not reuse it", async () => {
    const data = randomBytes(600_000);
    const srv = await rawServer(async (sock, _h, _n, c) => {
      sock.write(c === 0 ? "HTTP/1.0 200 OK\r\n\r\n" : "HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n");
      await writeSlowly(sock, [data.subarray(0, 1000), data.subarray(1000)]);
      sock.end();
    });
    const pool = new BulkPool();
    try {
      for (let i = 0; i < 2; i++) {
        const { bytes } = await collect((await pool.request(srv.url(), {})).body);
        expect(bytes.equals(data)).toBe(true);
      }
      expect(srv.connections).toBe(2);
    } finally {
      pool.close();
    }
  });

  describe("errors", () => {
    it("fails the body with a retryable error when the server closes mid-body", async () => {
      const srv = await rawServer(async (sock) => {
        sock.write(okHead(MiB));
        await writeSlowly(sock, [randomBytes(100_000)]);
        sock.end();
      });
      const pool = new BulkPool();
      try {
        const res = await pool.request(srv.url(), {});
        const err = await bodyError(res.body);
        expect(err.code).toBe("ECONNRESET");
        expect(err.message).toMatch(/middle of the response body/);
        expect(isRetryableNetworkError(err)).toBe(true);
        expect(res.body.complete).toBe(false);
      } finally {
        pool.close();
      }
    });

    it("retries once on a fresh connection when a kept one is closed before it answers", async () => {
      const srv = await rawServer((sock, _h, n, c) => {
        if (c === 0 && n === 1) sock.destroy();
        else sock.write(`${okHead(2)}ok`);
      });
      const pool = new BulkPool();
      try {
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("ok");
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("ok");
        expect(srv.connections).toBe(2);
        expect(srv.heads).toHaveLength(3);
      } finally {
        pool.close();
      }
    });

    it("retries a stale connection only once", async () => {
      const srv = await rawServer((sock, _h, n, c) => {
        if (c === 0 && n === 0) sock.write(`${okHead(2)}ok`);
        else sock.destroy();
      });
      const pool = new BulkPool();
      try {
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("ok");
        const err = await rejection(pool.request(srv.url(), {}));
        expect(err.code).toBe("ECONNRESET");
        expect(srv.connections).toBe(2);
      } finally {
        pool.close();
      }
    });

    it("replaces a kept connection the server closed while it was idle", async () => {
      const srv = await rawServer((sock) => sock.end(`${okHead(2)}ok`));
      const pool = new BulkPool();
      try {
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("ok");
        for (let i = 0; i < 50 && srv.closed < 1; i++) await sleep(5);
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("ok");
        expect(srv.connections).toBe(2);
      } finally {
        pool.close();
      }
    });

    it("does not retry a fresh connection closed before an answer", async () => {
      const srv = await rawServer((sock) => sock.destroy());
      const pool = new BulkPool();
      try {
        const err = await rejection(pool.request(srv.url(), {}));
        expect(err.code).toBe("ECONNRESET");
        expect(isRetryableNetworkError(err)).toBe(true);
        expect(srv.connections).toBe(1);
      } finally {
        pool.close();
      }
    });

    it.each([
      ["Content-Length: 12abc\r\n", /invalid Content-Length/],
      ["Content-Length: -1\r\n", /invalid Content-Length/],
      ["Content-Length: 5\r\nContent-Length: 6\r\n", /invalid Content-Length/],
      ["Content-Length: 99999999999999999999\r\n", /invalid Content-Length/],
      ["Transfer-Encoding: gzip\r\n", /Transfer-Encoding "gzip"/],
      ["Bad header\r\n", /malformed header line/],
    ])("refuses a head with %j", async (headers, message) => {
      const srv = await rawServer((sock) => sock.write(`HTTP/1.1 200 OK\r\n${headers}\r\nhello`));
      const pool = new BulkPool();
      try {
        const err = await rejection(pool.request(srv.url(), {}));
        expect(err).toBeInstanceOf(AirlockError);
        expect((err as AirlockError).code).toBe("ERR_REGISTRY");
        expect(err.message).toMatch(message);
      } finally {
        pool.close();
      }
    });

    it("accepts repeated equal Content-Length values", async () => {
      const srv = await rawServer((sock) => sock.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"));
      const pool = new BulkPool();
      try {
        expect((await collect((await pool.request(srv.url(), {})).body)).bytes.toString()).toBe("hello");
      } finally {
        pool.close();
      }
    });

    it("refuses a response head larger than 64 KiB", async () => {
      const srv = await rawServer((sock) => sock.write(`HTTP/1.1 200 OK\r\n${"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(2000)}`));
      const pool = new BulkPool();
      try {
        const err = await rejection(pool.request(srv.url(), {}));
        expect(err.message).toMatch(/response head is larger than 65536 bytes/);
      } finally {
        pool.close();
      }
    });

    // The limit holds also for a head whose end comes in the same read as its last part.
    it("refuses a head over 64 KiB whose end arrives with its last part", async () => {
      const pad = "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
      const srv = await rawServer((sock) => writeSlowly(sock, [`HTTP/1.1 200 OK\r\n${pad.repeat(1200)}`, `${pad.repeat(200)}Content-Length: 2\r\n\r\nok`], 20));
      const pool = new BulkPool();
      try {
        const err = await rejection(pool.request(srv.url(), {}));
        expect(err.message).toMatch(/larger than 65536 bytes/);
      } finally {
        pool.close();
      }
    });

    // A head that arrives in two reads, the first filling its slab past SLAB_SIZE - MIN_READ with no
    // chunk of the slab out: the next read retires the slab, which goes straight back to the pool
    // and takes that read. The partial head is kept as a copy, so the read cannot overwrite it.
    it("reads a head split across reads at the end of a slab", async () => {
      const first = randomBytes(180 * 1024);
      const pad = `X-Pad: ${"a".repeat(1000)}\r\n`.repeat(50); // ~50 KiB: the slab's used part passes 224 KiB
      const srv = await rawServer(async (sock, _h, n) => {
        if (n === 0) {
          sock.write(Buffer.concat([Buffer.from(okHead(first.length)), first]));
          return;
        }
        sock.write(`HTTP/1.1 200 OK\r\n${pad}`);
        await sleep(30);
        sock.write(Buffer.concat([Buffer.from(`Content-Length: ${MiB}\r\n\r\n`), randomBytes(MiB)]));
      });
      const pool = new BulkPool();
      try {
        await drainReleasing((await pool.request(srv.url(), {})).body); // every chunk back: the slab is free once retired
        const res = await pool.request(srv.url(), {});
        expect(res.statusCode).toBe(200);
        expect(res.headers["content-length"]).toBe(String(MiB));
        expect((await collect(res.body)).bytes.length).toBe(MiB);
      } finally {
        pool.close();
      }
    });

    // The body bytes that came in the head's read wait for the body's first read; meanwhile Node
    // asks for the next read's buffer, which retires the nearly full slab. Were those bytes not
    // held, the slab would go back to the pool at once and the next read would land over them
    // (this corrupted exports through a proxy that sends the head with the first body bytes).
    it("keeps the body bytes that came with the head intact until they are handed on", async () => {
      const first = randomBytes(200 * 1024);
      const second = randomBytes(MiB);
      const srv = await rawServer(async (sock, _h, n) => {
        if (n === 0) {
          sock.write(Buffer.concat([Buffer.from(okHead(first.length)), first]));
          return;
        }
        // The head and 40 KiB of body in one write: the slab is then within MIN_READ of full.
        sock.write(Buffer.concat([Buffer.from(okHead(second.length)), second.subarray(0, 40 * 1024)]));
        await sleep(30);
        sock.write(second.subarray(40 * 1024));
      });
      const pool = new BulkPool();
      try {
        await drainReleasing((await pool.request(srv.url(), {})).body); // every chunk back: the slab is free once retired
        const res = await pool.request(srv.url(), {});
        await sleep(60); // the rest arrives (and would be read) before the body is first read
        // Chunks kept to the end (as the export writer keeps them until written), then compared
        // with copies taken on arrival.
        const kept: Buffer[] = [];
        const copies: Buffer[] = [];
        await new Promise<void>((resolve, reject) => {
          res.body.on("data", (c: Buffer) => {
            kept.push(c);
            copies.push(Buffer.from(c));
          });
          res.body.once("end", resolve);
          res.body.once("error", reject);
        });
        expect(Buffer.concat(copies).equals(second)).toBe(true);
        expect(Buffer.concat(kept).equals(second)).toBe(true);
        for (const c of kept) releaseBulkChunk(c);
      } finally {
        pool.close();
      }
    });

    it("fails with ECONNREFUSED when nothing listens", async () => {
      const probe = net.createServer();
      await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      const pool = new BulkPool();
      const err = await rejection(pool.request(new URL(`http://127.0.0.1:${port}/`), {}));
      expect(err.code).toBe("ECONNREFUSED");
      pool.close();
    });

    it("refuses an answer that is not HTTP", async () => {
      const srv = await rawServer((sock) => sock.write("SSH-2.0-OpenSSH_9.2\r\n\r\n"));
      const pool = new BulkPool();
      try {
        const err = await rejection(pool.request(srv.url(), {}));
        expect(err).toBeInstanceOf(AirlockError);
        expect(err.message).toMatch(/not HTTP\/1\.x: "SSH-2\.0-OpenSSH_9\.2"/);
      } finally {
        pool.close();
      }
    });

    it("refuses URLs other than http(s) and header values with line breaks", async () => {
      const pool = new BulkPool();
      await expect(pool.request(new URL("ftp://127.0.0.1/x"), {})).rejects.toThrow(/cannot GET ftp: URLs/);
      await expect(pool.request(new URL("http://127.0.0.1:9/x"), { "x-a": "b\r\nevil: 1" })).rejects.toThrow(/line break/);
      pool.close();
    });

    it("times out waiting for the head, and when the body stalls", async () => {
      const srv = await rawServer((sock, _h, _n, c) => {
        if (c === 1) sock.write(`${okHead(1000)}0123456789`);
      });
      const pool = new BulkPool({ headersMs: 50, bodyMs: 50 });
      try {
        const e1 = await rejection(pool.request(srv.url(), {}));
        expect(e1.code).toBe("UND_ERR_HEADERS_TIMEOUT");
        const res = await pool.request(srv.url(), {});
        const e2 = await bodyError(res.body);
        expect(e2.code).toBe("UND_ERR_BODY_TIMEOUT");
        for (let i = 0; i < 50 && srv.closed < 2; i++) await sleep(5);
        expect(srv.closed).toBe(2); // both connections were closed
      } finally {
        pool.close();
      }
    });

    it("aborts: before the call, while waiting for the head, and mid-body", async () => {
      const srv = await rawServer((sock, head) => {
        if (head.startsWith("GET /body")) sock.write(`${okHead(MiB)}${"x".repeat(1000)}`);
      });
      const pool = new BulkPool();
      try {
        const pre = new AbortController();
        const r0 = new Error("stop before");
        pre.abort(r0);
        expect(await rejection(pool.request(srv.url(), {}, pre.signal))).toBe(r0);
        expect(srv.connections).toBe(0);

        const ac = new AbortController();
        const r1 = new Error("stop waiting");
        const p = pool.request(srv.url("/head"), {}, ac.signal);
        for (let i = 0; i < 100 && srv.heads.length < 1; i++) await sleep(5);
        ac.abort(r1);
        expect(await rejection(p)).toBe(r1);

        const ac2 = new AbortController();
        const r2 = new Error("stop reading");
        const res = await pool.request(srv.url("/body"), {}, ac2.signal);
        const first = await new Promise<Buffer>((resolve) => res.body.once("data", resolve));
        expect(first.length).toBeGreaterThan(0);
        ac2.abort(r2);
        expect(await bodyError(res.body)).toBe(r2);
        for (let i = 0; i < 50 && srv.closed < 2; i++) await sleep(5);
        expect(srv.closed).toBe(2);
      } finally {
        pool.close();
      }
    });
  });

  it("holds back while the reader pauses and delivers every byte", async () => {
    const data = randomBytes(5 * MiB);
    const srv = await rawServer((sock) => {
      sock.write(okHead(data.length));
      sock.write(data);
    });
    const pool = new BulkPool({ bodyMs: 5000 });
    try {
      const res = await pool.request(srv.url(), {});
      const copies: Buffer[] = [];
      let buffered = 0;
      await new Promise<void>((resolve, reject) => {
        let pauses = 0;
        res.body.on("data", (c: Buffer) => {
          copies.push(Buffer.from(c));
          if (copies.length % 4 === 1 && pauses < 3) {
            pauses++;
            res.body.pause();
            setTimeout(() => {
              buffered = Math.max(buffered, res.body.readableLength);
              res.body.resume();
            }, 100);
          }
        });
        res.body.on("end", resolve);
        res.body.on("error", reject);
      });
      expect(Buffer.concat(copies).equals(data)).toBe(true);
      // The socket stopped being read: what piled up stays near the stream's high-water mark.
      expect(buffered).toBeLessThan(2 * MiB);
    } finally {
      pool.close();
    }
  });

  describe("slab recycling", () => {
    it("never changes a chunk's bytes before it is released, with concurrent downloads and delayed releases", async () => {
      const bodies = [randomBytes(3 * MiB), randomBytes(2 * MiB + 7), randomBytes(3 * MiB + 1), randomBytes(MiB)];
      const srv = await rawServer(async (sock, head) => {
        const i = Number(/^GET \/(\d+)/.exec(head)?.[1]);
        const b = bodies[i] as Buffer;
        sock.write(okHead(b.length));
        // In pieces, so that reads of all four interleave.
        for (let at = 0; at < b.length; at += 200_000) {
          sock.write(b.subarray(at, at + 200_000));
          await sleep(1);
        }
      });
      const pool = new BulkPool();
      const seenBuffers = new Set<ArrayBufferLike>();
      let chunkCount = 0;
      try {
        const results = await Promise.all(
          bodies.map(async (_b, i) => {
            const res = await pool.request(srv.url(`/${i}`), {});
            const atArrival: Buffer[] = [];
            const atWrite: Buffer[] = [];
            const hash = createHash("sha256");
            // Writes run one after another, as the export writer's do; each takes a while.
            let writes = Promise.resolve();
            await new Promise<void>((resolve, reject) => {
              res.body.on("data", (chunk: Buffer) => {
                chunkCount++;
                seenBuffers.add(chunk.buffer);
                const k = atArrival.length;
                atArrival.push(Buffer.from(chunk));
                // The chunk is hashed and copied when its simulated write is done, then given back.
                writes = writes
                  .then(() => sleep(k % 3))
                  .then(() => {
                    hash.update(chunk);
                    atWrite[k] = Buffer.from(chunk);
                    releaseBulkChunk(chunk);
                  });
              });
              res.body.on("end", resolve);
              res.body.on("error", reject);
            });
            await writes;
            return { hashAtWrite: hash.digest("hex"), atArrival, atWrite };
          }),
        );
        results.forEach((r, i) => {
          const expected = sha256(bodies[i] as Buffer);
          expect(sha256(Buffer.concat(r.atArrival))).toBe(expected);
          expect(r.hashAtWrite).toBe(expected);
          expect(sha256(Buffer.concat(r.atWrite))).toBe(expected);
        });
        // Slabs were in fact reused (9 MiB went through far fewer than 36 slabs).
        expect(chunkCount).toBeGreaterThan(0);
        expect(seenBuffers.size).toBeLessThan(36);
      } finally {
        pool.close();
      }
    });

    it("ignores a second release and a release of a view: the slab waits for its real last chunk", async () => {
      const a = randomBytes(1000);
      const b = randomBytes(1000);
      let go!: () => void;
      const phase2 = new Promise<void>((resolve) => {
        go = resolve;
      });
      const srv = await rawServer(async (sock, _h, n) => {
        if (n === 0) {
          sock.write(okHead(a.length + b.length + 4 * MiB));
          await writeSlowly(sock, [a, b], 30);
          await phase2;
          sock.write(randomBytes(4 * MiB));
        } else {
          sock.write(okHead(4 * MiB));
          sock.write(randomBytes(4 * MiB));
        }
      });
      const pool = new BulkPool();
      try {
        const res = await pool.request(srv.url(), {});
        // The first two pieces arrive 30 ms apart, each in its own read of the same slab.
        const got: Buffer[] = [];
        const later: Buffer[] = [];
        let firstTwo!: () => void;
        const haveTwo = new Promise<void>((resolve) => {
          firstTwo = resolve;
        });
        const ended = new Promise<void>((resolve, reject) => {
          res.body.on("data", (c: Buffer) => {
            if (got.length < 2) {
              got.push(c);
              if (got.reduce((n, g) => n + g.length, 0) >= 2000) firstTwo();
            } else {
              later.push(c.subarray(0, 0)); // where it lay, not its bytes
              releaseBulkChunk(c);
            }
          });
          res.body.once("end", resolve);
          res.body.once("error", reject);
        });
        await haveTwo;
        expect(got).toHaveLength(2);
        const [c1, c2] = got as [Buffer, Buffer];
        expect(c1.equals(a) && c2.equals(b)).toBe(true);
        expect(c2.buffer).toBe(c1.buffer);
        const slab = c1.buffer;
        const c2copy = Buffer.from(c2);

        releaseBulkChunk(c1);
        releaseBulkChunk(c1); // ignored
        releaseBulkChunk(c2.subarray(0, 10)); // ignored
        releaseBulkChunk(Buffer.from(c2)); // ignored
        // The rest of this body and a second one, every chunk released at once: the slab is
        // retired, later reads take recycled slabs — never the one c2 still lives in. Were c1
        // counted twice, the slab would be free and the very next slab taken.
        go();
        await ended;
        later.push(...(await drainReleasing((await pool.request(srv.url(), {})).body)));
        expect(c2.equals(c2copy)).toBe(true);
        // Reads went on into the slab after c2 until it was retired, but never again over c1 or c2.
        const end2 = c2.byteOffset + c2.length;
        expect(later.filter((v) => v.buffer === slab && v.byteOffset < end2)).toEqual([]);
        const slabs = later.map((v) => v.buffer);
        expect(new Set(slabs).size).toBeLessThan(slabs.length / 2); // recycling did happen meanwhile

        // Once c2 comes back, its slab is reused. (The pool hands out the slab freed last first: a
        // reader that keeps its chunks makes the socket go through the free slabs, c2's among them.)
        releaseBulkChunk(c2);
        const after = await drainReleasing((await pool.request(srv.url(), {})).body, false);
        expect(after.some((v) => v.buffer === slab && v.byteOffset === 0)).toBe(true);
        expect(srv.connections).toBe(1);
      } finally {
        pool.close();
      }
    });
  });

  it("bulkSupported() is false with AIRLOCK_HTTP_BULK=0", () => {
    expect(bulkSupported({ AIRLOCK_HTTP_BULK: "0" })).toBe(false);
    expect(bulkSupported({})).toBe(true); // on Node
    expect(bulkSupported({ AIRLOCK_HTTP_BULK: "1" })).toBe(true);
  });
});

/** Spies on BulkPool.request; `responses` gets every response it gave (the blob requests among them are what the tests look at). */
function spyBulk() {
  const responses: { url: string; res: BulkResponse }[] = [];
  const orig = BulkPool.prototype.request;
  const spy = vi.spyOn(BulkPool.prototype, "request").mockImplementation(async function (this: BulkPool, ...args: Parameters<BulkPool["request"]>) {
    const res = await orig.apply(this, args);
    responses.push({ url: args[0].href, res });
    return res;
  });
  return { spy, responses };
}

describe("RegistryConnection on the bulk client", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("follows a 307 from the blob URL to another origin", async () => {
    const data = randomBytes(MiB + 5);
    const digest = `sha256:${sha256(data)}`;
    const storage = await rawServer((sock, head) => {
      if (head.startsWith("GET /storage/blob?sig=abc ")) sock.write(Buffer.concat([Buffer.from(okHead(data.length)), data]));
      else sock.write("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    });
    const registryHeads: string[] = [];
    const registry: Server = createHttpServer((req, res) => {
      registryHeads.push(`${req.method} ${req.url} auth=${req.headers.authorization ?? ""}`);
      if (req.url === "/v2/") res.writeHead(200, { "content-type": "application/json" }).end("{}");
      else if (req.url === `/v2/app/blobs/${digest}`) res.writeHead(307, { location: `${storage.url("/storage/blob?sig=abc")}` }).end("redirecting");
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => registry.listen(0, "127.0.0.1", resolve));
    servers.push({ close: () => new Promise<void>((resolve) => registry.close(() => resolve())) });
    const host = `127.0.0.1:${(registry.address() as net.AddressInfo).port}`;
    const { responses } = spyBulk();
    const client = new RegistryClient(host, { retryTimes: 0 });
    try {
      const dl = await client.repository("app").getBlob(digest);
      expect(dl.size).toBe(data.length);
      const { bytes } = await collect(dl.stream);
      expect(`sha256:${sha256(bytes)}`).toBe(digest);
      expect(responses.filter((r) => !r.url.endsWith("/v2/")).map((r) => [r.url, r.res.statusCode])).toEqual([
        [`http://${host}/v2/app/blobs/${digest}`, 307],
        [storage.url("/storage/blob?sig=abc").href, 200],
      ]);
      expect(responses.every((r) => r.res.body.complete)).toBe(true); // the 307's body too: dumped
      expect(storage.heads).toHaveLength(1);
      expect(storage.heads[0]).not.toMatch(/authorization/i);
      expect(registryHeads).toContain(`GET /v2/app/blobs/${digest} auth=`);
    } finally {
      await client.close();
      registry.closeAllConnections();
    }
  });
});

describe.each(["plain", "tls"] as const)("Repository.getBlob through the bulk client against docker-registry (%s)", (mode) => {
  let reg: RunningRegistry;
  const data = randomBytes(3 * MiB + 17);
  const digest = `sha256:${sha256(data)}`;
  beforeAll(async () => {
    reg = await startRegistry({ mode });
    const up = new RegistryClient(reg.host, { certDir: reg.certDir, retryTimes: 0 });
    try {
      await up.repository("bulk/blob", "push").putBlob({ digest: digest as Digest, size: data.length }, Readable.from([data]));
    } finally {
      await up.close();
    }
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await reg?.stop();
  });

  it("downloads the blob byte-exact through slabs", async () => {
    const { responses } = spyBulk();
    const client = new RegistryClient(reg.host, { certDir: reg.certDir, retryTimes: 0 });
    try {
      const dl = await client.repository("bulk/blob").getBlob(digest);
      expect(dl.size).toBe(data.length);
      const { bytes, chunks } = await collect(dl.stream);
      expect(`sha256:${sha256(bytes)}`).toBe(digest);
      // It was the bulk client that read it, over the scheme the registry speaks.
      const blob = responses.filter((r) => r.url.includes("/blobs/"));
      expect(blob).toHaveLength(1);
      expect(blob[0]?.url).toBe(`${reg.url}/v2/bulk/blob/blobs/${digest}`);
      expect(blob[0]?.url.startsWith(mode === "tls" ? "https://" : "http://")).toBe(true);
      const body = blob[0]?.res.body as BulkBody;
      expect(body.complete).toBe(true);
      expect(body.readableEnded).toBe(true);
      expect(chunks.every((c) => c.buffer.byteLength === SLAB)).toBe(true);
    } finally {
      await client.close();
    }
  });
});
