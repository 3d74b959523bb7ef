/**
 * Conversion during a copy: manifest formats (OCI ↔ Docker v2s2, index ↔ manifest list) and layer
 * compression, checked against skopeo making the same conversion; digests change only when a
 * conversion is asked for or the destination needs one, and the copy says so.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryStore, makeImage, makeIndex } from "../../../../test/support/memory-transport.js";
import { copyImage } from "../copy/copy.js";
import { digestOf } from "../digest.js";
import { Manifest } from "../manifest.js";
import { MediaType } from "../mediatype.js";
import type { ProgressEvent } from "../progress.js";
import type { ImageReference } from "../transports/types.js";
import "../transports/all.js";
import { DirReference } from "../transports/dir/reference.js";
import { DockerArchiveReference } from "../transports/docker-archive/reference.js";
import { COMPRESSION_MAGIC_SIZE, compressor, decompressor, detectCompression, peek, zstdSupport } from "./compression.js";
import type { ConversionOptions, UncompressedLayerSource } from "./convert.js";
import { layerKind, layerMediaType } from "./mediatypes.js";

const run = promisify(execFile);
const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 });
const fixtures = fileURLToPath(new URL("../../../../fixtures/", import.meta.url));
const oci = (name: string) => `oci:${join(fixtures, "oci")}:${name}`;
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-convert-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** airlock copy with conversion options; returns the result and the warning events. */
async function convert(src: string, dst: string, convert: ConversionOptions = {}, extra: Parameters<typeof copyImage>[2] = {}) {
  const { parseImageName } = await import("../transports/index.js");
  const warnings: string[] = [];
  const result = await copyImage(parseImageName(src), parseImageName(dst), {
    convert,
    onProgress: (e: ProgressEvent) => {
      if (e.type === "warning") warnings.push(e.message);
    },
    ...extra,
  });
  return { ...result, warnings };
}

const readDirManifest = async (d: string) => Manifest.parse(await fs.readFile(join(d, "manifest.json")));

describe("convert: the same result as skopeo", () => {
  it.each([
    ["--format v2s2", ["--format", "v2s2"], { format: "v2s2" } as ConversionOptions, "single", false],
    ["--dest-decompress", ["--dest-decompress"], { decompress: true } as ConversionOptions, "single", false],
    ["--all --format v2s2 (index → manifest list)", ["--all", "--format", "v2s2"], { format: "v2s2" } as ConversionOptions, "multi", true],
  ])("%s: byte-identical manifests, so equal digests", async (_label, flags, options, name, all) => {
    const mine = join(dir, "airlock");
    const theirs = join(dir, "skopeo");
    const r = await convert(oci(name), `dir:${mine}`, options, all ? { multiArch: "all" } : {});
    await skopeo("copy", ...flags, oci(name), `dir:${theirs}`);
    const skopeoManifest = await fs.readFile(join(theirs, "manifest.json"));
    expect(r.digest).toBe(digestOf(skopeoManifest));
    expect(await fs.readFile(join(mine, "manifest.json"))).toEqual(skopeoManifest);
    // Every blob (and child manifest) skopeo wrote, airlock wrote too, with the same bytes.
    for (const f of await fs.readdir(theirs)) expect(await fs.readFile(join(mine, f))).toEqual(await fs.readFile(join(theirs, f)));
    expect(r.warnings.length).toBeGreaterThan(0);
    expect(r.warnings.at(-1)).toContain(`to ${r.digest}`);
  });

  it("--format oci from Docker v2s2: the same layers; the config keeps its bytes (skopeo rewrites it as an OCI config)", async () => {
    const mine = join(dir, "airlock");
    const theirs = join(dir, "skopeo");
    const src = `dir:${join(fixtures, "dir/docker")}`;
    const r = await convert(src, `dir:${mine}`, { format: "oci" });
    await skopeo("copy", "--format", "oci", src, `dir:${theirs}`);
    const [a, b, orig] = await Promise.all([readDirManifest(mine), readDirManifest(theirs), readDirManifest(join(fixtures, "dir/docker"))]);
    expect(r.digest).toBe(a.digest);
    expect(a.mediaType).toBe(MediaType.OCIManifest);
    expect(a.image.layers).toEqual(b.image.layers);
    expect(a.image.config).toEqual({ ...orig.image.config, mediaType: MediaType.OCIConfig });
    // The converted image is what skopeo would produce but for the config descriptor.
    expect({ ...a.json, config: undefined }).toEqual({ ...b.json, config: undefined });
    expect(JSON.parse((await skopeo("inspect", `dir:${mine}`)).stdout).Digest).toBe(r.digest);
  });
});

