/**
 * The docker-archive: transport: references, `docker save` archives of every layout (airlock's and
 * skopeo's, Docker's legacy `<id>/layer.tar` with links, compressed layers, compressed archives),
 * archives of several images, atomic writes, bad input, and interoperability with skopeo and podman.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { type Headers, pack } from "tar-stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../../../../../test/support/memory-transport.js";
import { copyImage } from "../../copy/copy.js";
import { type Digest, digestOf } from "../../digest.js";
import { Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import { parseImageName } from "../index.js";
import "../all.js";
import { DirReference } from "../dir/reference.js";
import { OciReference } from "../oci/reference.js";
import type { ImageSource } from "../types.js";
import { DockerArchiveReader } from "./reader.js";
import { DockerArchiveReference } from "./reference.js";
import { DockerArchiveImageSource } from "./source.js";

const run = promisify(execFile);
const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 });
const fixtures = fileURLToPath(new URL("../../../../../fixtures/", import.meta.url));
/** The fixture image `docker` (Docker v2s2, 2 gzip layers), its config and diff IDs. */
const DOCKER = {
  digest: "sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625",
  ref: () => OciReference.parse(`${join(fixtures, "oci")}:docker`),
};

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-dockerarchive-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const archive = (spec: string) => DockerArchiveReference.parse(spec);

interface TarFile {
  name: string;
  data?: string | Buffer;
  linkname?: string;
}

/** A tar archive of `files`, built with tar-stream (symlinks where `linkname` is given). */
async function tarOf(files: TarFile[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    p.on("end", resolve);
    p.on("error", reject);
  });
  for (const f of files) {
    const h: Headers = { name: f.name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 };
    if (f.linkname !== undefined) p.entry({ ...h, type: "symlink", linkname: f.linkname });
    else p.entry(h, f.data ?? "");
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** The config and manifest of the fixture `docker` image, read from the fixture layout. */
async function dockerFixture(): Promise<{ manifest: Manifest; config: Buffer; diffIDs: Digest[] }> {
  const blob = (d: string) => fs.readFile(join(fixtures, "oci/blobs/sha256", d.slice(7)));
  const manifest = Manifest.parse(await blob(DOCKER.digest));
  const config = await blob(manifest.image.config.digest);
  return { manifest, config, diffIDs: (JSON.parse(config.toString()) as { rootfs: { diff_ids: Digest[] } }).rootfs.diff_ids };
}

/** Reads the manifest and every blob of `ref`, checking each against its digest. */
async function readImage(src: ImageSource): Promise<Manifest> {
  const m = await src.getManifest();
  for (const b of m.blobs()) {
    const { stream, size } = await src.getBlob(b);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    expect(digestOf(data)).toBe(b.digest);
    expect(data.length).toBe(b.size);
    if (size !== undefined) expect(size).toBe(b.size);
  }
  return m;
}

async function openRead(spec: string): Promise<Manifest> {
  const src = await archive(spec).newSource();
  try {
    return await readImage(src);
  } finally {
    await src.close();
  }
}

/** manifest.json of an archive, read with tar. */
async function tarManifest(path: string): Promise<{ Config: string; RepoTags: string[] | null; Layers: string[] }[]> {
  return JSON.parse((await run("tar", ["-xOf", path, "manifest.json"])).stdout);
}

/** A Docker v2s2 image with real (uncompressed-tar, gzipped) layers in a memory store. */
async function realDockerImage(store: MemoryStore, name: string, files: Record<string, string>): Promise<Manifest> {
  const tar = await tarOf(Object.entries(files).map(([n, d]) => ({ name: n, data: d })));
  const layer = store.addBlob(gzipSync(tar), MediaType.DockerLayerGzip);
  const config = store.addBlob(JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["/bin/sh"] }, rootfs: { type: "layers", diff_ids: [digestOf(tar)] } }), MediaType.DockerConfig);
  return store.addManifest(Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers: [layer] }))), name);
}

