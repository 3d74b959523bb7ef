/**
 * The oci-archive: transport: references, reading by random access, atomic writes that keep the
 * archive's other images, bad input, and interoperability with skopeo and umoci.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../../../../../test/support/memory-transport.js";
import { exportBundle } from "../../bundle/export.js";
import { copyImage } from "../../copy/copy.js";
import { digestOf } from "../../digest.js";
import { type IndexJSON, Manifest, REF_NAME_ANNOTATION } from "../../manifest.js";
import { parseImageName } from "../index.js";
import "../all.js";
import { TarFile } from "../docker-archive/tarfile.js";
import { OciReference } from "../oci/reference.js";
import type { ImageSource } from "../types.js";
import { OciArchiveReference } from "./reference.js";

const run = promisify(execFile);
const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 });
const fixtures = fileURLToPath(new URL("../../../../../fixtures/oci", import.meta.url));
const FIXTURE = {
  single: "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952",
  multi: "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01",
  baseA: "sha256:ec3bbc6cac42279c72c4dab2711918c31ef1fb8917d7e95190983ad50a18776b",
  baseB: "sha256:25f5f9854655269565b0f3b51c958aaeca9561ed49726c1e5de4a871fcca8cef",
  docker: "sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625",
};

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-ociarchive-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const archive = (spec: string) => OciArchiveReference.parse(spec);
const from = (name: string) => OciReference.parse(`${fixtures}:${name}`);

/** The index.json inside an archive, read with an independent tar reader (tar -xO). */
async function archivedIndex(path: string): Promise<IndexJSON> {
  const { stdout } = await run("tar", ["-xOf", path, "index.json"]);
  return JSON.parse(stdout) as IndexJSON;
}

/** Every blob of `m` (and of its children) read through `src`, checked against its digest. */
async function readAllBlobs(src: ImageSource, m: Manifest): Promise<number> {
  const images = m.isIndex ? await Promise.all(m.index.manifests.map((d) => src.getManifest(d.digest))) : [m];
  let n = 0;
  for (const img of images) {
    for (const b of img.blobs()) {
      const chunks: Buffer[] = [];
      for await (const c of (await src.getBlob(b)).stream) chunks.push(c as Buffer);
      expect(digestOf(Buffer.concat(chunks))).toBe(b.digest);
      n++;
    }
  }
  return n;
}

describe("oci-archive: references", () => {
  it.each([
    ["/a.tar", "/a.tar", undefined, undefined, "oci-archive:/a.tar"],
    ["/a.tar:app", "/a.tar", "app", undefined, "oci-archive:/a.tar:app"],
    ["a.tar:quay.io/org/app:1.0", "a.tar", "quay.io/org/app:1.0", undefined, "oci-archive:a.tar:quay.io/org/app:1.0"],
    ["a.tar:@3", "a.tar", undefined, 3, "oci-archive:a.tar:@3"],
  ])("parses %s", (spec, path, name, position, str) => {
    const ref = archive(spec);
    expect([ref.path, ref.name, ref.position, ref.toString()]).toEqual([path, name, position, str]);
    expect(String(parseImageName(str))).toBe(str);
    expect(parseImageName(str)).toBeInstanceOf(OciArchiveReference);
  });
  it.each([
    ["", /archive path is missing/],
    [":app", /archive path is missing/],
    ["a.tar:@x", /not a non-negative integer/],
    ["a.tar:-bad", /not a valid image name/],
  ])("rejects %j", (spec, message) => {
    expect(() => archive(spec)).toThrow(message);
  });
});

