/**
 * Interoperability with the real tools: what airlock writes to `oci:` and `dir:` is read by
 * skopeo and unpacked by umoci with the same digests, and what skopeo writes is read by airlock.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../../../../../test/support/memory-transport.js";
import { copyImage } from "../../copy/copy.js";
import { digestOf } from "../../digest.js";
import { Manifest } from "../../manifest.js";
import { MediaType } from "../../mediatype.js";
import { DirReference } from "../dir/reference.js";
import { OciReference } from "./reference.js";

const run = promisify(execFile);
const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 });

/** A tar archive of `files`, built with tar-stream (deterministic headers). */
async function tarOf(files: Record<string, string>): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    p.on("end", resolve);
    p.on("error", reject);
  });
  for (const [name, content] of Object.entries(files)) {
    p.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, content);
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Adds a runnable-looking OCI image with one real gzipped tar layer to `store`. */
async function addRealImage(store: MemoryStore, arch: string, files: Record<string, string>): Promise<Manifest> {
  const tar = await tarOf(files);
  const layer = store.addBlob(gzipSync(tar, { level: 9 }), MediaType.OCILayerGzip);
  const config = store.addBlob(
    JSON.stringify({ architecture: arch, os: "linux", config: { Cmd: ["/bin/sh"] }, rootfs: { type: "layers", diff_ids: [digestOf(tar)] }, history: [{ created_by: "airlock test" }] }),
    MediaType.OCIConfig,
  );
  return store.addManifest(Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCIManifest, config, layers: [layer] }))));
}

let tmp: string;
let layout: string;
let app: Manifest;
let multi: Manifest;

beforeAll(async () => {
  tmp = await fs.mkdtemp(join(tmpdir(), "airlock-interop-"));
  layout = join(tmp, "layout");
  const store = new MemoryStore();
  app = await addRealImage(store, "amd64", { "hello.txt": "hello from airlock\n", "etc/os-release": "ID=airlock\n" });
  store.names.set("app", app.digest);
  const amd = await addRealImage(store, "amd64", { "arch.txt": "amd64\n" });
  const arm = await addRealImage(store, "arm64", { "arch.txt": "arm64\n" });
  const manifests = [amd.descriptor({ platform: { os: "linux", architecture: "amd64" } }), arm.descriptor({ platform: { os: "linux", architecture: "arm64", variant: "v8" } })];
  multi = store.addManifest(Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCIIndex, manifests }))), "multi");
  await copyImage(store.ref("app"), OciReference.parse(`${layout}:app`));
  await copyImage(store.ref("multi"), OciReference.parse(`${layout}:multi`), { multiArch: "all" });
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe("skopeo and umoci read what airlock writes", () => {
  it("skopeo inspect sees the same digests", async () => {
    const { stdout } = await skopeo("inspect", `oci:${layout}:app`);
    const info = JSON.parse(stdout) as { Digest: string; Architecture: string; Layers: string[] };
    expect(info.Digest).toBe(app.digest);
    expect(info.Architecture).toBe("amd64");
    expect(info.Layers).toEqual(app.image.layers.map((l) => l.digest));
    const raw = await skopeo("inspect", "--raw", `oci:${layout}:multi`);
    expect(raw.stdout).toBe(Buffer.from(multi.bytes).toString());
  });

  it("skopeo copy from an airlock layout to oci: and dir: keeps every digest; airlock reads the results", async () => {
    const other = join(tmp, "skopeo-oci");
    await skopeo("copy", `oci:${layout}:app`, `oci:${other}:app`);
    await skopeo("copy", "--all", `oci:${layout}:multi`, `oci:${other}:multi`);
    const dirCopy = join(tmp, "skopeo-dir");
    await skopeo("copy", `oci:${layout}:app`, `dir:${dirCopy}`);

    for (const [ref, want] of [
      [OciReference.parse(`${other}:app`), app],
      [OciReference.parse(`${other}:multi`), multi],
      [DirReference.parse(dirCopy), app],
    ] as const) {
      const back = new MemoryStore();
      const r = await copyImage(ref, back.ref("x"), { multiArch: "all" });
      expect(r.digest).toBe(want.digest);
      expect(Buffer.from(back.manifests.get(want.digest)!.bytes)).toEqual(Buffer.from(want.bytes));
    }
  });

  it("airlock adds a name to a layout skopeo wrote, keeping skopeo's entries", async () => {
    const shared = join(tmp, "shared");
    await skopeo("copy", `oci:${layout}:app`, `oci:${shared}:from-skopeo`);
    await copyImage(OciReference.parse(`${layout}:multi`), OciReference.parse(`${shared}:from-airlock`), { multiArch: "all" });
    expect(JSON.parse((await skopeo("inspect", `oci:${shared}:from-skopeo`)).stdout).Digest).toBe(app.digest);
    expect((await skopeo("inspect", "--raw", `oci:${shared}:from-airlock`)).stdout).toBe(Buffer.from(multi.bytes).toString());
  });

  it("skopeo reads what airlock writes to dir:", async () => {
    const d = join(tmp, "airlock-dir");
    await copyImage(OciReference.parse(`${layout}:app`), DirReference.parse(d));
    expect(JSON.parse((await skopeo("inspect", `dir:${d}`)).stdout).Digest).toBe(app.digest);
    const out = join(tmp, "from-dir");
    await skopeo("copy", `dir:${d}`, `oci:${out}:app`);
    expect(JSON.parse((await skopeo("inspect", `oci:${out}:app`)).stdout).Digest).toBe(app.digest);
  });

  it("umoci unpacks an image from an airlock layout", async () => {
    const bundle = join(tmp, "bundle");
    await run("umoci", ["unpack", "--rootless", "--image", `${layout}:app`, bundle]);
    expect(await fs.readFile(join(bundle, "rootfs", "hello.txt"), "utf8")).toBe("hello from airlock\n");
    expect(await fs.readFile(join(bundle, "rootfs", "etc", "os-release"), "utf8")).toBe("ID=airlock\n");
  });
});
