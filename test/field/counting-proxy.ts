/**
 * Test harness: a tiny HTTP reverse proxy in front of a real registry that records every request
 * (method and path) and can hold back chosen responses, so a test can count what was fetched or
 * pushed and kill a client while transfers are still in flight.
 */
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";

/** A running counting proxy. */
export interface CountingProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Every request, oldest first: `METHOD PATH?QUERY`. */
  requests: string[];
  stop(): Promise<void>;
}

/** Starts a proxy to `target` (`http://127.0.0.1:PORT`); `delayMs(method, url)` holds a request back before forwarding. */
export async function startCountingProxy(target: string, delayMs: (method: string, url: string) => number = () => 0): Promise<CountingProxy> {
  const t = new URL(target);
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const method = req.method ?? "GET";
    const url = req.url ?? "/";
    requests.push(`${method} ${url}`);
    const forward = () => {
      const up = httpRequest({ host: t.hostname, port: t.port, method, path: url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    };
    const ms = delayMs(method, url);
    if (ms > 0) setTimeout(forward, ms);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