describe("docker-archive: references", () => {
  it.each([
    ["/a.tar", "/a.tar", undefined, undefined],
    ["/a.tar:busybox", "/a.tar", "docker.io/library/busybox:latest", undefined],
    ["a.tar:quay.io/org/app:1.0", "a.tar", "quay.io/org/app:1.0", undefined],
    ["a.tar:localhost:5000/app", "a.tar", "localhost:5000/app:latest", undefined],
    ["a.tar:@1", "a.tar", undefined, 1],
  ])("parses %s", (spec, path, ref, position) => {
    const r = archive(spec);
    expect([r.path, r.dockerReference(), r.position]).toEqual([path, ref, position]);
    expect(r.toString()).toBe(`docker-archive:${spec}`);
    expect(String(parseImageName(`docker-archive:${spec}`))).toBe(`docker-archive:${spec}`);
  });
  it.each([
    ["", /archive path is missing/],
    ["a.tar:@-1", /not a non-negative integer/],
    ["a.tar:Upper/Case", /lowercase/],
    [`a.tar:app@sha256:${"a".repeat(64)}`, /not by digest/],
  ])("rejects %j", (spec, message) => {
    expect(() => archive(spec)).toThrow(message);
  });
});

describe("docker-archive: write and read", () => {
  it("writes a docker load archive: manifest.json, <hex>.json, uncompressed <diff-id>.tar layers; reads it back with the diff IDs", async () => {
    const path = join(dir, "a.tar");
    await copyImage(DOCKER.ref(), archive(`${path}:app:1`));
    const { manifest, config, diffIDs } = await dockerFixture();
    const items = await tarManifest(path);
    expect(items).toEqual([{ Config: `${manifest.image.config.digest.slice(7)}.json`, RepoTags: ["docker.io/library/app:1"], Layers: diffIDs.map((d) => `${d.slice(7)}.tar`) }]);
    const names = (await run("tar", ["-tf", path])).stdout.trim().split("\n");
    expect(names.at(-1)).toBe("manifest.json");
    // Layers are stored uncompressed: their bytes hash to the diff IDs.
    for (const d of diffIDs) expect(digestOf((await run("tar", ["-xOf", path, `${d.slice(7)}.tar`], { encoding: "buffer", maxBuffer: 1 << 24 })).stdout)).toBe(d);
    const m = await openRead(`${path}:app:1`);
    expect(m.mediaType).toBe(MediaType.DockerManifest);
    expect(m.image.config).toEqual({ mediaType: MediaType.DockerConfig, size: config.length, digest: manifest.image.config.digest });
    expect(m.image.layers.map((l) => [l.mediaType, l.digest])).toEqual(diffIDs.map((d) => ["application/vnd.docker.image.rootfs.diff.tar", d]));
    // Without a name, the only image; by position too.
    expect((await openRead(path)).digest).toBe(m.digest);
    expect((await openRead(`${path}:@0`)).digest).toBe(m.digest);
    // Copying it on to another docker archive changes nothing: same generated manifest.
    const r = await copyImage(archive(`${path}:app:1`), archive(`${join(dir, "b.tar")}:other:2`));
    expect(r.digest).toBe(m.digest);
    expect((await openRead(join(dir, "b.tar"))).digest).toBe(m.digest);
  });

  it("holds several images: tags move to the image written, an image with the same config gains the tags, an untagged image is kept", async () => {
    const path = join(dir, "multi.tar");
    const store = new MemoryStore();
    const one = await realDockerImage(store, "one", { "one.txt": "1\n" });
    const two = await realDockerImage(store, "two", { "two.txt": "2\n" });
    await copyImage(store.ref("one"), archive(`${path}:app:1`));
    await copyImage(store.ref("two"), archive(`${path}:other:1`));
    await copyImage(store.ref("one"), archive(`${path}:app:latest`), { destinationContext: { dockerArchiveAdditionalTags: ["quay.io/org/app:stable"] } as never });
    expect((await tarManifest(path)).map((i) => i.RepoTags)).toEqual([["docker.io/library/app:1", "docker.io/library/app:latest", "quay.io/org/app:stable"], ["docker.io/library/other:1"]]);
    // app:1 moves to image two; image one keeps its other tags.
    await copyImage(store.ref("two"), archive(`${path}:app:1`));
    expect((await tarManifest(path)).map((i) => i.RepoTags)).toEqual([["docker.io/library/app:latest", "quay.io/org/app:stable"], ["docker.io/library/other:1", "docker.io/library/app:1"]]);
    // An image whose only tag moves away is dropped.
    const three = await realDockerImage(store, "three", { "three.txt": "3\n" });
    await copyImage(store.ref("three"), archive(`${path}:other:1`));
    await copyImage(store.ref("three"), archive(`${path}:app:1`));
    const items = await tarManifest(path);
    expect(items.map((i) => i.RepoTags)).toEqual([["docker.io/library/app:latest", "quay.io/org/app:stable"], ["docker.io/library/other:1", "docker.io/library/app:1"]]);
    expect(items).toHaveLength(2);
    // Image two is gone: its config and layer are no longer in the archive.
    const listing = (await run("tar", ["-tf", path])).stdout;
    expect(listing).not.toContain(two.image.config.digest.slice(7));
    // Each image reads by tag and by position.
    const byTag = await openRead(`${path}:app:1`);
    expect(byTag.image.config.digest).toBe(three.image.config.digest);
    expect((await openRead(`${path}:quay.io/org/app:stable`)).image.config.digest).toBe(one.image.config.digest);
    expect((await openRead(`${path}:@1`)).image.config.digest).toBe(three.image.config.digest);
    // An untagged write appends an image without RepoTags, reachable by position.
    await copyImage(store.ref("two"), archive(path));
    expect((await tarManifest(path)).map((i) => i.RepoTags)).toEqual([["docker.io/library/app:latest", "quay.io/org/app:stable"], ["docker.io/library/other:1", "docker.io/library/app:1"], []]);
    expect((await openRead(`${path}:@2`)).image.config.digest).toBe(two.image.config.digest);
    // skopeo reads each of them.
    for (const [spec, want] of [
      ["app:latest", one],
      ["app:1", three],
    ] as const) {
      const info = JSON.parse((await skopeo("inspect", "--config", `docker-archive:${path}:${spec}`)).stdout) as { rootfs: { diff_ids: string[] } };
      expect(info.rootfs.diff_ids).toEqual(JSON.parse(store.blobs.get(want.image.config.digest)!.toString()).rootfs.diff_ids);
    }
  });

  it("writes nothing at PATH before commit; a failed copy leaves the archive as it was", async () => {
    const path = join(dir, "a.tar");
    await copyImage(DOCKER.ref(), archive(`${path}:app:1`));
    const before = await fs.readFile(path);
    const store = new MemoryStore();
    const m = await realDockerImage(store, "bad", { "x.txt": "x\n" });
    // A config whose diff ID does not match the layer: docker load would refuse the image.
    const cfg = JSON.parse(store.blobs.get(m.image.config.digest)!.toString());
    cfg.rootfs.diff_ids = [`sha256:${"0".repeat(64)}`];
    const config = store.addBlob(JSON.stringify(cfg), MediaType.DockerConfig);
    store.addManifest(Manifest.parse(Buffer.from(JSON.stringify({ ...m.image, config }))), "mismatch");
    const err = await copyImage(store.ref("mismatch"), archive(`${path}:bad:1`)).catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(err.message).toContain("rootfs.diff_ids[0]");
    expect(await fs.readFile(path)).toEqual(before);
    expect(await fs.readdir(dir)).toEqual(["a.tar"]);
    await expect(copyImage(store.ref("bad"), archive(`${join(dir, "new.tar")}:x:1`), { signal: AbortSignal.abort() })).rejects.toThrow();
    expect(await fs.readdir(dir)).toEqual(["a.tar"]);
  });
});