describe("oci-archive: write and read", () => {
  it("round-trips images with every digest kept; the archive is a plain OCI layout in a tar", async () => {
    const path = join(dir, "a.tar");
    expect((await copyImage(from("single"), archive(`${path}:single`))).digest).toBe(FIXTURE.single);
    expect((await copyImage(from("multi"), archive(`${path}:multi`), { multiArch: "all" })).digest).toBe(FIXTURE.multi);
    expect((await copyImage(from("docker"), archive(`${path}:docker`))).digest).toBe(FIXTURE.docker);
    const idx = await archivedIndex(path);
    expect(idx.manifests.map((d) => [d.annotations?.[REF_NAME_ANNOTATION], d.digest])).toEqual([
      ["single", FIXTURE.single],
      ["multi", FIXTURE.multi],
      ["docker", FIXTURE.docker],
    ]);
    const { stdout } = await run("tar", ["-tf", path]);
    const names = stdout.trim().split("\n");
    expect(names[0]).toBe("oci-layout");
    expect(names.at(-1)).toBe("index.json");
    for (const [name, digest] of Object.entries({ single: FIXTURE.single, multi: FIXTURE.multi, docker: FIXTURE.docker })) {
      const src = await archive(`${path}:${name}`).newSource();
      try {
        const m = await src.getManifest();
        expect(m.digest).toBe(digest);
        expect(await readAllBlobs(src, m)).toBeGreaterThan(0);
      } finally {
        await src.close();
      }
    }
    // @N reads by position.
    const src = await archive(`${path}:@2`).newSource();
    expect((await src.getManifest()).digest).toBe(FIXTURE.docker);
    await src.close();
  });

  it("replaces the image of the same name and drops the blobs only it used; reuses blobs already in the archive", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:keep`));
    await copyImage(from("base-a"), archive(`${path}:base`));
    const a = Manifest.parse(await fs.readFile(join(fixtures, "blobs/sha256", FIXTURE.baseA.slice(7))));
    const b = Manifest.parse(await fs.readFile(join(fixtures, "blobs/sha256", FIXTURE.baseB.slice(7))));
    const r = await copyImage(from("base-b"), archive(`${path}:base`));
    // base-b shares layer 1 with base-a: already in the archive, so not copied.
    expect(r.blobsSkipped).toBe(1);
    const idx = await archivedIndex(path);
    expect(idx.manifests.map((d) => [d.annotations?.[REF_NAME_ANNOTATION], d.digest])).toEqual([
      ["keep", FIXTURE.single],
      ["base", FIXTURE.baseB],
    ]);
    const { stdout } = await run("tar", ["-tf", path]);
    const onlyA = a.blobs().filter((x) => !b.blobs().some((y) => y.digest === x.digest));
    expect(onlyA.length).toBeGreaterThan(0);
    for (const x of onlyA) expect(stdout).not.toContain(x.digest.slice(7));
    expect(stdout).not.toContain(FIXTURE.baseA.slice(7));
    for (const x of b.blobs()) expect(stdout).toContain(x.digest.slice(7));
  });

  it("writes nothing at PATH before commit, and a copy that fails leaves the archive as it was", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:single`));
    const before = await fs.readFile(path);
    const store = new MemoryStore();
    const layer = store.addBlob("a layer");
    const config = store.addBlob(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }), "application/vnd.oci.image.config.v1+json");
    const m = store.addManifest(Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config, layers: [layer] }))), "bad");
    store.tamper.set(layer.digest, Buffer.from("a lay3r"));
    await expect(copyImage(store.ref("bad"), archive(`${path}:bad`))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(await fs.readFile(path)).toEqual(before);
    // Nothing else is left beside it: no staging directory, no temporary archive, no lock.
    expect(await fs.readdir(dir)).toEqual(["a.tar"]);
    // A destination closed without commit does not create the archive either.
    const dst = await archive(`${join(dir, "new.tar")}:x`).newDestination();
    await dst.putBlob(config, Readable.from([store.blobs.get(config.digest)!]));
    await dst.putManifest(m, { topLevel: true });
    expect(await fs.readdir(dir)).toContain("a.tar");
    expect(await fs.readdir(dir)).not.toContain("new.tar");
    // Streamed: the blob went into the temporary archive, and its staged copy is gone already.
    const entries = await fs.readdir(dir, { recursive: true });
    expect(entries.filter((e) => e.includes(config.digest.slice(7)))).toEqual([]);
    expect(entries.some((e) => /^\.new\.tar\..*\.tmp$/.test(e))).toBe(true);
    await dst.close();
    expect(await fs.readdir(dir)).toEqual(["a.tar"]);
  });

  it("blobs that arrive while another is being appended are staged, then appended; a bad one fails the archive", async () => {
    const store = new MemoryStore();
    const config = store.addBlob(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }), "application/vnd.oci.image.config.v1+json");
    const slow = store.addBlob("slow layer ".repeat(200_000)); // over 1 MiB: what comes while it streams in is staged
    const fast = store.addBlob("fast layer");
    const m = Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config, layers: [slow, fast] })));
    async function* trickle(b: Buffer) {
      for (let i = 0; i < b.length; i += 65536) {
        await new Promise((r) => setTimeout(r, 5));
        yield b.subarray(i, i + 65536);
      }
    }
    const path = join(dir, "a.tar");
    const dst = await archive(`${path}:x`).newDestination();
    try {
      const first = dst.putBlob(slow, Readable.from(trickle(store.blobs.get(slow.digest)!)));
      await Promise.all([first, dst.putBlob(fast, Readable.from([store.blobs.get(fast.digest)!])), dst.putBlob(config, Readable.from([store.blobs.get(config.digest)!]))]);
      await dst.putManifest(m, { topLevel: true });
      await dst.commit();
    } finally {
      await dst.close();
    }
    const src = await archive(`${path}:x`).newSource();
    expect(await readAllBlobs(src, await src.getManifest())).toBe(3);
    await src.close();
    // A staged blob that does not match its descriptor fails, and nothing is committed.
    const bad = await archive(`${join(dir, "b.tar")}:x`).newDestination();
    try {
      const first = bad.putBlob(slow, Readable.from(trickle(store.blobs.get(slow.digest)!)));
      await expect(bad.putBlob(fast, Readable.from([Buffer.from("fast lay3r")]))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
      await first;
    } finally {
      await bad.close();
    }
    expect(await fs.readdir(dir)).toEqual(["a.tar"]);
  });

  it("concurrent copies into one archive lose no image", async () => {
    const path = join(dir, "a.tar");
    const names = ["single", "base-a", "base-b", "docker"];
    await Promise.all(names.map((n) => copyImage(from(n), archive(`${path}:${n}`))));
    const idx = await archivedIndex(path);
    expect(idx.manifests.map((d) => d.annotations?.[REF_NAME_ANNOTATION]).sort()).toEqual([...names].sort());
  });

  it("a blob reused from the archive survives another writer replacing the image that had it", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("base-a"), archive(`${path}:shared`));
    const b = Manifest.parse(await fs.readFile(join(fixtures, "blobs/sha256", FIXTURE.baseB.slice(7))));
    const dst = await archive(`${path}:b`).newDestination();
    try {
      const reused: string[] = [];
      for (const blob of b.blobs()) {
        if (await dst.tryReuseBlob(blob)) reused.push(blob.digest);
        else await dst.putBlob(blob, Readable.from([await fs.readFile(join(fixtures, "blobs/sha256", blob.digest.slice(7)))]));
      }
      expect(reused).toHaveLength(1);
      // Meanwhile the image that held the reused layer is replaced: the layer leaves the archive.
      await copyImage(from("single"), archive(`${path}:shared`));
      expect((await run("tar", ["-tf", path])).stdout).not.toContain(reused[0]!.slice(7));
      await dst.putManifest(b, { topLevel: true });
      await dst.commit();
    } finally {
      await dst.close();
    }
    const idx = await archivedIndex(path);
    expect(idx.manifests.map((d) => [d.annotations?.[REF_NAME_ANNOTATION], d.digest])).toEqual([
      ["shared", FIXTURE.single],
      ["b", FIXTURE.baseB],
    ]);
    const src = await archive(`${path}:b`).newSource();
    expect(await readAllBlobs(src, await src.getManifest())).toBe(3);
    await src.close();
  });

  it("reads without extracting: no temporary files for a plain tar; a gzip-compressed archive is decompressed once into tmpDir and removed on close", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:single`));
    const tmp = join(dir, "tmp");
    await fs.mkdir(tmp);
    const plain = await archive(`${path}:single`).newSource({ tmpDir: tmp });
    expect(await fs.readdir(tmp)).toEqual([]);
    await plain.close();
    await fs.writeFile(join(dir, "a.tar.gz"), gzipSync(await fs.readFile(path)));
    const src = await archive(`${join(dir, "a.tar.gz")}:single`).newSource({ tmpDir: tmp });
    expect((await fs.readdir(tmp)).length).toBe(1);
    const m = await src.getManifest();
    expect(m.digest).toBe(FIXTURE.single);
    expect(await readAllBlobs(src, m)).toBe(3);
    await src.close();
    expect(await fs.readdir(tmp)).toEqual([]);
  });
});

describe("oci-archive: bad input", () => {
  it("two images and no name: a clear error naming them", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:one`));
    await copyImage(from("docker"), archive(`${path}:two`));
    const err = await archive(path)
      .newSource()
      .catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: "ERR_AMBIGUOUS_IMAGE" });
    expect(err.message).toContain("one, two");
    expect(err.message).toContain(`oci-archive:${path}:NAME`);
    await expect(archive(`${path}:three`).newSource()).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
    await expect(archive(`${path}:@5`).newSource()).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
  });

  it("a corrupt, a truncated and a non-OCI tar are refused with what is wrong", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:single`));
    const good = await fs.readFile(path);
    const corrupt = Buffer.from(good);
    corrupt[700] = (corrupt[700] as number) ^ 0xff; // inside the second header's name
    corrupt.write("garbage!", 512 + 512);
    await fs.writeFile(join(dir, "corrupt.tar"), corrupt);
    await expect(archive(join(dir, "corrupt.tar")).newSource()).rejects.toThrow(/damaged|not a tar/);
    await fs.writeFile(join(dir, "truncated.tar"), good.subarray(0, 2000));
    await expect(archive(join(dir, "truncated.tar")).newSource()).rejects.toThrow(/truncated/);
    await fs.writeFile(join(dir, "random.tar"), Buffer.from("this is not a tar archive at all, just text\n".repeat(40)));
    await expect(archive(join(dir, "random.tar")).newSource()).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
    await expect(archive(join(dir, "missing.tar")).newSource()).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
    // A docker save archive is named as such.
    await run("tar", ["-cf", join(dir, "docker.tar"), "-C", dir, "a.tar"]);
    await fs.writeFile(join(dir, "manifest.json"), "[]");
    await run("tar", ["-cf", join(dir, "docker.tar"), "-C", dir, "manifest.json"]);
    await expect(archive(join(dir, "docker.tar")).newSource()).rejects.toThrow(/docker-archive:/);
  });

  it("a blob the index names but the archive lacks is ERR_BLOB_NOT_FOUND; a damaged blob fails the copy", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:single`));
    const x = join(dir, "x");
    await fs.mkdir(x);
    await run("tar", ["-xf", path, "-C", x]);
    const m = Manifest.parse(await fs.readFile(join(x, "blobs/sha256", FIXTURE.single.slice(7))));
    const layer = m.image.layers[1]!;
    await fs.rm(join(x, "blobs/sha256", layer.digest.slice(7)));
    await run("tar", ["-cf", join(dir, "missing-blob.tar"), "-C", x, "."]);
    const src = await archive(join(dir, "missing-blob.tar")).newSource();
    await expect(src.getBlob(layer)).rejects.toMatchObject({ code: "ERR_BLOB_NOT_FOUND" });
    await src.close();
    await expect(copyImage(archive(join(dir, "missing-blob.tar")), OciReference.parse(join(dir, "out")))).rejects.toMatchObject({ code: "ERR_BLOB_NOT_FOUND" });
  });

  it("refuses to write to @N, into a directory, or into a missing directory", async () => {
    await expect(archive(join(dir, "a.tar:@0")).newDestination()).rejects.toMatchObject({ code: "ERR_INVALID_REFERENCE" });
    await expect(archive(`${dir}:x`).newDestination()).rejects.toThrow(/is a directory/);
    await expect(archive(`${join(dir, "no", "such", "a.tar")}:x`).newDestination()).rejects.toThrow(/does not exist/);
  });
});

