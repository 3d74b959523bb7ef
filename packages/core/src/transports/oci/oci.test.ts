import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makeImage, makeIndex, MemoryStore } from "../../../../../test/support/memory-transport.js";
import { copyImage } from "../../copy/copy.js";
import { type Digest, digestOf } from "../../digest.js";
import { AirlockError, isNotFound } from "../../errors.js";
import { REF_NAME_ANNOTATION, type IndexJSON, type Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import type { ImageSource } from "../types.js";
import { OciReference } from "./reference.js";

const run = promisify(execFile);
const fixtures = fileURLToPath(new URL("../../../../../fixtures/", import.meta.url));
const coreDist = fileURLToPath(new URL("../../../dist/index.js", import.meta.url));

let dir: string;
let layout: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-oci-"));
  layout = join(dir, "layout");
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const oci = (spec: string) => OciReference.parse(spec);
const readIndex = async (root = layout): Promise<IndexJSON> => JSON.parse(await fs.readFile(join(root, "index.json"), "utf8")) as IndexJSON;
const names = (idx: IndexJSON) => idx.manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION]);

async function readAll(src: ImageSource, digest: Digest, offset?: number): Promise<Buffer> {
  const { stream } = await src.getBlob({ mediaType: "application/octet-stream", digest, size: -1 }, offset === undefined ? {} : { offset });
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Writes `m` (an image whose blobs are in `store`) through the destination contract, without committing unless asked. */
async function putImage(store: MemoryStore, m: Manifest, spec: string, commit = true): Promise<void> {
  const dst = await oci(spec).newDestination();
  try {
    for (const b of m.blobs()) {
      if (!(await dst.tryReuseBlob(b))) await dst.putBlob(b, Readable.from([store.blobs.get(b.digest)!]));
    }
    await dst.putManifest(m, { topLevel: true });
    if (commit) await dst.commit();
  } finally {
    await dst.close();
  }
}

describe("oci: write then read", () => {
  it("round-trips an image: same manifest bytes, blobs and digests; named in index.json", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["layer one", "layer two".repeat(1000)] });
    await putImage(store, m, `${layout}:app:1.0`);

    const idx = await readIndex();
    expect(idx.mediaType).toBe(MediaType.OCIIndex);
    expect(idx.manifests).toEqual([{ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, annotations: { [REF_NAME_ANNOTATION]: "app:1.0" } }]);
    expect(JSON.parse(await fs.readFile(join(layout, "oci-layout"), "utf8"))).toEqual({ imageLayoutVersion: "1.0.0" });

    const src = await oci(`${layout}:app:1.0`).newSource();
    const got = await src.getManifest();
    expect(Buffer.from(got.bytes)).toEqual(Buffer.from(m.bytes));
    expect(got.digest).toBe(m.digest);
    for (const b of m.blobs()) {
      const bytes = await readAll(src, b.digest);
      expect(bytes).toEqual(store.blobs.get(b.digest));
      expect(digestOf(bytes)).toBe(b.digest);
    }
    // Reading from an offset (resume).
    const big = m.image.layers[1]!;
    expect(await readAll(src, big.digest, 100)).toEqual(store.blobs.get(big.digest)!.subarray(100));
    await src.close();
    // The only image is also readable without a name, and as @0.
    expect((await (await oci(layout).newSource()).getManifest()).digest).toBe(m.digest);
    expect((await (await oci(`${layout}:@0`).newSource()).getManifest()).digest).toBe(m.digest);
  });

  it("round-trips an index through copyImage: children are blobs, the index is the named entry", async () => {
    const store = new MemoryStore();
    const amd = makeImage(store, { layers: ["amd64 layer"], arch: "amd64" });
    const arm = makeImage(store, { layers: ["arm64 layer"], arch: "arm64" });
    const index = makeIndex(store, [{ manifest: amd, arch: "amd64" }, { manifest: arm, arch: "arm64", variant: "v8" }], "multi");
    const r = await copyImage(store.ref("multi"), oci(`${layout}:multi`), { multiArch: "all" });
    expect(r.digest).toBe(index.digest);
    const idx = await readIndex();
    expect(idx.manifests).toHaveLength(1);
    expect(idx.manifests[0]).toMatchObject({ mediaType: MediaType.OCIIndex, digest: index.digest });

    const back = new MemoryStore();
    await copyImage(oci(`${layout}:multi`), back.ref("copy"), { multiArch: "all" });
    expect(back.names.get("copy")).toBe(index.digest);
    for (const d of [amd.digest, arm.digest]) expect(back.manifests.get(d)?.digest).toBe(d);
    const dst = await oci(`${layout}:other`).newDestination();
    expect(await dst.hasManifest(amd.digest)).toBe(true);
    expect(await dst.hasManifest(digestOf("no such manifest"))).toBe(false);
    await dst.close();
  });

  it("stores Docker v2s2 manifests as they are (no conversion, same digest)", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["docker layer"], docker: true });
    await putImage(store, m, `${layout}:docker`);
    expect((await readIndex()).manifests[0]).toMatchObject({ mediaType: MediaType.DockerManifest, digest: m.digest });
    const got = await (await oci(`${layout}:docker`).newSource()).getManifest();
    expect(got.mediaType).toBe(MediaType.DockerManifest);
    expect(got.digest).toBe(m.digest);
  });

  it("nothing is named before commit, and a destination closed without commit leaves index.json as it was", async () => {
    const store = new MemoryStore();
    const first = makeImage(store, { layers: ["first"] });
    await putImage(store, first, `${layout}:keep`);
    const before = await fs.readFile(join(layout, "index.json"));
    const second = makeImage(store, { layers: ["second"] });
    await putImage(store, second, `${layout}:keep`, false);
    expect(await fs.readFile(join(layout, "index.json"))).toEqual(before);
    expect((await (await oci(`${layout}:keep`).newSource()).getManifest()).digest).toBe(first.digest);
  });

  it("moves a name to the new image, and appends unnamed images once", async () => {
    const store = new MemoryStore();
    const a = makeImage(store, { layers: ["a"] });
    const b = makeImage(store, { layers: ["b"] });
    await putImage(store, a, `${layout}:app`);
    await putImage(store, b, `${layout}:app`);
    let idx = await readIndex();
    expect(names(idx)).toEqual([undefined, "app"]);
    expect(idx.manifests.map((d) => d.digest)).toEqual([a.digest, b.digest]);
    expect((await (await oci(`${layout}:app`).newSource()).getManifest()).digest).toBe(b.digest);
    // The same image again under its name: no new entry.
    await putImage(store, b, `${layout}:app`);
    // An unnamed write of an image already present unnamed replaces it rather than duplicating.
    await putImage(store, a, layout);
    idx = await readIndex();
    expect(idx.manifests.map((d) => d.digest)).toEqual([a.digest, b.digest]);
    expect((await (await oci(`${layout}:@0`).newSource()).getManifest()).digest).toBe(a.digest);
  });

  it("asks which image when there are several and no name; a missing name is 'not found'", async () => {
    const store = new MemoryStore();
    await putImage(store, makeImage(store, { layers: ["x"] }), `${layout}:app`);
    await putImage(store, makeImage(store, { layers: ["y"] }), `${layout}:db`);
    const err = await oci(layout).newSource().catch((e: unknown) => e as AirlockError);
    expect(err).toMatchObject({ code: "ERR_AMBIGUOUS_IMAGE" });
    expect((err as Error).message).toBe(`more than one image in ${layout}; choose one with oci:${layout}:NAME or oci:${layout}:@N; names are: app, db`);
    const nf = await oci(`${layout}:web`).newSource().catch((e: unknown) => e);
    expect(nf).toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
    expect(isNotFound(nf)).toBe(true);
    await expect(oci(`${layout}:@2`).newSource()).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
  });

  it("refuses @N as a destination and a non-layout directory", async () => {
    await expect(oci(`${layout}:@0`).newDestination()).rejects.toMatchObject({ code: "ERR_INVALID_REFERENCE" });
    await fs.mkdir(layout);
    await fs.writeFile(join(layout, "notes.txt"), "not a layout");
    await expect(oci(`${layout}:x`).newDestination()).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
    expect(await fs.readdir(layout)).toEqual(["notes.txt"]);
  });

  it("names a missing layout path", async () => {
    const missing = join(dir, "no-such-layout");
    const err = await oci(`${missing}:app`).newSource().catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(AirlockError);
    expect(err.message).toContain(missing);
    expect(err.message).toMatch(/does not exist/);
  });
});

