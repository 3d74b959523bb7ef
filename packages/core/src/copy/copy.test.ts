import { describe, expect, it } from "vitest";
import { makeImage, makeIndex, MemoryStore } from "../../../../test/support/memory-transport.js";
import { copyImage } from "./copy.js";
import type { ProgressEvent } from "../progress.js";

describe("copyImage", () => {
  it("copies blobs, then the manifest, then commits; digests unchanged", async () => {
    const src = new MemoryStore();
    const m = makeImage(src, { layers: ["layer one", "layer two".repeat(100)], name: "app" });
    const dst = new MemoryStore();
    const events: ProgressEvent[] = [];
    const r = await copyImage(src.ref("app"), dst.ref("copy"), { onProgress: (e) => events.push(e) });
    expect(r.digest).toBe(m.digest);
    expect(r.blobsCopied).toBe(3);
    expect(dst.names.get("copy")).toBe(m.digest);
    expect(dst.log.slice(-3)).toEqual([`putManifest ${m.digest} top`, "commit", "close"]);
    for (const b of m.blobs()) expect(dst.blobs.get(b.digest)).toEqual(src.blobs.get(b.digest));
    expect(events.filter((e) => e.type === "blob-done")).toHaveLength(3);
  });

  it("skips blobs the destination has and a second copy moves nothing", async () => {
    const src = new MemoryStore();
    makeImage(src, { layers: ["a", "b"], name: "app" });
    const dst = new MemoryStore();
    await copyImage(src.ref("app"), dst.ref("x"));
    const calls = src.getBlobCalls;
    const r = await copyImage(src.ref("app"), dst.ref("y"));
    expect(r.blobsCopied).toBe(0);
    expect(r.blobsSkipped).toBe(3);
    expect(src.getBlobCalls).toBe(calls);
  });

  it("refuses a blob whose content does not match its digest and commits nothing", async () => {
    const src = new MemoryStore();
    const m = makeImage(src, { layers: ["good layer"], name: "app" });
    const layer = m.image.layers[0]!;
    src.tamper.set(layer.digest, Buffer.from("evil layer"));
    const dst = new MemoryStore();
    await expect(copyImage(src.ref("app"), dst.ref("x"))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(dst.names.size).toBe(0);
    expect(dst.log).not.toContain("commit");
    expect(dst.log.at(-1)).toBe("close (no commit)");
  });

  it("refuses a truncated blob (size mismatch)", async () => {
    const src = new MemoryStore();
    const m = makeImage(src, { layers: ["0123456789"], name: "app" });
    src.tamper.set(m.image.layers[0]!.digest, Buffer.from("01234"));
    const dst = new MemoryStore();
    await expect(copyImage(src.ref("app"), dst.ref("x"))).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
    expect(dst.names.size).toBe(0);
  });

  it("refuses a blob longer than its descriptor says as soon as the excess arrives", async () => {
    const src = new MemoryStore();
    const m = makeImage(src, { layers: ["short"], name: "app" });
    src.tamper.set(m.image.layers[0]!.digest, Buffer.from("short and then a lot more"));
    await expect(copyImage(src.ref("app"), new MemoryStore().ref("x"))).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
  });

  describe("indexes", () => {
    const build = () => {
      const src = new MemoryStore();
      const amd = makeImage(src, { layers: ["shared", "amd64 only"], arch: "amd64" });
      const arm = makeImage(src, { layers: ["shared", "arm64 only"], arch: "arm64" });
      const index = makeIndex(src, [{ manifest: amd, arch: "amd64" }, { manifest: arm, arch: "arm64", variant: "v8" }], "multi");
      return { src, amd, arm, index };
    };

    it("system mode copies the image for the requested platform (arm64 ≡ arm64/v8)", async () => {
      const { src, arm } = build();
      const dst = new MemoryStore();
      const r = await copyImage(src.ref("multi"), dst.ref("x"), { platform: { os: "linux", architecture: "arm64" } });
      expect(r.digest).toBe(arm.digest);
      expect(dst.names.get("x")).toBe(arm.digest);
    });

    it("system mode names the platforms there are when none matches", async () => {
      const { src } = build();
      await expect(copyImage(src.ref("multi"), new MemoryStore().ref("x"), { platform: { os: "linux", architecture: "s390x" } })).rejects.toThrow(/linux\/amd64, linux\/arm64\/v8.*--override-arch/);
    });

    it("all mode copies children before the index, shared blobs once", async () => {
      const { src, amd, arm, index } = build();
      const dst = new MemoryStore();
      const r = await copyImage(src.ref("multi"), dst.ref("x"), { multiArch: "all" });
      expect(r.digest).toBe(index.digest);
      expect(r.blobsCopied).toBe(5); // 2 configs, shared, amd64 only, arm64 only
      const order = dst.log.filter((l) => l.startsWith("putManifest"));
      expect(order).toEqual(expect.arrayContaining([`putManifest ${amd.digest}`, `putManifest ${arm.digest}`]));
      expect(order.at(-1)).toBe(`putManifest ${index.digest} top`);
    });

    it("index-only mode refuses when the destination lacks the images", async () => {
      const { src } = build();
      await expect(copyImage(src.ref("multi"), new MemoryStore().ref("x"), { multiArch: "index-only" })).rejects.toThrow(/lacks sha256:.*--all/);
    });

    it("index-only mode writes the index when the images are there", async () => {
      const { src, index } = build();
      const dst = new MemoryStore();
      await copyImage(src.ref("multi"), dst.ref("x"), { multiArch: "all" });
      const r = await copyImage(src.ref("multi"), dst.ref("y"), { multiArch: "index-only" });
      expect(r.digest).toBe(index.digest);
      expect(r.blobsCopied).toBe(0);
    });

    it("refuses an index for a destination that cannot store indexes", async () => {
      const { src } = build();
      const dst = new MemoryStore();
      dst.capabilities = { ...dst.capabilities, indexes: false };
      await expect(copyImage(src.ref("multi"), dst.ref("x"), { multiArch: "all" })).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
    });
  });

  it("refuses a manifest type the destination does not accept, naming it", async () => {
    const src = new MemoryStore();
    makeImage(src, { layers: ["x"], docker: true, name: "app" });
    const dst = new MemoryStore();
    dst.capabilities = { ...dst.capabilities, manifestMediaTypes: ["application/vnd.oci.image.manifest.v1+json"] };
    await expect(copyImage(src.ref("app"), dst.ref("x"), { preserveDigests: true })).rejects.toThrow(/docker.distribution.manifest.v2\+json.*preserve-digests/);
  });

  it("stops when aborted", async () => {
    const src = new MemoryStore();
    makeImage(src, { layers: ["x"], name: "app" });
    const ac = new AbortController();
    ac.abort();
    await expect(copyImage(src.ref("app"), new MemoryStore().ref("x"), { signal: ac.signal })).rejects.toThrow();
  });
});
