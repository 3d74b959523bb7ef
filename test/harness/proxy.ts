/**
 * Test harness: an HTTP reverse proxy in front of a real (plain HTTP) registry that injects the
 * faults a real registry will not produce on demand — a connection cut mid-body, a 429 or a 500,
 * a redirect — and forwards everything else untouched.
 */
import { createServer, type IncomingHttpHeaders, request as httpRequest, type Server } from "node:http";

/** A request the proxy received. */
export interface ProxiedRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingHttpHeaders;
  /** When it arrived (ms since the epoch). */
  time: number;
}

/** What to do with one request. */
export type Fault =
  | { respond: { status: number; headers?: Record<string, string>; body?: string } }
  /** Forward, but close the connection after this many bytes of the response body. */
  | { cutResponseAfter: number }
  /** Forward this many bytes of the request body, then close both connections. */
  | { cutRequestAfter: number }
  | undefined;

/** A running proxy. */
export interface FaultProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Every request, oldest first. */
  requests: ProxiedRequest[];
  stop(): Promise<void>;
}

/** Starts a proxy to `target` (`http://127.0.0.1:PORT`); `fault` decides per request. */
export async function startFaultProxy(target: string, fault: (req: ProxiedRequest, requests: ProxiedRequest[]) => Fault): Promise<FaultProxy> {
  const requests: ProxiedRequest[] = [];
  const t = new URL(target);
  const server: Server = createServer((req, res) => {
    const entry: ProxiedRequest = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers, time: Date.now() };
    requests.push(entry);
    const f = fault(entry, requests);
    if (f && "respond" in f) {
      req.resume();
      res.writeHead(f.respond.status, f.respond.headers ?? {});
      res.end(f.respond.body ?? "");
      return;
    }
    const upstream = httpRequest(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } },
      (up) => {
        const headers = { ...up.headers };
        // Locations point at the registry; clients must come back through the proxy.
        if (typeof headers.location === "string") headers.location = headers.location.replace(t.origin, `http://${hostOf(server)}`);
        res.writeHead(up.statusCode ?? 502, headers);
        if (f && "cutResponseAfter" in f) {
          // Headers and the first bytes reach the client; then the connection drops.
          let sent = 0;
          const cut = () => {
            up.destroy();
            setTimeout(() => res.socket?.destroy(), 20);
          };
          if (f.cutResponseAfter <= 0) {
            res.flushHeaders();
            cut();
            return;
          }
          up.on("data", (chunk: Buffer) => {
            if (sent >= f.cutResponseAfter) return;
            const part = chunk.subarray(0, f.cutResponseAfter - sent);
            sent += part.length;
            if (sent >= f.cutResponseAfter) res.write(part, cut);
            else res.write(part);
          });
          return;
        }
        up.pipe(res);
      },
    );
    upstream.on("error", () => res.socket?.destroy());
    if (f && "cutRequestAfter" in f) {
      let sent = 0;
      req.on("data", (chunk: Buffer) => {
        if (sent >= f.cutRequestAfter) return;
        const part = chunk.subarray(0, f.cutRequestAfter - sent);
        sent += part.length;
        upstream.write(part);
        if (sent >= f.cutRequestAfter) {
          // Let the registry see the bytes, then cut both sides.
          setTimeout(() => {
            upstream.destroy();
            req.socket.destroy();
          }, 50);
        }
      });
      return;
    }
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    host: hostOf(server),
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function hostOf(server: Server): string {
  const a = server.address();
  return typeof a === "object" && a ? `127.0.0.1:${a.port}` : "";
}
