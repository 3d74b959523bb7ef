import type { AddressInfo } from "node:net";
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { RegistryConnection } from "./http.js";

const servers: net.Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((resolve) => s.close(() => resolve()));
});

/** A plain-HTTP registry stub on loopback that records the first byte of every connection. */
async function plainRegistry(): Promise<{ host: string; firstBytes: number[] }> {
  const firstBytes: number[] = [];
  const srv = net.createServer((sock) => {
    sock.once("data", (d: Buffer) => {
      firstBytes.push(d[0] as number);
      if (d[0] === 0x16) {
        sock.destroy(); // a TLS ClientHello: not what this server speaks
        return;
      }
      sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
    });
    sock.on("error", () => {});
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  servers.push(srv);
  return { host: `127.0.0.1:${(srv.address() as AddressInfo).port}`, firstBytes };
}

describe("ping", () => {
  it("asks a loopback registry without TLS settings over plain HTTP first: no TLS handshake", async () => {
    const reg = await plainRegistry();
    const conn = new RegistryConnection(reg.host, reg.host, { retryTimes: 0 });
    try {
      await conn.ping();
      expect(conn.base).toBe(`http://${reg.host}`);
      expect(reg.firstBytes).toEqual(["G".charCodeAt(0)]);
    } finally {
      await conn.close();
    }
  });

  it("with --tls-verify=true, tries HTTPS first even on loopback (and falls back to plain HTTP)", async () => {
    const reg = await plainRegistry();
    const conn = new RegistryConnection(reg.host, reg.host, { retryTimes: 0, tlsVerify: true });
    try {
      await conn.ping();
      expect(conn.base).toBe(`http://${reg.host}`);
      expect(reg.firstBytes).toEqual([0x16, "G".charCodeAt(0)]);
    } finally {
      await conn.close();
    }
  });
});