describe("convert: only when asked for or needed", () => {
  it("a copy without conversion keeps the digest and warns of nothing", async () => {
    const r = await convert(oci("single"), `dir:${join(dir, "d")}`);
    expect(r.digest).toBe(SINGLE);
    expect(r.warnings).toEqual([]);
  });

  it("OCI into docker-archive: converted and decompressed, and the digest reported is the one airlock and skopeo read back", async () => {
    const path = join(dir, "a.tar");
    const r = await convert(oci("single"), `docker-archive:${path}:app:1`);
    expect(r.mediaType).toBe(MediaType.DockerManifest);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toContain(`from ${SINGLE} to ${r.digest}`);
    expect(r.warnings[0]).toContain("2 layer(s) decompressed");
    const src = await DockerArchiveReference.parse(`${path}:app:1`).newSource();
    expect((await src.getManifest()).digest).toBe(r.digest);
    await src.close();
    const raw = (await skopeo("inspect", "--raw", `docker-archive:${path}:app:1`)).stdout;
    expect(digestOf(raw.replaceAll("rootfs.diff.tar.gzip", "rootfs.diff.tar"))).toBe(r.digest);
    // Its layers are the fixture's diff IDs.
    const config = JSON.parse((await skopeo("inspect", "--config", `docker-archive:${path}:app:1`)).stdout) as { rootfs: { diff_ids: string[] } };
    expect(JSON.parse((await skopeo("inspect", `docker-archive:${path}:app:1`)).stdout).Layers).toEqual(config.rootfs.diff_ids);
  });

  it("--preserve-digests turns a needed conversion into skopeo's error, before anything is written", async () => {
    const path = join(dir, "a.tar");
    const err = await convert(oci("single"), `docker-archive:${path}:app:1`, {}, { preserveDigests: true }).catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect(err.message).toContain('"Instructed to preserve digests"');
    const err2 = await convert(oci("single"), `dir:${join(dir, "d")}`, { format: "v2s2" }, { preserveDigests: true }).catch((e: unknown) => e as Error);
    expect(err2.message).toContain('"Instructed to preserve digests"');
    expect(await fs.readdir(dir)).toEqual([]);
    // Asking for what the image already is changes nothing, so it is allowed.
    expect((await convert(oci("single"), `dir:${join(dir, "d")}`, { format: "oci" }, { preserveDigests: true })).digest).toBe(SINGLE);
  });

  it("--dest-compress compresses uncompressed layers with gzip; --dest-decompress brings back the same image; a rerun moves nothing", async () => {
    const path = join(dir, "a.tar");
    await convert(oci("single"), `docker-archive:${path}:app:1`);
    const layout = join(dir, "layout");
    const first = await convert(`docker-archive:${path}:app:1`, `oci:${layout}:app`, { compress: true });
    const m = Manifest.parse(await fs.readFile(join(layout, "blobs/sha256", first.digest.slice(7))));
    expect(m.mediaType).toBe(MediaType.DockerManifest);
    expect(m.image.layers.map((l) => l.mediaType)).toEqual([MediaType.DockerLayerGzip, MediaType.DockerLayerGzip]);
    for (const l of m.image.layers) expect(detectCompression(await fs.readFile(join(layout, "blobs/sha256", l.digest.slice(7))))).toBe("gzip");
    // gzip output is deterministic: the same conversion again gives the same digest and reuses every blob.
    const again = await convert(`docker-archive:${path}:app:1`, `oci:${layout}:app`, { compress: true });
    expect(again.digest).toBe(first.digest);
    expect(again.blobsCopied).toBe(0);
    // Decompressing it again gives back the docker-archive image exactly.
    const back = await convert(`oci:${layout}:app`, `docker-archive:${join(dir, "b.tar")}:app:1`);
    const src = await DockerArchiveReference.parse(`${path}:app:1`).newSource();
    expect(back.digest).toBe((await src.getManifest()).digest);
    await src.close();
  });

  it("the data decides, not the media type: uncompressed layers skopeo labels gzip (containers/image#1270) convert too", async () => {
    const path = join(dir, "a.tar");
    const first = await convert(oci("single"), `docker-archive:${path}:app:1`);
    const quirk = join(dir, "quirk");
    await skopeo("copy", `docker-archive:${path}:app:1`, `dir:${quirk}`);
    const labelled = await readDirManifest(quirk);
    expect(labelled.image.layers.map((l) => l.mediaType)).toEqual([MediaType.DockerLayerGzip, MediaType.DockerLayerGzip]);
    for (const l of labelled.image.layers) expect(detectCompression(await fs.readFile(join(quirk, l.digest.slice(7))))).toBe("none");
    const again = await convert(`dir:${quirk}`, `docker-archive:${join(dir, "b.tar")}:app:1`);
    expect(again.digest).toBe(first.digest);
    // --dest-decompress fixes the labels: the same image as the archive's, in a directory.
    const fixed = await convert(`dir:${quirk}`, `dir:${join(dir, "plain")}`, { decompress: true });
    expect(fixed.digest).toBe(first.digest);
  });

  it("refuses contradictions and what a format cannot express", async () => {
    await expect(convert(oci("single"), `dir:${join(dir, "d")}`, { decompress: true, compress: true })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
    await expect(convert(oci("single"), `dir:${join(dir, "d")}`, { format: "v2s2", compressFormat: "zstd" })).rejects.toThrow(/use --format oci/);
    await expect(convert(oci("single"), `docker-archive:${join(dir, "a.tar")}`, { format: "oci" })).rejects.toThrow(/does not accept application\/vnd.oci.image.manifest/);
    // An artifact (not an image config) cannot become a Docker image.
    const store = new MemoryStore();
    const config = store.addBlob("{}", "application/vnd.example.config+json");
    const layer = store.addBlob("data", "application/vnd.example.data");
    store.addManifest(Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCIManifest, config, layers: [layer] }))), "artifact");
    await expect(copyImage(store.ref("artifact"), DirReference.parse(join(dir, "x")), { convert: { format: "v2s2" } })).rejects.toThrow(/not a container image/);
    expect(await fs.readdir(dir)).toEqual([]);
  });
});