describe("oci-archive: interoperability", () => {
  it("skopeo reads what airlock writes, with the same digests", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:single`));
    await copyImage(from("multi"), archive(`${path}:multi`), { multiArch: "all" });
    const info = JSON.parse((await skopeo("inspect", `oci-archive:${path}:single`)).stdout) as { Digest: string };
    expect(info.Digest).toBe(FIXTURE.single);
    expect(digestOf((await skopeo("inspect", "--raw", `oci-archive:${path}:multi`)).stdout)).toBe(FIXTURE.multi);
    const out = join(dir, "from-skopeo");
    await skopeo("copy", "--all", `oci-archive:${path}:multi`, `oci:${out}:multi`);
    const back = await OciReference.parse(`${out}:multi`).newSource();
    expect((await back.getManifest()).digest).toBe(FIXTURE.multi);
    await back.close();
  });

  it("airlock reads what skopeo writes, with the same digests", async () => {
    const path = join(dir, "skopeo.tar");
    await skopeo("copy", `oci:${fixtures}:single`, `oci-archive:${path}:single`);
    const src = await archive(`${path}:single`).newSource();
    const m = await src.getManifest();
    expect(m.digest).toBe(FIXTURE.single);
    expect(await readAllBlobs(src, m)).toBe(3);
    await src.close();
    // airlock adds an image to skopeo's archive; skopeo still reads both.
    await copyImage(from("base-a"), archive(`${path}:base`));
    expect(JSON.parse((await skopeo("inspect", `oci-archive:${path}:single`)).stdout).Digest).toBe(FIXTURE.single);
    expect(JSON.parse((await skopeo("inspect", `oci-archive:${path}:base`)).stdout).Digest).toBe(FIXTURE.baseA);
  });

  it("umoci unpacks an image of an airlock archive after tar -x", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:single`));
    const x = join(dir, "layout");
    await fs.mkdir(x);
    await run("tar", ["-xf", path, "-C", x]);
    const bundle = join(dir, "bundle");
    await run("umoci", ["unpack", "--rootless", "--image", `${x}:single`, bundle]);
    expect(await fs.readFile(join(bundle, "rootfs", "app", "hello.txt"), "utf8")).toContain("hello");
  });

  it("reads an airlock bundle (a tar of an OCI layout with airlock's own files beside it)", async () => {
    const bundle = join(dir, "bundle.tar");
    await exportBundle([{ name: "app:1", source: from("single") }, { name: "multi", source: from("multi") }], bundle);
    for (const [name, digest] of [
      ["app:1", FIXTURE.single],
      ["multi", FIXTURE.multi],
    ] as const) {
      const r = await copyImage(archive(`${bundle}:${name}`), OciReference.parse(`${join(dir, "out")}:${name.replace(":", "-")}`), { multiArch: "all" });
      expect(r.digest).toBe(digest);
    }
  });

  it("indexes a tar without reading entry data (TarFile), following links", async () => {
    const path = join(dir, "a.tar");
    await copyImage(from("single"), archive(`${path}:single`));
    const tar = await TarFile.open(path);
    expect(tar.entries().map((e) => e.path)).toContain("index.json");
    expect(tar.resolve("./index.json")?.path).toBe("index.json");
    expect(tar.resolve("nope")).toBeUndefined();
    await tar.close();
  });
});
