/**
 * Test harness: a tiny HTTP reverse proxy in front of a real registry that records every request
 * (method, path, headers, and the body bytes that passed each way) and can hold back chosen
 * responses, pace a response body, or hold a request body back until it is complete (as nginx
 * does by default) and then drop it, so a test can count what was fetched or pushed and kill a
 * client while transfers are still in flight.
 */
import { createServer, type IncomingHttpHeaders, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";

/** One request the proxy saw. */
export interface CountedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Request body bytes forwarded to the registry. */
  sent: number;
  /** Response body bytes forwarded to the client. */
  received: number;
}

/** Options of {@link startCountingProxy}. */
export interface CountingProxyOptions {
  /** Response body bytes per second for the requests it names (undefined: unpaced). */
  paceBytesPerSecond?: (method: string, url: string) => number | undefined;
  /**
   * Called for a request whose body is buffered whole before it is forwarded (when
   * `bufferRequest` names it); returning "drop" closes the connection instead of forwarding.
   */
  onRequestBody?: (req: CountedRequest, body: Buffer) => "drop" | undefined;
  /** Which requests have their body buffered whole before forwarding. */
  bufferRequest?: (method: string, url: string) => boolean;
  /** Called after each piece of a response body was forwarded. */
  onResponseBytes?: (req: CountedRequest) => void;
  /** Called when a request arrives, before anything is forwarded. */
  onRequest?: (req: CountedRequest) => void;
  /** Requests forwarded without their Range header (a server that ignores Range answers 200). */
  stripRange?: (method: string, url: string) => boolean;
}

/** A running counting proxy. */
export interface CountingProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Every request, oldest first: `METHOD PATH?QUERY`. */
  requests: string[];
  /** Every request with its headers and body byte counts, oldest first. */
  log: CountedRequest[];
  stop(): Promise<void>;
}

/** Starts a proxy to `target` (`http://127.0.0.1:PORT`); `delayMs(method, url)` holds a request back before forwarding. */
export async function startCountingProxy(target: string, delayMs: (method: string, url: string) => number = () => 0, options: CountingProxyOptions = {}): Promise<CountingProxy> {
  const t = new URL(target);
  const requests: string[] = [];
  const log: CountedRequest[] = [];
  const server = createServer((req, res) => {
    const method = req.method ?? "GET";
    const url = req.url ?? "/";
    requests.push(`${method} ${url}`);
    const entry: CountedRequest = { method, url, headers: req.headers, sent: 0, received: 0 };
    log.push(entry);
    options.onRequest?.(entry);
    const pace = options.paceBytesPerSecond?.(method, url);
    const forward = (body?: Buffer) => {
      const headers = { ...req.headers };
      if (options.stripRange?.(method, url)) delete headers.range;
      const up = httpRequest({ host: t.hostname, port: t.port, method, path: url, headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        if (!pace) {
          r.on("data", (c: Buffer) => {
            entry.received += c.length;
            options.onResponseBytes?.(entry);
          });
          r.pipe(res);
          return;
        }
        // Paced: each piece waits its share of a second before it goes on.
        r.on("data", (c: Buffer) => {
          r.pause();
          setTimeout(() => {
            entry.received += c.length;
            options.onResponseBytes?.(entry);
            res.write(c, () => r.resume());
          }, (c.length / pace) * 1000);
        });
        r.on("end", () => setTimeout(() => res.end(), 5));
      });
      up.on("error", () => res.destroy());
      res.on("close", () => up.destroy());
      if (body) {
        entry.sent = body.length;
        up.end(body);
        return;
      }
      req.on("data", (c: Buffer) => {
        entry.sent += c.length;
      });
      req.pipe(up);
    };
    const go = () => {
      if (!options.bufferRequest?.(method, url)) {
        forward();
        return;
      }
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => parts.push(c));
      req.on("end", () => {
        const body = Buffer.concat(parts);
        if (options.onRequestBody?.(entry, body) === "drop") {
          res.destroy();
          return;
        }
        forward(body);
      });
    };
    const ms = delayMs(method, url);
    if (ms > 0) setTimeout(go, ms);
    else go();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    log,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
