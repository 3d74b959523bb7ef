/**
 * A raw HTTP client for the conformance suite: node:http(s) requests whose path is sent exactly as
 * given (no dot-segment normalisation, no re-encoding), so the suite can send what a hostile
 * client would. Bodies are buffered: conformance content is small.
 */
import { type IncomingHttpHeaders, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

/** A registry under test. */
export interface Target {
  /** Base URL, `http://HOST:PORT` or `https://HOST:PORT`. */
  url: string;
  /** `HOST:PORT`. */
  host: string;
  /** Credentials, when the registry requires them. */
  auth?: { username: string; password: string };
  /** A CA certificate (PEM) to trust, for TLS. */
  ca?: string;
}

/** A response: status, headers and the whole body. */
export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The body as JSON (undefined when it is not JSON). */
  json: unknown;
  /** The spec error codes in the body, in order. */
  codes: string[];
  /** True when the connection broke before the body was complete (the body is what arrived). */
  truncated: boolean;
}

/** Options of {@link send}. */
export interface SendOptions {
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Send no Authorization header even when the target has credentials. */
  anonymous?: boolean;
  /** Send these credentials instead of the target's. */
  credentials?: { username: string; password: string };
}

/**
 * Sends `method pathOrUrl` to the target. A path starting with `/` is sent verbatim; an absolute
 * URL (a `Location` header) is sent to its own path and query.
 */
export function send(target: Target, method: string, pathOrUrl: string, options: SendOptions = {}): Promise<Reply> {
  const base = new URL(target.url);
  let path = pathOrUrl;
  if (/^https?:\/\//.test(pathOrUrl)) {
    const u = new URL(pathOrUrl);
    path = u.pathname + u.search;
  }
  const headers: Record<string, string> = { ...options.headers };
  const creds = options.anonymous ? undefined : (options.credentials ?? target.auth);
  if (creds) headers.Authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  if (body !== undefined) headers["Content-Length"] = String(body.length);
  else if (method === "PUT" || method === "POST" || method === "PATCH") headers["Content-Length"] = "0";
  const https = base.protocol === "https:";
  return new Promise<Reply>((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      { host: base.hostname, port: base.port, method, path, headers, ...(https ? { ca: target.ca } : {}), agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        let truncated = false;
        res.on("data", (c: Buffer) => chunks.push(c));
        // A body cut short still leaves a status and headers worth asserting on.
        res.on("error", () => {
          truncated = true;
        });
        res.on("close", () => {
          const buf = Buffer.concat(chunks);
          let json: unknown;
          try {
            json = buf.length > 0 ? JSON.parse(buf.toString("utf8")) : undefined;
          } catch {
            json = undefined;
          }
          const errors = (json as { errors?: { code?: unknown }[] } | undefined)?.errors;
          const codes = Array.isArray(errors) ? errors.map((e) => String(e.code)) : [];
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: buf, json, codes, truncated: truncated || !res.complete });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** The value of a response header (the first one when repeated). */
export function header(reply: Reply, name: string): string | undefined {
  const v = reply.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
