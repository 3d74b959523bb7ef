import { getEventListeners } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BulkPool } from "./bulk.js";
import { RegistryClient } from "./client.js";

const servers: Server[] = [];

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ origin: string; host: string }> {
  const s = createServer(handler);
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  servers.push(s);
  const host = `127.0.0.1:${(s.address() as AddressInfo).port}`;
  return { origin: `http://${host}`, host };
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

describe("credentials and redirects", () => {
  it("never sends a token endpoint's Basic credentials to the origin it redirects to", async () => {
    const seen: string[] = [];
    // The origin a token realm redirects to: it records what it was sent, and hands out a token.
    const other = await serve((req, res) => {
      seen.push(`other ${req.url} auth=${req.headers.authorization ?? ""}`);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "t0k3n" }));
    });
    const realm = await serve((req, res) => {
      seen.push(`realm ${req.url} auth=${req.headers.authorization ?? ""}`);
      res.writeHead(302, { location: `${other.origin}/token${req.url?.slice("/token".length) ?? ""}` }).end();
    });
    const registry = await serve((req, res) => {
      seen.push(`registry ${req.method} ${req.url} auth=${req.headers.authorization ?? ""}`);
      if (req.headers.authorization !== "Bearer t0k3n") {
        res.writeHead(401, { "www-authenticate": `Bearer realm="${realm.origin}/token",service="reg"`, "content-type": "application/json" }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ name: "app", tags: ["1"] }));
    });
    const client = new RegistryClient(registry.host, { credentials: { username: "alice", password: "s3cret" }, retryTimes: 0 });
    try {
      // A tag list: a GET the registry answers once it sees the token.
      const res = await client.repository("app").listTags();
      expect(res).toEqual(["1"]);
      expect(seen.some((l) => l.startsWith("realm ") && l.includes("auth=Basic "))).toBe(true); // the realm asked does get them
      expect(seen.filter((l) => l.startsWith("other "))).not.toHaveLength(0);
      for (const l of seen.filter((x) => x.startsWith("other "))) expect(l).toMatch(/auth=$/);
      expect(JSON.stringify(res)).not.toContain("s3cret");
    } finally {
      await client.close();
    }
  });
});

describe("bulk client: interim answers and bodies dropped unread", () => {
  it("keeps the headers timeout after an interim 103 answer", async () => {
    const srv = net.createServer((sock) => {
      sock.once("data", () => sock.write("HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")); // then nothing
    });
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    const pool = new BulkPool({ headersMs: 200 });
    try {
      const err = await pool.request(new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/`), {}).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err?.code).toBe("UND_ERR_HEADERS_TIMEOUT");
    } finally {
      pool.close();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });

  it("lets go of the caller's signal when a body that came with its head is destroyed unread", async () => {
    const srv = net.createServer((sock) => {
      sock.on("data", () => sock.write(`HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n${"x".repeat(1000)}`));
    });
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    const url = new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/`);
    const pool = new BulkPool();
    const controller = new AbortController();
    const listeners = () => getEventListeners(controller.signal, "abort").length;
    try {
      const before = listeners();
      for (let i = 0; i < 5; i++) {
        const res = await pool.request(url, {}, controller.signal);
        res.body.destroy();
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(listeners()).toBe(before);
    } finally {
      pool.close();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });
});
