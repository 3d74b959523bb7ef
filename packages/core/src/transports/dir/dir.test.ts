import { existsSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makeImage, makeIndex, MemoryStore } from "../../../../../test/support/memory-transport.js";
import { copyImage } from "../../copy/copy.js";
import { type Digest, digestOf } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import { parseImageName } from "../index.js";
import "../all.js";
import type { ImageSource } from "../types.js";
import { isDirContentFile } from "./format.js";
import { DirReference } from "./reference.js";

const fixtures = fileURLToPath(new URL("../../../../../fixtures/", import.meta.url));

let tmp: string;
let target: string;
beforeEach(async () => {
  tmp = await fs.mkdtemp(join(tmpdir(), "airlock-dir-"));
  target = join(tmp, "image");
});
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

const dirRef = (p: string) => DirReference.parse(p);
const hex = (d: string) => d.slice("sha256:".length);
const ls = async (p = target) => (await fs.readdir(p)).sort();

async function readAll(src: ImageSource, digest: Digest, offset?: number): Promise<Buffer> {
  const { stream } = await src.getBlob({ mediaType: "application/octet-stream", digest, size: -1 }, offset === undefined ? {} : { offset });
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("dir: references", () => {
  it("takes everything after dir: as the path, colons included", () => {
    const ref = dirRef("/tmp/a:b");
    expect(ref.path).toBe("/tmp/a:b");
    expect(ref.toString()).toBe("dir:/tmp/a:b");
    expect(ref.dockerReference()).toBeUndefined();
    expect(parseImageName("dir:./img")).toBeInstanceOf(DirReference);
    expect(() => dirRef("")).toThrow(expect.objectContaining({ code: "ERR_INVALID_REFERENCE" }));
  });
});

describe("dir: write then read", () => {
  it("writes skopeo's files and reads them back with the same digests", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["layer one", "layer two".repeat(500)], name: "app" });
    await copyImage(store.ref("app"), dirRef(target));
    expect(await fs.readFile(join(target, "version"), "utf8")).toBe("Directory Transport Version: 1.1\n");
    expect(await fs.readFile(join(target, "manifest.json"))).toEqual(Buffer.from(m.bytes));
    expect(await ls()).toEqual(["manifest.json", "version", ...m.blobs().map((b) => hex(b.digest))].sort());

    const src = await dirRef(target).newSource();
    const got = await src.getManifest();
    expect(got.digest).toBe(m.digest);
    expect(got.mediaType).toBe(MediaType.OCIManifest);
    expect((await src.getManifest(m.digest)).digest).toBe(m.digest);
    for (const b of m.blobs()) expect(await readAll(src, b.digest)).toEqual(store.blobs.get(b.digest));
    const big = m.image.layers[1]!;
    expect(await readAll(src, big.digest, 7)).toEqual(store.blobs.get(big.digest)!.subarray(7));
  });

  it("writes an index as manifest.json and its images as <hex>.manifest.json", async () => {
    const store = new MemoryStore();
    const amd = makeImage(store, { layers: ["amd"], arch: "amd64" });
    const arm = makeImage(store, { layers: ["arm"], arch: "arm64" });
    const index = makeIndex(store, [{ manifest: amd, arch: "amd64" }, { manifest: arm, arch: "arm64" }], "multi");
    await copyImage(store.ref("multi"), dirRef(target), { multiArch: "all" });
    expect(await fs.readFile(join(target, "manifest.json"))).toEqual(Buffer.from(index.bytes));
    expect(await fs.readFile(join(target, `${hex(amd.digest)}.manifest.json`))).toEqual(Buffer.from(amd.bytes));
    const back = new MemoryStore();
    const r = await copyImage(dirRef(target), back.ref("copy"), { multiArch: "all" });
    expect(r.digest).toBe(index.digest);
    expect(back.manifests.get(arm.digest)?.digest).toBe(arm.digest);
    // Copying the same index again moves nothing.
    const again = await copyImage(store.ref("multi"), dirRef(target), { multiArch: "all" });
    expect(again.blobsCopied).toBe(0);
    expect(await ls()).toContain(`${hex(arm.digest)}.manifest.json`);
  });

  it("keeps Docker v2s2 manifests as they are", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["d"], docker: true, name: "d" });
    await copyImage(store.ref("d"), dirRef(target));
    const got = await (await dirRef(target).newSource()).getManifest();
    expect(got.mediaType).toBe(MediaType.DockerManifest);
    expect(got.digest).toBe(m.digest);
  });

  it("names non-sha256 blobs <alg>-<hex> and then writes version 1.2", async () => {
    const layer = Buffer.from("a sha512 layer");
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux" }));
    const layerDesc = { mediaType: MediaType.OCILayerGzip, digest: digestOf(layer, "sha512"), size: layer.length };
    const configDesc = { mediaType: MediaType.OCIConfig, digest: digestOf(config), size: config.length };
    const m = Manifest.fromJSON({ schemaVersion: 2, mediaType: MediaType.OCIManifest, config: configDesc, layers: [layerDesc] }, MediaType.OCIManifest);
    const dst = await dirRef(target).newDestination();
    await dst.putBlob(configDesc, Readable.from([config]));
    await dst.putBlob(layerDesc, Readable.from([layer]));
    await dst.putManifest(m, { topLevel: true });
    await dst.commit();
    await dst.close();
    expect(await ls()).toContain(`sha512-${layerDesc.digest.slice("sha512:".length)}`);
    expect(await fs.readFile(join(target, "version"), "utf8")).toBe("Directory Transport Version: 1.2\n");
    expect(await readAll(await dirRef(target).newSource(), layerDesc.digest)).toEqual(layer);
  });
});

