/**
 * Shared registry clients against the real CNCF distribution registry with a token server: images
 * of one registry opened at the same time ping it once and ask once for a token per scope; a client
 * closes with its last holder; other settings, or test hooks, get a client of their own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../../../../test/harness/registry.js";
import type { Digest } from "../digest.js";
import { parseImageName } from "../transports/index.js";
import "../transports/all.js";
import { setRegistryDebugLogger } from "./http.js";
import { acquireRegistryClient } from "./shared.js";

const MISSING = `sha256:${"0".repeat(64)}` as Digest;

describe("shared registry clients", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "token" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("destinations of one registry open at once share one ping and one token per scope", async () => {
    const ctx = { docker: { credentials: { username: reg.username as string, password: reg.password as string } } };
    const requests: string[] = [];
    setRegistryDebugLogger((line) => requests.push(line));
    const tokensBefore = reg.tokenRequests?.length ?? 0;
    const opened = [];
    try {
      for (const tag of ["1", "2", "3"]) opened.push(await parseImageName(`docker://${reg.host}/shared/app:${tag}`).newDestination({ ...ctx }));
      for (const d of opened) expect(await d.hasManifest(MISSING)).toBe(false);
    } finally {
      await Promise.all(opened.map((d) => d.close()));
      setRegistryDebugLogger(undefined);
    }
    expect(requests.filter((r) => r.startsWith("GET ") && r.includes("/v2/ →"))).toHaveLength(1);
    expect(requests.filter((r) => r.startsWith("HEAD "))).toHaveLength(3);
    expect((reg.tokenRequests?.length ?? 0) - tokensBefore).toBe(1);
  });

  it("a client lives while held; other settings and test hooks get their own", async () => {
    const a = acquireRegistryClient(reg.host, { retryTimes: 1, lookaside: "file:///a" });
    const b = acquireRegistryClient(reg.host, { lookaside: "file:///b", retryTimes: 1 });
    const other = acquireRegistryClient(reg.host, { retryTimes: 2 });
    const hooked = acquireRegistryClient(reg.host, { retryTimes: 1 }, { resumeDelayMs: 1 });
    expect(b.client).toBe(a.client); // signature locations do not change how the registry is spoken to
    expect(other.client).not.toBe(a.client);
    expect(hooked.client).not.toBe(a.client);
    await a.release();
    await a.release(); // idempotent: b still holds the client
    const c = acquireRegistryClient(reg.host, { retryTimes: 1 });
    expect(c.client).toBe(b.client);
    await Promise.all([b.release(), c.release(), other.release(), hooked.release()]);
    const d = acquireRegistryClient(reg.host, { retryTimes: 1 });
    expect(d.client).not.toBe(a.client);
    await d.release();
  });
});