describe("docker-archive: reads every layout", () => {
  it("Docker's legacy <id>/layer.tar layout with a symlinked repeated layer, a gzip-compressed layer, and a gzip-compressed archive", async () => {
    const layerA = await tarOf([{ name: "a.txt", data: "layer a\n" }]);
    const layerB = await tarOf([{ name: "b.txt", data: "layer b\n".repeat(100) }]);
    const diffA = digestOf(layerA);
    const diffB = digestOf(layerB);
    const config1 = JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [diffA] } });
    const config2 = JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [diffA, diffB] } });
    const c1 = digestOf(config1).slice(7);
    const c2 = digestOf(config2).slice(7);
    const files: TarFile[] = [
      { name: "1111/VERSION", data: "1.0" },
      { name: "1111/json", data: "{}" },
      { name: "1111/layer.tar", data: layerA },
      // docker save links a layer it already wrote.
      { name: "2222/layer.tar", linkname: "../1111/layer.tar" },
      { name: "3333/layer.tar", data: gzipSync(layerB) },
      { name: `${c1}.json`, data: config1 },
      { name: `${c2}.json`, data: config2 },
      {
        name: "manifest.json",
        data: JSON.stringify([
          { Config: `${c1}.json`, RepoTags: ["one:latest"], Layers: ["1111/layer.tar"] },
          { Config: `${c2}.json`, RepoTags: ["two:latest"], Layers: ["2222/layer.tar", "3333/layer.tar"] },
        ]),
      },
      { name: "repositories", data: "{}" },
    ];
    const path = join(dir, "legacy.tar");
    await fs.writeFile(path, await tarOf(files));
    const one = await openRead(`${path}:one`);
    expect(one.image.layers.map((l) => l.digest)).toEqual([diffA]);
    const two = await openRead(`${path}:two:latest`);
    expect(two.image.layers.map((l) => [l.digest, l.size])).toEqual([
      [diffA, layerA.length],
      [diffB, layerB.length],
    ]);
    // The same archive, gzip-compressed as a whole: the same images.
    await fs.writeFile(join(dir, "legacy.tar.gz"), gzipSync(await fs.readFile(path)));
    expect((await openRead(`${join(dir, "legacy.tar.gz")}:two`)).digest).toBe(two.digest);
    // Written on by airlock: layers stored uncompressed, both images kept; skopeo agrees.
    await copyImage(archive(`${path}:two`), archive(`${join(dir, "out.tar")}:two:1`));
    await copyImage(archive(`${path}:one`), archive(`${join(dir, "out.tar")}:one:1`));
    expect((await openRead(`${join(dir, "out.tar")}:two:1`)).digest).toBe(two.digest);
    const info = JSON.parse((await skopeo("inspect", `docker-archive:${join(dir, "out.tar")}:two:1`)).stdout) as { Layers: string[] };
    expect(info.Layers).toEqual([diffA, diffB]);
  });
});