describe("dir: updating an existing image in place", () => {
  it("reuses blobs already there, writes manifest.json last, then removes what the new image does not use", async () => {
    const store = new MemoryStore();
    const a = makeImage(store, { layers: ["shared base".repeat(100), "old app"], name: "a" });
    const b = makeImage(store, { layers: ["shared base".repeat(100), "new app"], name: "b" });
    await copyImage(store.ref("a"), dirRef(target));
    await fs.writeFile(join(target, "notes.txt"), "not part of the layout: left alone");
    const shared = a.image.layers[0]!;
    const sharedIno = (await fs.stat(join(target, hex(shared.digest)))).ino;

    // Before commit: the directory still holds image a, complete.
    const dst = await dirRef(target).newDestination();
    expect(await dst.tryReuseBlob(shared)).toBe(true);
    for (const desc of b.blobs()) if (!(await dst.tryReuseBlob(desc))) await dst.putBlob(desc, Readable.from([store.blobs.get(desc.digest)!]));
    await dst.putManifest(b, { topLevel: true });
    const during = new MemoryStore();
    expect((await copyImage(dirRef(target), during.ref("x"))).digest).toBe(a.digest);
    await dst.commit();
    await dst.close();

    expect(await fs.readFile(join(target, "manifest.json"))).toEqual(Buffer.from(b.bytes));
    expect(await ls()).toEqual(["manifest.json", "notes.txt", "version", ...b.blobs().map((d) => hex(d.digest))].sort());
    expect((await fs.stat(join(target, hex(shared.digest)))).ino).toBe(sharedIno);
    const after = new MemoryStore();
    expect((await copyImage(dirRef(target), after.ref("x"))).digest).toBe(b.digest);
  });

  it("re-running a copy is incremental: nothing is copied again", async () => {
    const store = new MemoryStore();
    makeImage(store, { layers: ["one", "two"], name: "app" });
    const first = await copyImage(store.ref("app"), dirRef(target));
    expect(first.blobsCopied).toBe(3);
    const second = await copyImage(store.ref("app"), dirRef(target));
    expect(second.blobsCopied).toBe(0);
    expect(second.blobsSkipped).toBe(3);
  });

  it("a blob file with the right name but the wrong content is not reused", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["real layer"], name: "app" });
    await copyImage(store.ref("app"), dirRef(target));
    const layer = m.image.layers[0]!;
    await fs.writeFile(join(target, hex(layer.digest)), "fake layer");
    const dst = await dirRef(target).newDestination();
    expect(await dst.tryReuseBlob(layer)).toBe(false);
    await dst.close();
    const r = await copyImage(store.ref("app"), dirRef(target));
    expect(r.blobsCopied).toBe(1);
    expect(await fs.readFile(join(target, hex(layer.digest)), "utf8")).toBe("real layer");
  });

  it("a destination closed without commit leaves the old image", async () => {
    const store = new MemoryStore();
    const a = makeImage(store, { layers: ["a"], name: "a" });
    const b = makeImage(store, { layers: ["b"] });
    await copyImage(store.ref("a"), dirRef(target));
    const dst = await dirRef(target).newDestination();
    for (const d of b.blobs()) await dst.putBlob(d, Readable.from([store.blobs.get(d.digest)!]));
    await dst.putManifest(b, { topLevel: true });
    await dst.close();
    expect(await fs.readFile(join(target, "manifest.json"))).toEqual(Buffer.from(a.bytes));
    for (const d of a.blobs()) expect(existsSync(join(target, hex(d.digest)))).toBe(true);
  });

  it("refuses a non-empty directory that is not a dir: image, and leaves it untouched", async () => {
    await fs.mkdir(target);
    await fs.writeFile(join(target, "thesis.tex"), "important");
    const err = await dirRef(target).newDestination().catch((e: unknown) => e as AirlockError);
    expect(err).toMatchObject({ code: "ERR_DESTINATION" });
    expect(err.message).toMatch(/not a containers image directory/);
    await fs.writeFile(join(target, "version"), "Directory Transport Version: 9.0\n");
    await expect(dirRef(target).newDestination()).rejects.toMatchObject({ code: "ERR_DESTINATION" });
    expect(await ls()).toEqual(["thesis.tex", "version"]);
    // An empty directory is fine.
    const empty = join(tmp, "empty");
    await fs.mkdir(empty);
    const store = new MemoryStore();
    makeImage(store, { layers: ["x"], name: "x" });
    await copyImage(store.ref("x"), dirRef(empty));
    expect(await ls(empty)).toContain("manifest.json");
  });

  it("removes only files the dir: layout defines", () => {
    for (const f of [`${"a".repeat(64)}`, `${"b".repeat(64)}.manifest.json`, `sha512-${"c".repeat(128)}`, "signature-1", `${"d".repeat(64)}.signature-2`, `.${"e".repeat(64)}.1234.0a1b2c3d.tmp`]) {
      expect(isDirContentFile(f)).toBe(true);
    }
    for (const f of ["version", "manifest.json", "notes.txt", "a".repeat(63), "index.json", "blobs"]) expect(isDirContentFile(f)).toBe(false);
  });
});

