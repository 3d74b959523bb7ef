/**
 * Checks the harness itself with plain node:http requests, so that a registry test failing later
 * is about airlock and not about the setup.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type RegistryMode, startRegistry } from "./registry.js";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(url: string, headers: Record<string, string> = {}, ca?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const opts = ca ? { headers, ca } : { headers };
    const req = (url.startsWith("https:") ? httpsRequest : httpRequest)(url, opts, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (s: string) => {
        body += s;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("test harness: startRegistry", () => {
  it.each<RegistryMode>(["plain", "basic", "tls", "token"])("starts and stops a %s registry", async (mode) => {
    const reg = await startRegistry({ mode });
    try {
      expect(reg.host).toMatch(/^127\.0\.0\.1:\d+$/);
      const ca = reg.caFile ? readFileSync(reg.caFile, "utf8") : undefined;
      const anon = await get(`${reg.url}/v2/`, {}, ca);
      expect(anon.status).toBe(mode === "basic" || mode === "token" ? 401 : 200);
      if (mode === "basic") {
        const auth = `Basic ${Buffer.from(`${reg.username}:${reg.password}`).toString("base64")}`;
        expect((await get(`${reg.url}/v2/`, { authorization: auth })).status).toBe(200);
      }
      if (mode === "token") {
        const challenge = String(anon.headers["www-authenticate"]);
        const realm = /realm="([^"]+)"/.exec(challenge)?.[1];
        const service = /service="([^"]+)"/.exec(challenge)?.[1];
        expect(realm).toBeDefined();
        const auth = `Basic ${Buffer.from(`${reg.username}:${reg.password}`).toString("base64")}`;
        const tok = await get(`${realm}?service=${service}&scope=repository:a/b:pull`, { authorization: auth });
        expect(tok.status).toBe(200);
        const token = JSON.parse(tok.body).token as string;
        const tags = await get(`${reg.url}/v2/a/b/tags/list`, { authorization: `Bearer ${token}` });
        // Authorized, the repository simply does not exist yet.
        expect(tags.status).toBe(404);
        expect(tags.body).toContain("NAME_UNKNOWN");
        expect(reg.tokenRequests?.at(-1)?.scopes).toEqual(["repository:a/b:pull"]);
      }
    } finally {
      await reg.stop();
    }
    await expect(get(`${reg.url}/v2/`)).rejects.toThrow();
  });
});