describe("convert: zstd", () => {
  it("zstd layers (written by skopeo) are decompressed on every runtime: into docker-archive they give the image the gzip layers give", async () => {
    const zlayout = join(dir, "z");
    await skopeo("copy", "--dest-compress-format", "zstd", oci("single"), `oci:${zlayout}:single`);
    const zm = JSON.parse((await skopeo("inspect", "--raw", `oci:${zlayout}:single`)).stdout) as { layers: { mediaType: string }[] };
    expect(zm.layers.map((l) => l.mediaType)).toEqual([MediaType.OCILayerZstd, MediaType.OCILayerZstd]);
    const fromZstd = await convert(`oci:${zlayout}:single`, `docker-archive:${join(dir, "z.tar")}:app:1`);
    const fromGzip = await convert(oci("single"), `docker-archive:${join(dir, "g.tar")}:app:1`);
    expect(fromZstd.digest).toBe(fromGzip.digest);
    // zstd into Docker v2s2 without decompressing is refused with what to do.
    await expect(convert(`oci:${zlayout}:single`, `dir:${join(dir, "d")}`, { format: "v2s2" })).rejects.toThrow(/--dest-compress-format gzip/);
  });

  it(`--dest-compress-format zstd ${zstdSupport().compress ? "writes zstd layers skopeo reads" : "says which runtime it needs (this Node.js has no zstd in node:zlib)"}`, async () => {
    const out = join(dir, "zstd");
    if (!zstdSupport().compress) {
      const err = await convert(oci("single"), `oci:${out}:z`, { compressFormat: "zstd" }).catch((e: unknown) => e as Error);
      expect(err).toMatchObject({ code: "ERR_UNSUPPORTED" });
      expect(err.message).toContain("Node.js ≥ 22.15");
      await expect(fs.stat(out)).rejects.toThrow(); // failed before anything was written
      return;
    }
    const r = await convert(oci("single"), `oci:${out}:z`, { compressFormat: "zstd" });
    const raw = JSON.parse((await skopeo("inspect", "--raw", `oci:${out}:z`)).stdout) as { layers: { mediaType: string }[] };
    expect(raw.layers.map((l) => l.mediaType)).toEqual([MediaType.OCILayerZstd, MediaType.OCILayerZstd]);
    const back = await convert(`oci:${out}:z`, `docker-archive:${join(dir, "a.tar")}:app:1`);
    const ref = await convert(oci("single"), `docker-archive:${join(dir, "b.tar")}:app:1`);
    expect(back.digest).toBe(ref.digest);
    expect(r.warnings[0]).toContain("compressed with zstd");
  });
});