describe("oci: corrupt input", () => {
  it("a blob stream that errors mid-way leaves no blob file and no index entry", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["a layer that will be cut".repeat(100)] });
    const layer = m.image.layers[0]!;
    const dst = await oci(`${layout}:app`).newDestination();
    const broken = new Readable({
      read() {
        this.push(store.blobs.get(layer.digest)!.subarray(0, 100));
        this.destroy(new AirlockError("ERR_DIGEST_MISMATCH", `blob ${layer.digest}: verification failed upstream`));
      },
    });
    await expect(dst.putBlob(layer, broken)).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(existsSync(join(layout, "blobs", "sha256", layer.digest.slice(7)))).toBe(false);
    expect(await fs.readdir(join(layout, "blobs", "sha256"))).toEqual([]);
    await dst.close();
    // The layout did not exist before: nothing at all is left.
    expect(existsSync(layout)).toBe(false);
  });

  it("a copy from a tampered source leaves no blob under the bad digest and no index entry", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["good content"] });
    store.tamper.set(m.image.layers[0]!.digest, Buffer.from("evil content"));
    store.addManifest(m, "app");
    await expect(copyImage(store.ref("app"), oci(`${layout}:app`))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    // A new layout: the copy leaves nothing, not even the directory.
    expect(existsSync(layout)).toBe(false);
    // An existing layout: index.json is exactly as it was, and nothing is stored under the bad digest.
    const good = makeImage(store, { layers: ["another layer"], name: "good" });
    await copyImage(store.ref("good"), oci(`${layout}:good`));
    const before = await fs.readFile(join(layout, "index.json"));
    const blobsBefore = (await fs.readdir(join(layout, "blobs", "sha256"))).sort();
    await expect(copyImage(store.ref("app"), oci(`${layout}:app`))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(await fs.readFile(join(layout, "index.json"))).toEqual(before);
    // The blobs the failed copy did write (its config) are removed again: the layout is as it was.
    expect((await fs.readdir(join(layout, "blobs", "sha256"))).sort()).toEqual(blobsBefore);
    expect(await fs.readdir(layout)).toEqual(expect.arrayContaining(["blobs", "index.json", "oci-layout"]));
    expect(await fs.readdir(layout)).toHaveLength(3);
    expect((await (await oci(`${layout}:good`).newSource()).getManifest()).digest).toBe(good.digest);
  });

  it("an abandoned write keeps the blobs a committed image uses, even ones it wrote itself", async () => {
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["shared by both writers"] });
    const a = await oci(`${layout}:a`).newDestination();
    for (const b of m.blobs()) await a.putBlob(b, Readable.from([store.blobs.get(b.digest)!]));
    // Another writer reuses a's blobs and commits first.
    await putImage(store, m, `${layout}:b`);
    await a.close(); // a never commits
    expect((await (await oci(`${layout}:b`).newSource()).getManifest()).digest).toBe(m.digest);
    for (const b of m.blobs()) expect(existsSync(join(layout, "blobs", "sha256", b.digest.slice(7)))).toBe(true);
  });

  it("commit refuses to name an image whose blobs are not all in the layout", async () => {
    const store = new MemoryStore();
    const keep = makeImage(store, { layers: ["kept"] });
    await putImage(store, keep, `${layout}:keep`);
    const before = await fs.readFile(join(layout, "index.json"));
    const m = makeImage(store, { layers: ["l1", "l2"] });
    const dst = await oci(`${layout}:app`).newDestination();
    for (const b of m.blobs()) await dst.putBlob(b, Readable.from([store.blobs.get(b.digest)!]));
    await dst.putManifest(m, { topLevel: true });
    await fs.rm(join(layout, "blobs", "sha256", m.image.layers[1]!.digest.slice(7)));
    const err = await dst.commit().catch((e: unknown) => e as Error);
    await dst.close();
    expect(err).toMatchObject({ code: "ERR_DESTINATION" });
    expect(err.message).toContain(m.image.layers[1]!.digest);
    expect(await fs.readFile(join(layout, "index.json"))).toEqual(before);
  });

  it("a directory left by a write that never committed (only blobs/) can be written again", async () => {
    await fs.mkdir(join(layout, "blobs", "sha256"), { recursive: true });
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["again"] });
    await putImage(store, m, `${layout}:app`);
    expect((await (await oci(`${layout}:app`).newSource()).getManifest()).digest).toBe(m.digest);
  });

  it("a manifest whose bytes do not match the index.json digest is ERR_DIGEST_MISMATCH", async () => {
    const src = await oci(join(fixtures, "corrupt/bad-manifest-digest:bad")).newSource();
    await expect(src.getManifest()).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    // The same with a layout written here and damaged afterwards.
    const store = new MemoryStore();
    const m = makeImage(store, { layers: ["x"] });
    await putImage(store, m, `${layout}:app`);
    const path = join(layout, "blobs", "sha256", m.digest.slice(7));
    const original = Buffer.from(m.bytes).toString();
    // Same size, different bytes: the digest check catches it.
    await fs.writeFile(path, original.replace('"schemaVersion":2', '"schemaVersion":3'));
    await expect((await oci(`${layout}:app`).newSource()).getManifest()).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    const dst = await oci(`${layout}:other`).newDestination();
    expect(await dst.hasManifest(m.digest)).toBe(false);
    await dst.close();
    // A different size: caught against the index.json descriptor before parsing.
    await fs.writeFile(path, `${original} `);
    await expect((await oci(`${layout}:app`).newSource()).getManifest()).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
  });

  it("an entry with an unknown media type, and a missing blob, are refused clearly", async () => {
    await expect(oci(join(fixtures, "corrupt/unknown-media-type:bad")).newSource()).rejects.toMatchObject({ code: "ERR_UNSUPPORTED_MEDIA_TYPE" });
    const src = await oci(join(fixtures, "corrupt/missing-blob:bad")).newSource();
    const m = await src.getManifest();
    const missing = "sha256:10400388fafd61e4f733435c5dc321a99cf2fb18a18ca4ee9e51b21f2331759b";
    expect(m.image.layers.map((l) => l.digest)).toContain(missing);
    const err = await src.getBlob(m.image.layers.find((l) => l.digest === missing)!).catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: "ERR_BLOB_NOT_FOUND" });
    expect(err.message).toContain(missing);
    expect(err.message).toContain(join(fixtures, "corrupt/missing-blob", "blobs", "sha256", missing.slice(7)));
  });

  it("an index.json that points outside blobs/ is refused before any path is used", async () => {
    await fs.mkdir(layout);
    await fs.writeFile(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    await fs.writeFile(join(layout, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.OCIManifest, digest: "sha256:../../../../../etc/passwd", size: 10 }] }));
    await expect(oci(layout).newSource()).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
    const src = await oci(join(fixtures, "oci:single")).newSource();
    await expect(src.getManifest("sha256:../../index.json" as Digest)).rejects.toMatchObject({ code: "ERR_INVALID_DIGEST" });
    await expect(src.getBlob({ mediaType: "x", digest: "sha256:../../oci-layout" as Digest, size: 1 })).rejects.toMatchObject({ code: "ERR_INVALID_DIGEST" });
  });
});

