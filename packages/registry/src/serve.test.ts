import { mkdtempSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { serve } from "./serve.js";

const root = mkdtempSync(join(tmpdir(), "airlock-serve-"));
afterAll(() => fs.rm(root, { recursive: true, force: true }));

describe("serve", () => {
  it("needs exactly one of a store or a bundle, and a TLS certificate with its key", async () => {
    await expect(serve({ listen: "127.0.0.1:0" })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
    await expect(serve({ root, bundle: ["x.tar"], listen: "127.0.0.1:0" })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
    await expect(serve({ root, listen: "127.0.0.1:0", tlsCert: "cert.pem" })).rejects.toThrow(/certificate and its key/);
  });

  it("refuses a directory that is not a layout, and a read-only store that does not exist", async () => {
    const notLayout = join(root, "not-layout");
    await fs.mkdir(notLayout);
    await fs.writeFile(join(notLayout, "file"), "x");
    await expect(serve({ root: notLayout, listen: "127.0.0.1:0" })).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
    await expect(serve({ root: join(root, "missing"), listen: "127.0.0.1:0", readOnly: true })).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
  });

  it("creates a new store, reports where it listens, and shuts down when its signal is aborted", async () => {
    const ac = new AbortController();
    const s = await serve({ root: join(root, "new"), listen: "127.0.0.1:0", signal: ac.signal });
    expect(s.url).toBe(`http://${s.host}`);
    expect(s.host).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(s.readOnly).toBe(false);
    expect((await fetch(`${s.url}/v2/`)).status).toBe(200);
    expect(JSON.parse(await fs.readFile(join(root, "new", "index.json"), "utf8"))).toMatchObject({ schemaVersion: 2, manifests: [] });
    ac.abort();
    await s.closed;
    await expect(fetch(`${s.url}/v2/`)).rejects.toThrow();
  });

  it("fails with ERR_IO when the address is taken", async () => {
    const a = await serve({ root: join(root, "a"), listen: "127.0.0.1:0" });
    try {
      await expect(serve({ root: join(root, "b"), listen: a.host })).rejects.toMatchObject({ code: "ERR_IO", message: expect.stringMatching(/cannot listen on/) });
    } finally {
      await a.close();
    }
  });
});
