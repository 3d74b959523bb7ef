import { describe, expect, it } from "vitest";
import { AirlockError } from "../errors.js";
import { BACKOFF_BASE_MS, isRetryableNetworkError, isRetryableStatus, MAX_RETRY_WAIT_MS, parseRetryAfter, retryDelay, sleep } from "./retry.js";

describe("retry policy", () => {
  it("retries 408, 429 and 5xx but not other statuses", () => {
    for (const s of [408, 429, 500, 502, 503, 504]) expect(isRetryableStatus(s)).toBe(true);
    for (const s of [200, 400, 401, 403, 404, 405, 501]) expect(isRetryableStatus(s)).toBe(false);
  });
  it("recognises transient network errors, also as causes", () => {
    expect(isRetryableNetworkError(Object.assign(new Error("x"), { code: "ECONNRESET" }))).toBe(true);
    expect(isRetryableNetworkError(Object.assign(new Error("x"), { code: "UND_ERR_SOCKET" }))).toBe(true);
    expect(isRetryableNetworkError(new Error("wrapped", { cause: Object.assign(new Error("x"), { code: "ETIMEDOUT" }) }))).toBe(true);
    expect(isRetryableNetworkError(Object.assign(new Error("x"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" }))).toBe(false);
    expect(isRetryableNetworkError(new AirlockError("ERR_REGISTRY", "x", { retryable: true }))).toBe(true);
    expect(isRetryableNetworkError(new AirlockError("ERR_DIGEST_MISMATCH", "x"))).toBe(false);
  });
  it("parses Retry-After as seconds or an HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:10 GMT", now)).toBe(10_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:10 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
  it("waits Retry-After, else the fixed delay, else exponential backoff with jitter, bounded", () => {
    expect(retryDelay(0, { retries: 3 }, 2500)).toBe(2500);
    expect(retryDelay(0, { retries: 3, delayMs: 100 }, 2500)).toBe(2500);
    expect(retryDelay(5, { retries: 3, delayMs: 100 })).toBe(100);
    for (let attempt = 0; attempt < 4; attempt++) {
      const d = retryDelay(attempt, { retries: 3 });
      const base = BACKOFF_BASE_MS * 2 ** attempt;
      expect(d).toBeGreaterThanOrEqual(base * 0.75);
      expect(d).toBeLessThanOrEqual(base * 1.25);
    }
    expect(retryDelay(30, { retries: 3 })).toBe(MAX_RETRY_WAIT_MS);
  });
  it("sleeps until aborted", async () => {
    const ac = new AbortController();
    const p = sleep(10_000, ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: "ERR_ABORTED" });
  });
});