describe("oci: reads the fixture layout", () => {
  it("reads every named image, child manifests included", async () => {
    const expected: Record<string, string> = {
      single: "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952",
      multi: "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01",
      docker: "sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625",
    };
    for (const [name, digest] of Object.entries(expected)) {
      const src = await oci(`${join(fixtures, "oci")}:${name}`).newSource();
      const m = await src.getManifest();
      expect(m.digest).toBe(digest);
      const images = m.isIndex ? await Promise.all(m.index.manifests.map((d) => src.getManifest(d.digest))) : [m];
      for (const img of images) for (const b of img.blobs()) expect(digestOf(await readAll(src, b.digest))).toBe(b.digest);
    }
  });
});

describe("oci: concurrent writers", () => {
  it("several airlock processes writing different names into one layout lose no entry", async () => {
    expect(existsSync(coreDist), `${coreDist} is built by the test global setup`).toBe(true);
    const writers = 3;
    const rounds = 10;
    const script = `
      import { Readable } from "node:stream";
      import { Manifest, OciReference, digestOf } from ${JSON.stringify(coreDist)};
      const [layout, who, rounds] = process.argv.slice(1);
      const blob = (s, mediaType) => { const b = Buffer.from(s); return { desc: { mediaType, digest: digestOf(b), size: b.length }, b }; };
      const shared = blob("a layer every writer shares", "application/vnd.oci.image.layer.v1.tar+gzip");
      for (let i = 0; i < Number(rounds); i++) {
        const config = blob(JSON.stringify({ architecture: "amd64", os: "linux", who, i }), "application/vnd.oci.image.config.v1+json");
        const own = blob("layer of " + who + " " + i, "application/vnd.oci.image.layer.v1.tar+gzip");
        const m = Manifest.fromJSON({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: config.desc, layers: [shared.desc, own.desc] }, "application/vnd.oci.image.manifest.v1+json");
        const dst = await OciReference.parse(layout + ":" + who + "-" + i).newDestination();
        for (const { desc, b } of [config, shared, own]) if (!(await dst.tryReuseBlob(desc))) await dst.putBlob(desc, Readable.from([b]));
        await dst.putManifest(m, { topLevel: true });
        await dst.commit();
        await dst.close();
      }
    `;
    await Promise.all(Array.from({ length: writers }, (_, w) => run(process.execPath, ["--input-type=module", "-e", script, layout, `w${w}`, String(rounds)])));
    const idx = await readIndex();
    const expected = Array.from({ length: writers }, (_, w) => Array.from({ length: rounds }, (_, i) => `w${w}-${i}`)).flat();
    expect(names(idx).sort()).toEqual(expected.sort());
    // Every entry is readable, and no temporary or lock file is left behind.
    for (const name of expected) expect((await (await oci(`${layout}:${name}`).newSource()).getManifest()).mediaType).toBe(MediaType.OCIManifest);
    expect((await fs.readdir(join(layout, "blobs", "sha256"))).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(await fs.readdir(layout)).toEqual(expect.not.arrayContaining(["index.json.lock"]));
  });
});
