/**
 * Faults a real registry does not produce on demand, injected by a proxy in front of the real
 * docker-registry (or, where a registry feature is missing in distribution 2.8, by a small fake):
 * connections cut mid-blob and mid-upload, 429 with Retry-After, 5xx, redirects to storage,
 * tag pagination, a 401 that asks for a wider scope.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { type AirlockError, type DockerImageReference, digestOf, listTags, parseImageName, RegistryClient } from "@airlock/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Fault, type FaultProxy, type ProxiedRequest, startFaultProxy } from "../harness/proxy.js";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { makeImage, pullImage, pushImage, readAll, type TestImage } from "./util.js";

describe("faults between airlock and a real registry", () => {
  let reg: RunningRegistry;
  let image: TestImage;
  let proxy: FaultProxy | undefined;
  let fault: (req: ProxiedRequest, all: ProxiedRequest[]) => Fault = () => undefined;

  beforeAll(async () => {
    reg = await startRegistry({ mode: "plain" });
    image = makeImage([1024 * 1024, 2000]);
    const dest = await parseImageName(`docker://${reg.host}/faults/app:v1`).newDestination({});
    await pushImage(dest, image).finally(() => dest.close());
  });
  afterAll(async () => {
    await reg?.stop();
  });
  afterEach(async () => {
    await proxy?.stop();
    proxy = undefined;
    fault = () => undefined;
  });

  const viaProxy = async (f: typeof fault) => {
    fault = f;
    proxy = await startFaultProxy(reg.url, (r, all) => fault(r, all));
    return proxy;
  };
  const bigLayer = () => image.layers[0]!;
  const isBlobGet = (r: ProxiedRequest) => r.method === "GET" && r.url.includes(`/blobs/${bigLayer().digest}`);

  it("resumes a blob download cut mid-body with a Range request; the stream is seamless and the digest right", async () => {
    const p = await viaProxy((r, all) => (isBlobGet(r) && all.filter(isBlobGet).length <= 2 ? { cutResponseAfter: 300_000 } : undefined));
    const client = new RegistryClient(p.host, { retryDelayMs: 10 }, { resumeDelayMs: 5 });
    try {
      const { stream, size } = await client.repository("faults/app").getBlob(bigLayer().digest);
      expect(size).toBe(bigLayer().size);
      const data = await readAll(stream);
      expect(digestOf(data)).toBe(bigLayer().digest);
    } finally {
      await client.close();
    }
    // Each resume starts where the client stopped receiving (at most where the proxy cut).
    const ranges = p.requests.filter(isBlobGet).map((r) => r.headers.range);
    expect(ranges.length).toBe(3);
    expect(ranges[0]).toBeUndefined();
    const first = Number(/^bytes=(\d+)-$/.exec(String(ranges[1]))?.[1]);
    const second = Number(/^bytes=(\d+)-$/.exec(String(ranges[2]))?.[1]);
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(300_000);
    expect(second).toBeGreaterThan(first);
    expect(second).toBeLessThanOrEqual(first + 300_000);
  });

  it("resumes through the docker:// source and the copy of the whole image still verifies", async () => {
    const p = await viaProxy((r, all) => (isBlobGet(r) && all.filter(isBlobGet).length === 1 ? { cutResponseAfter: 123_457 } : undefined));
    const src = await parseImageName(`docker://${p.host}/faults/app:v1`).newSource({});
    try {
      const { manifest, blobs } = await pullImage(src);
      expect(manifest.digest).toBe(image.manifest.digest);
      expect(blobs.get(bigLayer().digest)?.length).toBe(bigLayer().size);
    } finally {
      await src.close();
    }
    const ranges = p.requests.filter(isBlobGet).map((r) => r.headers.range);
    expect(ranges.length).toBe(2);
    expect(Number(/^bytes=(\d+)-$/.exec(String(ranges[1]))?.[1])).toBeGreaterThan(0);
  });

  it("gives up after repeated cuts without progress", async () => {
    const p = await viaProxy((r) => (isBlobGet(r) ? { cutResponseAfter: r.headers.range ? 0 : 1000 } : undefined));
    const client = new RegistryClient(p.host, { retryDelayMs: 1 }, { resumeDelayMs: 1 });
    try {
      const { stream } = await client.repository("faults/app").getBlob(bigLayer().digest);
      await expect(readAll(stream)).rejects.toThrow();
    } finally {
      await client.close();
    }
    // The first request and 5 resumes.
    expect(p.requests.filter(isBlobGet).length).toBe(6);
  });

  it("honours Retry-After on a 429 and then succeeds", async () => {
    const isManifest = (r: ProxiedRequest) => r.url.includes("/manifests/v1");
    const p = await viaProxy((r, all) =>
      isManifest(r) && all.filter(isManifest).length === 1
        ? { respond: { status: 429, headers: { "retry-after": "1", "content-type": "application/json" }, body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}' } }
        : undefined,
    );
    const src = await parseImageName(`docker://${p.host}/faults/app:v1`).newSource({ docker: { retryDelayMs: 1 } });
    try {
      expect((await src.getManifest()).digest).toBe(image.manifest.digest);
    } finally {
      await src.close();
    }
    const tries = p.requests.filter(isManifest);
    expect(tries.length).toBe(2);
    // The registry's Retry-After (1 s) wins over --retry-delay (1 ms).
    expect(tries[1]!.time - tries[0]!.time).toBeGreaterThanOrEqual(900);
  });

  it("retries a 500 and succeeds; fails with a retryable ERR_REGISTRY after --retry-times", async () => {
    const isHead = (r: ProxiedRequest) => r.method === "HEAD" && r.url.includes("/blobs/");
    let failures = 1;
    const p = await viaProxy((r, all) => (isHead(r) && all.filter(isHead).length <= failures ? { respond: { status: 500, body: "boom" } } : undefined));
    const client = new RegistryClient(p.host, { retryDelayMs: 5, retryTimes: 2 });
    try {
      expect(await client.repository("faults/app").headBlob(bigLayer().digest)).toBe(bigLayer().size);
      failures = 100;
      const err = (await client.repository("faults/app").headBlob(bigLayer().digest).catch((e: unknown) => e)) as AirlockError;
      expect(err.code).toBe("ERR_REGISTRY");
      expect(err.retryable).toBe(true);
      expect(err.message).toContain("500");
      expect(err.message).toContain("--retry-times");
    } finally {
      await client.close();
    }
    // 1 failure + 1 success, then 1 + 2 retries.
    expect(p.requests.filter(isHead).length).toBe(5);
  });

  it("resumes a chunked upload after a failed PATCH from the offset the registry reports", async () => {
    const isPatch = (r: ProxiedRequest) => r.method === "PATCH";
    const p = await viaProxy((r, all) => (isPatch(r) && all.filter(isPatch).length === 2 ? { respond: { status: 503, body: "try again" } } : undefined));
    const data = randomBytes(400_000);
    const digest = digestOf(data);
    const client = new RegistryClient(p.host, { retryDelayMs: 5 }, { monolithicUploadMax: 64 * 1024, uploadChunkSize: 100_000 });
    try {
      await client.repository("faults/upload", "push").putBlob({ digest, size: data.length }, Readable.from([data]));
      const { stream } = await client.repository("faults/upload").getBlob(digest);
      expect(digestOf(await readAll(stream))).toBe(digest);
    } finally {
      await client.close();
    }
    const statusChecks = p.requests.filter((r) => r.method === "GET" && r.url.includes("/blobs/uploads/"));
    expect(statusChecks.length).toBe(1);
    const ranges = p.requests.filter(isPatch).map((r) => r.headers["content-range"]);
    expect(ranges).toEqual(["0-99999", "100000-199999", "100000-199999", "200000-299999", "300000-399999"]);
  });

  it("fails a chunked upload cut mid-PATCH with a retryable error when the registry cannot resume it, storing nothing", async () => {
    // distribution keeps the upload state in the client-held _state, which a partial PATCH invalidates.
    const isPatch = (r: ProxiedRequest) => r.method === "PATCH";
    const p = await viaProxy((r, all) => (isPatch(r) && all.filter(isPatch).length === 2 ? { cutRequestAfter: 10_000 } : undefined));
    const data = randomBytes(300_000);
    const digest = digestOf(data);
    const client = new RegistryClient(p.host, { retryDelayMs: 5 }, { monolithicUploadMax: 64 * 1024, uploadChunkSize: 100_000 });
    try {
      const err = (await client.repository("faults/upload2", "push").putBlob({ digest, size: data.length }, Readable.from([data])).catch((e: unknown) => e)) as AirlockError;
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(/retry/);
      expect(await client.repository("faults/upload2").headBlob(digest)).toBeUndefined();
    } finally {
      await client.close();
    }
    // The session was cancelled.
    expect(p.requests.filter((r) => r.method === "DELETE").length).toBe(1);
  });

  it("retries a small upload whole on a new session after a 503", async () => {
    const isPut = (r: ProxiedRequest) => r.method === "PUT" && r.url.includes("/blobs/uploads/");
    const p = await viaProxy((r, all) => (isPut(r) && all.filter(isPut).length === 1 ? { respond: { status: 503 } } : undefined));
    const data = randomBytes(10_000);
    const client = new RegistryClient(p.host, { retryDelayMs: 5 });
    try {
      await client.repository("faults/small", "push").putBlob({ digest: digestOf(data), size: data.length }, Readable.from([data]));
      expect(await client.repository("faults/small").headBlob(digestOf(data))).toBe(data.length);
    } finally {
      await client.close();
    }
    expect(p.requests.filter((r) => r.method === "POST").length).toBe(2);
  });

  it("follows a blob redirect to storage without sending the registry's credentials there", async () => {
    const storageSeen: IncomingMessage["headers"][] = [];
    const storage = await serve((req, res) => {
      storageSeen.push(req.headers);
      const data = image.blobs.get(bigLayer().digest) as Buffer;
      res.writeHead(200, { "content-length": String(data.length) });
      res.end(data);
    });
    // A registry with basic auth, so that the client does send credentials to it.
    const basic = await startRegistry({ mode: "basic" });
    const p = await startFaultProxy(basic.url, (r) =>
      isBlobGet(r) ? { respond: { status: 307, headers: { location: `http://${storage.host}/bucket/blob?sig=x` } } } : undefined,
    );
    try {
      const client = new RegistryClient(p.host, { credentials: { username: basic.username!, password: basic.password! } });
      try {
        const { stream } = await client.repository("faults/app").getBlob(bigLayer().digest);
        expect(digestOf(await readAll(stream))).toBe(bigLayer().digest);
      } finally {
        await client.close();
      }
      expect(p.requests.find(isBlobGet)?.headers.authorization).toMatch(/^Basic /);
      expect(storageSeen.length).toBe(1);
      expect(storageSeen[0]?.authorization).toBeUndefined();
    } finally {
      await Promise.all([p.stop(), storage.stop(), basic.stop()]);
    }
  });

  it("aborts a download when the signal fires", async () => {
    const client = new RegistryClient(reg.host, {});
    const ac = new AbortController();
    try {
      const { stream } = await client.repository("faults/app").getBlob(bigLayer().digest, { signal: ac.signal });
      ac.abort();
      await expect(readAll(stream)).rejects.toThrow();
      await expect(client.repository("faults/app").getBlob(bigLayer().digest, { signal: ac.signal })).rejects.toMatchObject({ code: "ERR_ABORTED" });
    } finally {
      await client.close();
    }
  });
});

interface Fake {
  host: string;
  stop(): Promise<void>;
}

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Fake> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const a = server.address();
  const port = typeof a === "object" && a ? a.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("registry features distribution 2.8 lacks, against a fake", () => {
  it("follows Link pagination of the tag list", async () => {
    const all = Array.from({ length: 7 }, (_, i) => `v${i}`);
    const seen: string[] = [];
    const fake = await serve((req, res) => {
      const u = new URL(req.url ?? "/", "http://x");
      seen.push(u.search);
      if (u.pathname === "/v2/") return void res.end("{}");
      const n = Number(u.searchParams.get("n") ?? 100);
      const last = u.searchParams.get("last");
      const start = last === null ? 0 : all.indexOf(last) + 1;
      const page = all.slice(start, start + n);
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (start + n < all.length) headers.link = `</v2/org/app/tags/list?n=${n}&last=${page.at(-1)}>; rel="next"`;
      res.writeHead(200, headers);
      res.end(JSON.stringify({ name: "org/app", tags: page }));
    });
    try {
      const tags = await listTags(parseImageName(`docker://${fake.host}/org/app`) as DockerImageReference, {}, { pageSize: 3 });
      expect(tags).toEqual(all);
      expect(seen.filter((s) => s.includes("n=3"))).toEqual(["?n=3", "?n=3&last=v2", "?n=3&last=v5"]);
    } finally {
      await fake.stop();
    }
  });

  it("times out a registry that never answers, with ERR_TIMEOUT after the retries", async () => {
    let stalled = 0;
    const fake = await serve((req, res) => {
      if (req.url === "/v2/") return void res.end("{}");
      stalled++; // never answered
    });
    const c = new RegistryClient(fake.host, { retryTimes: 1, retryDelayMs: 1 }, { timeouts: { headersMs: 150 } });
    try {
      const err = (await c.repository("org/app").getManifest("v1").catch((e: unknown) => e)) as AirlockError;
      expect(err.code).toBe("ERR_TIMEOUT");
      expect(err.message).toMatch(/timed out/);
      expect(err.retryable).toBe(true);
      // The first attempt and one retry.
      expect(stalled).toBe(2);
    } finally {
      await c.close();
      await fake.stop();
    }
  });

  it("asks for the scope a 401 names (insufficient_scope) and retries once", async () => {
    const tokenScopes: string[][] = [];
    let fakeHost = "";
    const fake = await serve((req, res) => {
      const u = new URL(req.url ?? "/", "http://x");
      if (u.pathname === "/token") {
        const scopes = u.searchParams.getAll("scope");
        tokenScopes.push(scopes);
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(JSON.stringify({ access_token: `tok:${scopes.join(" ")}`, expires_in: 300 }));
      }
      const challenge = (scope?: string) =>
        `Bearer realm="http://${fakeHost}/token",service="fake"${scope ? `,scope="${scope}",error="insufficient_scope"` : ""}`;
      if (u.pathname === "/v2/") {
        res.writeHead(401, { "www-authenticate": challenge() });
        return void res.end();
      }
      // This registry wants push rights even to list tags.
      if (req.headers.authorization !== "Bearer tok:repository:org/app:pull,push") {
        res.writeHead(401, { "www-authenticate": challenge("repository:org/app:push"), "content-type": "application/json" });
        return void res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ name: "org/app", tags: ["a"] }));
    });
    fakeHost = fake.host;
    try {
      expect(await listTags(parseImageName(`docker://${fake.host}/org/app`) as DockerImageReference, {})).toEqual(["a"]);
      expect(tokenScopes).toEqual([["repository:org/app:pull"], ["repository:org/app:pull,push"]]);
    } finally {
      await fake.stop();
    }
  });
});