describe("dir: bad input", () => {
  it("a blob stream that errors mid-way leaves no file", async () => {
    const dst = await dirRef(target).newDestination();
    const content = Buffer.from("x".repeat(1000));
    const desc = { mediaType: MediaType.OCILayerGzip, digest: digestOf(content), size: content.length };
    const broken = new Readable({
      read() {
        this.push(content.subarray(0, 10));
        this.destroy(new AirlockError("ERR_SIZE_MISMATCH", "truncated upstream"));
      },
    });
    await expect(dst.putBlob(desc, broken)).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
    expect(await ls()).toEqual(["version"]);
    await dst.close();
    expect(existsSync(target)).toBe(false);
  });

  it("a failed copy leaves a new directory absent and an existing image exactly as it was", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["good one", "good two"], name: "app" });
    store.tamper.set(m.image.layers[1]!.digest, Buffer.from("evil two"));
    await expect(copyImage(store.ref("app"), dirRef(target))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(existsSync(target)).toBe(false);

    makeImage(store, { layers: ["old"], name: "old" });
    await copyImage(store.ref("old"), dirRef(target));
    const snapshot = async () => Promise.all((await ls()).map(async (f) => [f, await fs.readFile(join(target, f))] as const));
    const before = await snapshot();
    await expect(copyImage(store.ref("app"), dirRef(target))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(await snapshot()).toEqual(before);
  });

  it("names a missing directory, a directory without manifest.json, and a missing blob", async () => {
    const missing = join(tmp, "nope");
    await expect(dirRef(missing).newSource()).rejects.toThrow(new RegExp(`${missing} does not exist`));
    await fs.mkdir(target);
    await expect(dirRef(target).newSource()).rejects.toThrow(/has no manifest\.json/);
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["x"], name: "x" });
    await copyImage(store.ref("x"), dirRef(target));
    const layer = m.image.layers[0]!;
    await fs.rm(join(target, hex(layer.digest)));
    const err = await (await dirRef(target).newSource()).getBlob(layer).catch((e: unknown) => e as AirlockError);
    expect(err).toMatchObject({ code: "ERR_BLOB_NOT_FOUND" });
    expect(err.message).toContain(layer.digest);
    expect(err.message).toContain(join(target, hex(layer.digest)));
    await expect((await dirRef(target).newSource()).getBlob({ ...layer, digest: "sha256:../../etc/passwd" as Digest })).rejects.toMatchObject({ code: "ERR_INVALID_DIGEST" });
  });

  it("a child manifest whose bytes do not match its digest is ERR_DIGEST_MISMATCH", async () => {
    const store = new MemoryStore();
    const amd = makeImage(store, { layers: ["amd"], arch: "amd64" });
    makeIndex(store, [{ manifest: amd, arch: "amd64" }], "multi");
    await copyImage(store.ref("multi"), dirRef(target), { multiArch: "all" });
    const path = join(target, `${hex(amd.digest)}.manifest.json`);
    await fs.writeFile(path, (await fs.readFile(path, "utf8")).replace('"schemaVersion":2', '"schemaVersion":3'));
    await expect((await dirRef(target).newSource()).getManifest(amd.digest)).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
  });

  it("reads the fixture dir: image", async () => {
    const src = await dirRef(join(fixtures, "dir/docker")).newSource();
    const m = await src.getManifest();
    expect(m.digest).toBe("sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625");
    for (const b of m.blobs()) expect(digestOf(await readAll(src, b.digest))).toBe(b.digest);
  });
});