describe("docker-archive: Docker 25+ archives and indexes", () => {
  it("a docker save archive that is also an OCI layout (Docker 25+: manifest.json pointing into blobs/sha256) reads both ways", async () => {
    const layer = await tarOf([{ name: "hello.txt", data: "hello\n" }]);
    const diff = digestOf(layer);
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [diff] } }));
    const cd = digestOf(config);
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCIManifest, config: { mediaType: MediaType.OCIConfig, digest: cd, size: config.length }, layers: [{ mediaType: MediaType.OCILayer, digest: diff, size: layer.length }] }),
    );
    const md = digestOf(manifest);
    const blob = (d: string) => `blobs/sha256/${d.slice(7)}`;
    const path = join(dir, "docker25.tar");
    await fs.writeFile(
      path,
      await tarOf([
        { name: blob(diff), data: layer },
        { name: blob(cd), data: config },
        { name: blob(md), data: manifest },
        { name: "index.json", data: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.OCIManifest, digest: md, size: manifest.length, annotations: { "io.containerd.image.name": "docker.io/library/hello:1", "org.opencontainers.image.ref.name": "1" } }] }) },
        { name: "manifest.json", data: JSON.stringify([{ Config: blob(cd), RepoTags: ["hello:1"], Layers: [blob(diff)] }]) },
        { name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' },
        { name: "repositories", data: "{}" },
      ]),
    );
    const m = await openRead(`${path}:hello:1`);
    expect([m.image.config.digest, m.image.layers.map((l) => l.digest)]).toEqual([cd, [diff]]);
    const src = await parseImageName(`oci-archive:${path}:1`).newSource();
    expect((await readImage(src)).digest).toBe(md);
    await src.close();
  });

  it("from a multi-arch index, the image of the chosen platform is written", async () => {
    const path = join(dir, "a.tar");
    const r = await copyImage(OciReference.parse(`${join(fixtures, "oci")}:multi`), archive(`${path}:multi:arm`), { platform: { os: "linux", architecture: "arm64" } });
    const config = JSON.parse((await skopeo("inspect", "--config", `docker-archive:${path}`)).stdout) as { architecture: string };
    expect(config.architecture).toBe("arm64");
    expect((await openRead(path)).digest).toBe(r.digest);
    await expect(copyImage(OciReference.parse(`${join(fixtures, "oci")}:multi`), archive(`${path}:multi:all`), { multiArch: "all" })).rejects.toThrow(/cannot store a multi-arch index/);
  });
});

