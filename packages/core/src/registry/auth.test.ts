import { describe, expect, it } from "vitest";
import { mergeScopes, parseTokenResponse, parseWWWAuthenticate, TokenCache } from "./auth.js";

describe("parseWWWAuthenticate", () => {
  it("parses a bearer challenge with quoted parameters", () => {
    expect(parseWWWAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"')).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:samalba/my-app:pull,push" } },
    ]);
  });
  it("parses basic, unquoted values, escapes, several challenges and several headers", () => {
    expect(parseWWWAuthenticate('Basic realm="test-realm"')).toEqual([{ scheme: "basic", params: { realm: "test-realm" } }]);
    expect(parseWWWAuthenticate('Bearer realm=https://a/token, error="insufficient_scope", Basic realm="r\\"x"')).toEqual([
      { scheme: "bearer", params: { realm: "https://a/token", error: "insufficient_scope" } },
      { scheme: "basic", params: { realm: 'r"x' } },
    ]);
    expect(parseWWWAuthenticate(["Basic realm=a", 'Bearer realm="b"'])).toEqual([
      { scheme: "basic", params: { realm: "a" } },
      { scheme: "bearer", params: { realm: "b" } },
    ]);
    expect(parseWWWAuthenticate(undefined)).toEqual([]);
    expect(parseWWWAuthenticate("")).toEqual([]);
  });
});

describe("mergeScopes", () => {
  it("unites actions per resource and sorts, so equal sets give equal keys", () => {
    expect(mergeScopes(["repository:a:push", "repository:a:pull"])).toEqual(["repository:a:pull,push"]);
    expect(mergeScopes(["repository:b:pull", "repository:a:pull,push", "repository:a:pull"])).toEqual(["repository:a:pull,push", "repository:b:pull"]);
    expect(mergeScopes(["repository:a:pull", "repository:a:*"])).toEqual(["repository:a:*"]);
    expect(mergeScopes(["registry:catalog:*"])).toEqual(["registry:catalog:*"]);
  });
});

describe("parseTokenResponse", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  it("accepts token or access_token and computes the expiry (renewed 10 s early, at least 60 s)", () => {
    expect(parseTokenResponse('{"token":"t","expires_in":300}', now)).toEqual({ token: "t", expiresAt: now + 290_000 });
    expect(parseTokenResponse('{"access_token":"a"}', now)).toEqual({ token: "a", expiresAt: now + 50_000 });
    expect(parseTokenResponse('{"token":"t","expires_in":5}', now)?.expiresAt).toBe(now + 50_000);
    expect(parseTokenResponse('{"token":"t","expires_in":300,"issued_at":"2025-12-31T23:59:00Z"}', now)?.expiresAt).toBe(now - 60_000 + 290_000);
    expect(parseTokenResponse('{"access_token":"a","refresh_token":"r"}', now)?.refreshToken).toBe("r");
  });
  it("rejects answers without a token", () => {
    expect(parseTokenResponse("{}", now)).toBeUndefined();
    expect(parseTokenResponse("not json", now)).toBeUndefined();
    expect(parseTokenResponse('{"token":""}', now)).toBeUndefined();
  });
});

describe("TokenCache", () => {
  it("shares one fetch between concurrent callers, caches until expiry, and forgets on invalidate", async () => {
    const cache = new TokenCache();
    let fetches = 0;
    const fetch = async () => {
      fetches++;
      await new Promise((r) => setTimeout(r, 5));
      return { token: `t${fetches}`, expiresAt: Date.now() + 60_000 };
    };
    const [a, b] = await Promise.all([cache.get(["s"], fetch), cache.get(["s"], fetch)]);
    expect(a.token).toBe("t1");
    expect(b.token).toBe("t1");
    expect((await cache.get(["s"], fetch)).token).toBe("t1");
    expect((await cache.get(["other"], fetch)).token).toBe("t2");
    cache.invalidate(["s"]);
    expect((await cache.get(["s"], fetch)).token).toBe("t3");
    expect((await cache.get(["s"], fetch, Date.now() + 120_000)).token).toBe("t4");
  });
  it("does not cache a failed fetch", async () => {
    const cache = new TokenCache();
    await expect(cache.get(["s"], async () => Promise.reject(new Error("no")))).rejects.toThrow("no");
    expect((await cache.get(["s"], async () => ({ token: "ok", expiresAt: Date.now() + 60_000 }))).token).toBe("ok");
  });
});