describe("convert: building blocks", () => {
  it("detects compression by magic number and peeks without losing bytes", async () => {
    const data = Buffer.from("plain tar bytes".repeat(100));
    expect(detectCompression(gzipSync(data))).toBe("gzip");
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]))).toBe("zstd");
    expect(detectCompression(Buffer.from("BZh91AY"))).toBe("bzip2");
    expect(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toBe("xz");
    expect(detectCompression(data)).toBe("none");
    expect(detectCompression(Buffer.from([0x1f]))).toBe("none");
    const { head, stream } = await peek(Readable.from([data.subarray(0, 2), data.subarray(2, 3), data.subarray(3)]));
    expect(head).toEqual(data.subarray(0, COMPRESSION_MAGIC_SIZE));
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks)).toEqual(data);
    const empty = await peek(Readable.from([]));
    expect(empty.head.length).toBe(0);
  });

  it("round-trips gzip, and reports corrupt compressed data", async () => {
    const data = Buffer.from("layer ".repeat(10000));
    const collect = async (s: NodeJS.ReadableStream) => {
      const out: Buffer[] = [];
      for await (const c of s) out.push(c as Buffer);
      return Buffer.concat(out);
    };
    const gz = await collect(Readable.from([data]).pipe(compressor("gzip", 1)));
    expect(await collect(Readable.from([gz]).pipe(decompressor("gzip")))).toEqual(data);
    expect(() => compressor("gzip", 12)).toThrow(/out of range/);
    const broken = Buffer.from(gz);
    broken[gz.length - 5] = (broken[gz.length - 5] as number) ^ 0xff; // the CRC
    await expect(collect(Readable.from([broken]).pipe(decompressor("gzip")))).rejects.toThrow();
    await expect(collect(Readable.from([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3])]).pipe(decompressor("zstd")))).rejects.toThrow();
  });

  it("maps layer media types between formats and compressions", () => {
    expect(layerKind(MediaType.OCILayerGzip)).toEqual({ format: "oci", compression: "gzip", nondistributable: false });
    expect(layerKind("application/vnd.docker.image.rootfs.diff.tar")).toEqual({ format: "v2s2", compression: "none", nondistributable: false });
    expect(layerKind("application/vnd.example")).toBeUndefined();
    expect(layerMediaType("v2s2", "gzip")).toBe(MediaType.DockerLayerGzip);
    expect(layerMediaType("v2s2", "zstd")).toBeUndefined();
    expect(layerMediaType("oci", "none", true)).toBe("application/vnd.oci.image.layer.nondistributable.v1.tar");
    expect(layerMediaType("v2s2", "gzip", true)).toBe(MediaType.DockerForeignLayerGzip);
  });
});

