import { randomBytes } from "node:crypto";
import { mkdtempSync, promises as fs } from "node:fs";
import { createServer, get, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BufferPool, openSpan, SEND_CHUNK, sendSpans } from "./send.js";
import type { FileSpan } from "./store/types.js";

const dir = mkdtempSync(join(tmpdir(), "airlock-send-"));
const a = randomBytes(SEND_CHUNK * 2 + 12345);
const b = randomBytes(SEND_CHUNK + 7);
const pool = new BufferPool(2);
/** What each request sends, by path; and how each ended. */
const routes = new Map<string, FileSpan[]>();
const outcomes: string[] = [];
let server: Server;
let url: string;

beforeAll(async () => {
  await fs.writeFile(join(dir, "a"), a);
  await fs.writeFile(join(dir, "b"), b);
  server = createServer((req, res) => {
    const spans = routes.get(req.url ?? "") ?? [];
    const total = spans.reduce((n, s) => n + s.length, 0);
    void (async () => {
      const first = spans.length > 0 ? await openSpan(spans[0]!) : undefined;
      res.writeHead(200, { "Content-Length": String(total) });
      let sent = 0;
      try {
        await sendSpans(res, spans, first, pool, (n) => {
          sent += n;
        });
        outcomes.push(`${req.url} ok ${sent}`);
      } catch (err) {
        outcomes.push(`${req.url} failed: ${(err as Error).message}`);
        res.destroy();
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await fs.rm(dir, { recursive: true, force: true });
});

/** Fetches `path` whole; rejects when the connection is cut. */
async function fetchAll(path: string): Promise<Buffer> {
  return Buffer.from(await (await fetch(url + path)).arrayBuffer());
}

describe("sendSpans", () => {
  it("sends the spans' bytes in order, across files and chunks, and counts them", async () => {
    routes.set("/whole", [{ path: join(dir, "a"), start: 0, length: a.length }]);
    routes.set("/parts", [
      { path: join(dir, "a"), start: SEND_CHUNK - 10, length: SEND_CHUNK + 20 },
      { path: join(dir, "b"), start: 0, length: b.length },
      { path: join(dir, "a"), start: 5, length: 1 },
    ]);
    routes.set("/empty", []);
    expect((await fetchAll("/whole")).equals(a)).toBe(true);
    const parts = await fetchAll("/parts");
    expect(parts.equals(Buffer.concat([a.subarray(SEND_CHUNK - 10, 2 * SEND_CHUNK + 10), b, a.subarray(5, 6)]))).toBe(true);
    expect((await fetchAll("/empty")).length).toBe(0);
    expect(outcomes).toEqual([`/whole ok ${a.length}`, `/parts ok ${parts.length}`, "/empty ok 0"]);
  });

  it("fails, and cuts the connection, when a file is shorter than its span", async () => {
    routes.set("/short", [{ path: join(dir, "b"), start: 0, length: b.length + 100 }]);
    outcomes.length = 0;
    await expect(fetchAll("/short")).rejects.toThrow();
    await expect.poll(() => outcomes).toEqual([expect.stringMatching(/^\/short failed: .*ends 100 bytes before the blob does/)]);
  });

  it("stops when the client goes away mid-blob, and serves the next request", async () => {
    const big = join(dir, "big");
    await fs.writeFile(big, randomBytes(32 * SEND_CHUNK));
    routes.set("/big", [{ path: big, start: 0, length: 32 * SEND_CHUNK }]);
    outcomes.length = 0;
    await new Promise<void>((resolve, reject) => {
      get(`${url}/big`, (res) => {
        res.once("data", () => {
          res.destroy();
          resolve();
        });
      }).on("error", reject);
    });
    await expect.poll(() => outcomes).toEqual([expect.stringMatching(/^\/big failed: /)]);
    expect((await fetchAll("/whole")).equals(a)).toBe(true);
  });
});