describe("docker-archive: the reader, for other transports", () => {
  it("several sources over one open reader (DockerArchiveImageSource.fromReader); the reader stays the caller's", async () => {
    const path = join(dir, "two.tar");
    const store = new MemoryStore();
    const one = await realDockerImage(store, "one", { "1": "1" });
    const two = await realDockerImage(store, "two", { "2": "2" });
    await copyImage(store.ref("one"), archive(`${path}:first:1`));
    await copyImage(store.ref("two"), archive(`${path}:second:2`));
    const reader = await DockerArchiveReader.open(path);
    expect(reader.repoTags(1).map(String)).toEqual(["docker.io/library/second:2"]);
    const a = await DockerArchiveImageSource.fromReader(archive(`${path}:@0`), reader, { position: 0 });
    const b = await DockerArchiveImageSource.fromReader(archive(`${path}:second:2`), reader, { ref: archive(`${path}:second:2`).ref });
    expect((await readImage(a)).image.config.digest).toBe(one.image.config.digest);
    await a.close();
    expect((await readImage(b)).image.config.digest).toBe(two.image.config.digest);
    await b.close();
    await reader.close();
  });
});

describe("docker-archive: bad input", () => {
  it("an archive with two images and no name: an error naming both", async () => {
    const path = join(dir, "two.tar");
    const store = new MemoryStore();
    await realDockerImage(store, "one", { "1": "1" });
    await realDockerImage(store, "two", { "2": "2" });
    await copyImage(store.ref("one"), archive(`${path}:first:1`));
    await copyImage(store.ref("two"), archive(`${path}:second:2`));
    const err = await archive(path)
      .newSource()
      .catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: "ERR_AMBIGUOUS_IMAGE" });
    expect(err.message).toContain("@0 docker.io/library/first:1");
    expect(err.message).toContain("@1 docker.io/library/second:2");
    expect(err.message).toContain(`docker-archive:${path}:NAME:TAG`);
    await expect(archive(`${path}:third:3`).newSource()).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
    await expect(archive(`${path}:@2`).newSource()).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
  });

  it("corrupt, truncated, foreign and inconsistent archives are refused with what is wrong", async () => {
    const path = join(dir, "a.tar");
    await copyImage(DOCKER.ref(), archive(`${path}:app:1`));
    const good = await fs.readFile(path);
    const corrupt = Buffer.from(good);
    corrupt.write("XXXXXXXX", 100); // the first header's mode field: its checksum no longer matches
    await fs.writeFile(join(dir, "corrupt.tar"), corrupt);
    await expect(archive(join(dir, "corrupt.tar")).newSource()).rejects.toThrow(/damaged/);
    await fs.writeFile(join(dir, "truncated.tar"), good.subarray(0, good.length - 3000));
    await expect(archive(join(dir, "truncated.tar")).newSource()).rejects.toThrow(/truncated/);
    await expect(archive(join(dir, "none.tar")).newSource()).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
    // An OCI archive is named as such.
    await fs.writeFile(join(dir, "oci.tar"), await tarOf([{ name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' }, { name: "index.json", data: '{"schemaVersion":2,"manifests":[]}' }]));
    await expect(archive(join(dir, "oci.tar")).newSource()).rejects.toThrow(/oci-archive:/);
    // manifest.json naming a missing layer; a config with the wrong number of diff IDs.
    const cfg = JSON.stringify({ rootfs: { type: "layers", diff_ids: [`sha256:${"1".repeat(64)}`] } });
    await fs.writeFile(join(dir, "missing.tar"), await tarOf([{ name: "c.json", data: cfg }, { name: "manifest.json", data: JSON.stringify([{ Config: "c.json", RepoTags: null, Layers: ["l.tar"] }]) }]));
    await expect(archive(join(dir, "missing.tar")).newSource()).rejects.toThrow(/its layer l.tar is not in the archive/);
    await fs.writeFile(join(dir, "count.tar"), await tarOf([{ name: "c.json", data: cfg }, { name: "manifest.json", data: JSON.stringify([{ Config: "c.json", RepoTags: null, Layers: [] }]) }]));
    await expect(archive(join(dir, "count.tar")).newSource()).rejects.toThrow(/0 layers, its config 1 diff IDs/);
    await fs.writeFile(join(dir, "json.tar"), await tarOf([{ name: "manifest.json", data: "{not json" }]));
    await expect(archive(join(dir, "json.tar")).newSource()).rejects.toThrow(/not valid JSON/);
  });

  it("a layer whose content does not match its diff ID fails the copy", async () => {
    const layer = await tarOf([{ name: "a.txt", data: "a\n" }]);
    const cfg = JSON.stringify({ rootfs: { type: "layers", diff_ids: [digestOf(Buffer.concat([layer, Buffer.from("x")]))] } });
    await fs.writeFile(join(dir, "bad.tar"), await tarOf([{ name: "c.json", data: cfg }, { name: "l.tar", data: layer }, { name: "manifest.json", data: JSON.stringify([{ Config: "c.json", RepoTags: null, Layers: ["l.tar"] }]) }]));
    await expect(copyImage(archive(join(dir, "bad.tar")), OciReference.parse(`${join(dir, "out")}:x`))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    // Into another docker archive the layer streams straight in: the mismatch still fails the copy, and nothing is left.
    await expect(copyImage(archive(join(dir, "bad.tar")), archive(`${join(dir, "copy.tar")}:x:1`))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect((await fs.readdir(dir)).filter((f) => f.includes("copy.tar"))).toEqual([]);
  });

  it("refuses to write to @N, to a directory, or an index", async () => {
    await expect(archive(`${join(dir, "a.tar")}:@0`).newDestination()).rejects.toMatchObject({ code: "ERR_INVALID_REFERENCE" });
    await expect(archive(`${dir}:x:1`).newDestination()).rejects.toThrow(/is a directory/);
    await expect(archive(`${join(dir, "a.tar")}:x:1`).newDestination({ dockerArchiveAdditionalTags: ["x@sha256:1"] } as never)).rejects.toMatchObject({ code: "ERR_INVALID_REFERENCE" });
  });
});

describe("docker-archive: interoperability", () => {
  it("airlock reads what skopeo writes: the same config and layers; skopeo labels the uncompressed layers gzip (containers/image#1270)", async () => {
    const path = join(dir, "skopeo.tar");
    await skopeo("copy", `dir:${join(fixtures, "dir/docker")}`, `docker-archive:${path}:app:1`);
    const m = await openRead(`${path}:app:1`);
    const { manifest, diffIDs } = await dockerFixture();
    expect(m.image.config.digest).toBe(manifest.image.config.digest);
    expect(m.image.layers.map((l) => l.digest)).toEqual(diffIDs);
    const raw = (await skopeo("inspect", "--raw", `docker-archive:${path}:app:1`)).stdout;
    // The one difference: containers/image calls the uncompressed layers ".tar.gzip"; airlock says ".tar".
    expect(raw.replaceAll("application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.image.rootfs.diff.tar")).toBe(Buffer.from(m.bytes).toString());
    // Written on by airlock next to skopeo's image, then read by skopeo.
    await copyImage(DirReference.parse(join(fixtures, "dir/docker")), archive(`${path}:app:2`));
    expect((await tarManifest(path)).map((i) => i.RepoTags)).toEqual([["docker.io/library/app:1", "docker.io/library/app:2"]]);
    const info = JSON.parse((await skopeo("inspect", `docker-archive:${path}:app:2`)).stdout) as { Layers: string[] };
    expect(info.Layers).toEqual(diffIDs);
  });

  it("skopeo copies out of an airlock archive with the same config and layers", async () => {
    const path = join(dir, "a.tar");
    await copyImage(DOCKER.ref(), archive(`${path}:app:1`));
    const out = join(dir, "out");
    await skopeo("copy", `docker-archive:${path}:app:1`, `dir:${out}`);
    const m = Manifest.parse(await fs.readFile(join(out, "manifest.json")));
    const { manifest, diffIDs } = await dockerFixture();
    expect(m.image.config.digest).toBe(manifest.image.config.digest);
    expect(m.image.layers.map((l) => l.digest)).toEqual(diffIDs);
  });
});