describe("convert: a source whose layers are uncompressed under compressed media types (containers-storage)", () => {
  /** `ref` with its source flagged as an UncompressedLayerSource, as containers-storage's is. */
  const uncompressedLayers = (ref: ImageReference): ImageReference =>
    Object.assign(Object.create(ref) as ImageReference, {
      newSource: async () => Object.assign(await ref.newSource(), { layersUncompressed: true } satisfies UncompressedLayerSource),
    });
  const warningsOf = (into: string[]) => (e: ProgressEvent) => e.type === "warning" && into.push(e.message);

  it("a destination that trusts media types gets gzip layers (one compression per layer shared by the images of an index), under an index naming them; dir: keeps them as they are", async () => {
    const src = new MemoryStore();
    const shared = "a base layer, uncompressed";
    const amd = makeImage(src, { layers: [shared, "amd64's own layer"] });
    const arm = makeImage(src, { layers: [shared, "arm64's own layer"], arch: "arm64", docker: true });
    const index = makeIndex(src, [{ manifest: amd, arch: "amd64" }, { manifest: arm, arch: "arm64" }], "list");
    const dst = new MemoryStore();
    const warnings: string[] = [];
    const r = await copyImage(uncompressedLayers(src.ref("list")), dst.ref("copy"), { multiArch: "all", onProgress: warningsOf(warnings) });
    const written = dst.manifests.get(r.digest) as Manifest;
    expect(written.digest).not.toBe(index.digest);
    expect(written.index.manifests.map((d) => d.platform?.architecture)).toEqual(["amd64", "arm64"]);
    for (const [i, d] of written.index.manifests.entries()) {
      const m = dst.manifests.get(d.digest) as Manifest;
      expect(m.digest).toBe(d.digest);
      expect(m.bytes.length).toBe(d.size);
      const original = [amd, arm][i] as Manifest;
      expect(m.mediaType).toBe(original.mediaType);
      expect(m.image.config).toEqual(original.image.config);
      for (const [j, l] of m.image.layers.entries()) {
        expect(l.mediaType).toBe(i === 0 ? MediaType.OCILayerGzip : MediaType.DockerLayerGzip);
        const blob = dst.blobs.get(l.digest) as Buffer;
        expect(detectCompression(blob)).toBe("gzip");
        expect([digestOf(blob), blob.length]).toEqual([l.digest, l.size]);
        expect(gunzipSync(blob)).toEqual(src.blobs.get((original.image.layers[j] as { digest: string }).digest));
      }
    }
    // 2 configs and 3 distinct layers.
    expect(r.blobsCopied).toBe(5);
    expect(warnings).toEqual([
      expect.stringMatching(/2 layer\(s\) compressed with gzip \(memory: holds its layers uncompressed, under their original compressed media types; memory: stores layers as their media types say\)/),
      expect.stringMatching(/2 layer\(s\) compressed with gzip/),
      expect.stringMatching(/manifest digest changed from .* its images were converted/),
    ]);
    // dir: (containers/image's PreserveOriginal) keeps what the source gives, digests unchanged.
    const kept = await copyImage(uncompressedLayers(src.ref("list")), DirReference.parse(join(dir, "kept")), { onProgress: warningsOf(warnings) });
    expect(kept.digest).toBe(amd.digest);
    expect(warnings).toHaveLength(3);
    // A source without the flag is trusted as it is: nothing changes.
    const plain = new MemoryStore();
    expect((await copyImage(src.ref("list"), plain.ref("copy"), { multiArch: "all" })).digest).toBe(index.digest);
  });

  it("the user's choice wins (--dest-compress to dir:, --dest-decompress); --preserve-digests refuses", async () => {
    const src = new MemoryStore();
    const image = makeImage(src, { layers: ["one uncompressed layer"], name: "img" });
    const ref = uncompressedLayers(src.ref("img"));
    const compressed = await copyImage(ref, DirReference.parse(join(dir, "compressed")), { convert: { compress: true } });
    const m = await readDirManifest(join(dir, "compressed"));
    expect(m.digest).toBe(compressed.digest);
    expect(detectCompression(await fs.readFile(join(dir, "compressed", (m.image.layers[0] as { digest: string }).digest.slice(7))))).toBe("gzip");
    const dst = new MemoryStore();
    const plain = await copyImage(ref, dst.ref("x"), { convert: { decompress: true } });
    const layers = (dst.manifests.get(plain.digest) as Manifest).image.layers;
    expect(layers).toEqual([{ ...image.image.layers[0], mediaType: MediaType.OCILayer }]);
    await expect(copyImage(ref, new MemoryStore().ref("x"), { preserveDigests: true })).rejects.toThrow(/compressed with gzip: memory: holds its layers uncompressed.*Instructed to preserve digests/);
  });
});
