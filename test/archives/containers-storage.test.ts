/**
 * airlock and podman share a containers/storage store: airlock reads images podman stored (vfs and
 * overlay layouts) and gets the manifest, config and layer digests skopeo gets from the same store,
 * and podman sees, inspects and saves images airlock wrote, with the same diff IDs. podman runs
 * rootful with a private store in a temporary directory. Skipped when podman is not installed.
 */
import { execFile, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { createHash, randomBytes } from "node:crypto";
import { buffer } from "node:stream/consumers";
import { copyImage, parseImageName } from "@airlock/core";
import { pack } from "tar-stream";
import "../../packages/core/src/transports/all.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { gunzipSync } from "node:zlib";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";
import { hasPodman } from "../support/tools.js";

const run = promisify(execFile);
const fixtures = fileURLToPath(new URL("../../fixtures/", import.meta.url));

let dir: string;
let root: string;
let runroot: string;
const podman = (...args: string[]) =>
  run("podman", ["--storage-driver", "vfs", "--root", root, "--runroot", runroot, "--events-backend", "file", ...args], { maxBuffer: 16 << 20 });
const skopeo = (...args: string[]) => run("skopeo", args, { maxBuffer: 16 << 20 });
const store = () => `[vfs@${root}+${runroot}]`;

/** Every file of a dir: image, by name → content. */
async function dirFiles(path: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of (await fs.readdir(path)).sort()) out.set(name, await fs.readFile(join(path, name)));
  return out;
}

beforeAll(async () => {
  if (!hasPodman) return;
  // Lowercase: podman names an image pulled from oci:PATH after PATH.
  dir = join(tmpdir(), `airlock-cs-${randomBytes(6).toString("hex")}`);
  await fs.mkdir(dir);
  root = join(dir, "root");
  runroot = join(dir, "run");
  const single = (await podman("pull", "-q", `oci:${fixtures}oci:single`)).stdout.trim();
  await podman("tag", single, "localhost/single:1");
  const docker = (await podman("pull", "-q", `dir:${fixtures}dir/docker`)).stdout.trim();
  await podman("tag", docker, "localhost/docker:1");
});
afterAll(async () => {
  if (!dir) return;
  await podman("system", "reset", "--force").catch(() => {});
  // podman keeps an overlay store's directory mounted on itself.
  for (const s of ["podman-overlay", "airlock-overlay"]) await run("umount", [join(dir, s, "root", "overlay")]).catch(() => {});
  await fs.rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasPodman)("containers-storage: airlock reads what podman stored", () => {
  for (const name of ["single", "docker"]) {
    it(`${name}: the same manifest, config and layers as skopeo copy … dir:`, async () => {
      const ref = `containers-storage:${store()}localhost/${name}:1`;
      await skopeo("copy", ref, `dir:${join(dir, `skopeo-${name}`)}`);
      const r = await copyImage(parseImageName(ref), parseImageName(`dir:${join(dir, `airlock-${name}`)}`));
      const want = await dirFiles(join(dir, `skopeo-${name}`));
      const got = await dirFiles(join(dir, `airlock-${name}`));
      expect([...got.keys()]).toEqual([...want.keys()]);
      for (const [file, bytes] of want) expect(got.get(file)?.equals(bytes), file).toBe(true);
      expect(r.digest).toBe(`sha256:${(await run("sha256sum", [join(dir, `skopeo-${name}`, "manifest.json")])).stdout.slice(0, 64)}`);
    });
  }
});

/** A layer or config descriptor of a manifest. */
interface Desc {
  mediaType: string;
  digest: string;
  size: number;
}

/**
 * Checks an image manifest whose blobs `blob` reads: every layer is gzip data, as its media type
 * says, with its descriptor's digest and size, and decompresses to the config's diff ID. Returns the layer media types.
 */
async function expectGzipLayers(manifest: { config: Desc; layers: Desc[] }, blob: (digest: string) => Promise<Buffer>): Promise<string[]> {
  const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
  const config = JSON.parse((await blob(manifest.config.digest)).toString()) as { rootfs: { diff_ids: string[] } };
  expect(manifest.layers.length).toBe(config.rootfs.diff_ids.length);
  for (const [i, l] of manifest.layers.entries()) {
    expect(l.mediaType).toMatch(/(\+gzip|\.tar\.gzip)$/);
    const bytes = await blob(l.digest);
    expect([...bytes.subarray(0, 3)], l.digest).toEqual([0x1f, 0x8b, 0x08]);
    expect(sha(bytes)).toBe(l.digest);
    expect(bytes.length).toBe(l.size);
    expect(sha(gunzipSync(bytes))).toBe(config.rootfs.diff_ids[i]);
  }
  return manifest.layers.map((l) => l.mediaType);
}

describe.skipIf(!hasPodman)("containers-storage: copies into destinations that trust media types get gzip layers", () => {
  let registry: RunningRegistry;
  beforeAll(async () => {
    if (hasPodman) registry = await startRegistry({ mode: "plain" });
  });
  afterAll(async () => {
    await registry?.stop();
  });
  const layoutBlob = (layout: string) => (d: string) => fs.readFile(join(layout, "blobs/sha256", d.slice(7)));

  it("→ oci: the uncompressed tars the store holds are compressed under their gzip media type; umoci unpacks the layout; a warning says the digest changed", async () => {
    const ref = `containers-storage:${store()}localhost/single:1`;
    const layout = join(dir, "to-oci");
    const warnings: string[] = [];
    const r = await copyImage(parseImageName(ref), parseImageName(`oci:${layout}:x`), { onProgress: (e) => e.type === "warning" && warnings.push(e.message) });
    const manifest = JSON.parse((await layoutBlob(layout)(r.digest)).toString()) as { config: Desc; layers: Desc[] };
    expect(await expectGzipLayers(manifest, layoutBlob(layout))).toEqual(["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+gzip"]);
    expect(warnings).toEqual([expect.stringMatching(/manifest digest changed from sha256:\w+ to .*2 layer\(s\) compressed with gzip.*containers-storage: holds its layers uncompressed/)]);
    // skopeo copies the same: the config and the layer media types (its gzip bytes are Go's).
    await skopeo("copy", ref, `oci:${join(dir, "to-oci-skopeo")}:x`);
    const theirs = JSON.parse((await skopeo("inspect", "--raw", `oci:${join(dir, "to-oci-skopeo")}:x`)).stdout) as typeof manifest;
    expect(manifest.config).toEqual(theirs.config);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(theirs.layers.map((l) => l.mediaType));
    await run("umoci", ["unpack", "--image", `${layout}:x`, join(dir, "to-oci-bundle")]);
    expect(await fs.readdir(join(dir, "to-oci-bundle", "rootfs"))).not.toEqual([]);
  });

  it("→ docker:// (a Docker v2s2 image): the registry takes the gzip layers and skopeo pulls back a verified image", async () => {
    const dest = `docker://${registry.host}/cs/docker:1`;
    const r = await copyImage(parseImageName(`containers-storage:${store()}localhost/docker:1`), parseImageName(dest));
    const pulled = join(dir, "from-registry");
    await skopeo("copy", "--src-tls-verify=false", dest, `dir:${pulled}`);
    const bytes = await fs.readFile(join(pulled, "manifest.json"));
    expect(`sha256:${createHash("sha256").update(bytes).digest("hex")}`).toBe(r.digest);
    const manifest = JSON.parse(bytes.toString()) as { mediaType: string; config: Desc; layers: Desc[] };
    expect(manifest.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
    const types = await expectGzipLayers(manifest, (d) => fs.readFile(join(pulled, d.slice(7))));
    expect(new Set(types)).toEqual(new Set(["application/vnd.docker.image.rootfs.diff.tar.gzip"]));
  });

  it("the user's conversion wins (--dest-decompress: uncompressed media types); --preserve-digests refuses rather than write a gzip type over a tar", async () => {
    const ref = `containers-storage:${store()}localhost/single:1`;
    const layout = join(dir, "to-oci-decompressed");
    const r = await copyImage(parseImageName(ref), parseImageName(`oci:${layout}:x`), { convert: { decompress: true } });
    const manifest = JSON.parse((await layoutBlob(layout)(r.digest)).toString()) as { layers: Desc[] };
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar"]);
    for (const l of manifest.layers) expect((await layoutBlob(layout)(l.digest)).subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]))).toBe(false);
    const refused = await runCli(["copy", "-q", "--preserve-digests", ref, `oci:${join(dir, "to-oci-preserved")}:x`]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/compressed with gzip.*Instructed to preserve digests/);
    await expect(fs.stat(join(dir, "to-oci-preserved", "index.json"))).rejects.toThrow();
  });
});

describe.skipIf(!hasPodman)("containers-storage: errors", () => {
  it("a missing image or store is 'not found' (exit 2), naming the store", async () => {
    const missing = await runCli(["inspect", `containers-storage:${store()}localhost/nope:1`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no image is named localhost/nope:1");
    const noStore = await runCli(["inspect", `containers-storage:[vfs@${join(dir, "absent")}+${join(dir, "absent-run")}]busybox`]);
    expect(noStore.code).toBe(2);
    expect(noStore.stderr).toContain(join(dir, "absent"));
  });
});

describe.skipIf(!hasPodman)("containers-storage: podman uses what airlock wrote", () => {
  it("podman lists, inspects and saves an image airlock wrote, with its config as ID and the same diff IDs; skopeo reads back identical layers", async () => {
    const ref = `containers-storage:${store()}localhost/written:1`;
    const r = await copyImage(parseImageName(`oci:${fixtures}oci:single`), parseImageName(ref));
    const src = await parseImageName(`oci:${fixtures}oci:single`).newSource();
    const m = await src.getManifest();
    const config = JSON.parse((await fs.readFile(join(fixtures, "oci/blobs/sha256", m.image.config.digest.slice(7)))).toString()) as { rootfs: { diff_ids: string[] } };
    await src.close();
    expect(r.digest).toBe(m.digest);
    const [inspected] = JSON.parse((await podman("image", "inspect", "localhost/written:1")).stdout) as { Id: string; Digest: string; RootFS: { Layers: string[] }; RepoTags: string[] }[];
    expect(inspected?.Id).toBe(m.image.config.digest.slice(7));
    expect(inspected?.Digest).toBe(m.digest);
    expect(inspected?.RootFS.Layers).toEqual(config.rootfs.diff_ids);
    expect(inspected?.RepoTags).toContain("localhost/written:1");
    // podman's own code regenerates each layer from airlock's tar-split and files: the digests match.
    const out = join(dir, "written-by-skopeo");
    await skopeo("copy", ref, `dir:${out}`);
    for (const d of config.rootfs.diff_ids) expect((await run("sha256sum", [join(out, d.slice(7))])).stdout.slice(0, 64)).toBe(d.slice(7));
    await podman("save", "-o", join(dir, "written.tar"), "localhost/written:1");
    await podman("image", "tree", "localhost/written:1");
  });

  it("a second image sharing a base layer reuses it, and a name moves to the image written last", async () => {
    await copyImage(parseImageName(`oci:${fixtures}oci:base-a`), parseImageName(`containers-storage:${store()}localhost/base:a`));
    const layersBefore = JSON.parse(await fs.readFile(join(root, "vfs-layers", "layers.json"), "utf8")) as unknown[];
    await copyImage(parseImageName(`oci:${fixtures}oci:base-b`), parseImageName(`containers-storage:${store()}localhost/base:a`));
    const layersAfter = JSON.parse(await fs.readFile(join(root, "vfs-layers", "layers.json"), "utf8")) as unknown[];
    expect(layersAfter.length).toBe(layersBefore.length + 1);
    const listed = JSON.parse((await podman("images", "--format", "json")).stdout) as { Id: string; Names?: string[] }[];
    const named = listed.filter((i) => i.Names?.includes("localhost/base:a"));
    expect(named).toHaveLength(1);
    const src = await parseImageName(`oci:${fixtures}oci:base-b`).newSource();
    expect(named[0]?.Id).toBe((await src.getManifest()).image.config.digest.slice(7));
    await src.close();
    // The stored manifest is the one copied (skopeo inspect reports it).
    const want = await parseImageName(`oci:${fixtures}oci:base-b`).newSource();
    expect(JSON.parse((await skopeo("inspect", `containers-storage:${store()}localhost/base:a`)).stdout).Digest).toBe((await want.getManifest()).digest);
    await want.close();
  });
});

/** A tar of `entries` (name, options, content), uncompressed, made by tar-stream. */
async function tarOf(entries: [Record<string, unknown> & { name: string }, string?][]): Promise<Buffer> {
  const p = pack();
  const done = buffer(p);
  for (const [header, content] of entries) {
    await new Promise<void>((resolve, reject) => p.entry({ mtime: new Date(1_700_000_000_000), uid: 0, gid: 0, ...header }, content ?? "", (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  return done;
}

/** Writes an OCI layout holding one image with `layers` (uncompressed tars), named `name`. */
async function layoutWith(path: string, name: string, layers: Buffer[]): Promise<void> {
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  await fs.mkdir(join(path, "blobs", "sha256"), { recursive: true });
  const put = async (b: Buffer) => {
    await fs.writeFile(join(path, "blobs", "sha256", sha(b)), b);
    return `sha256:${sha(b)}`;
  };
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${sha(l)}`) } }));
  const layerDescs = [];
  for (const l of layers) layerDescs.push({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: await put(l), size: l.length });
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: await put(config), size: config.length }, layers: layerDescs }),
  );
  const index = { schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: await put(manifest), size: manifest.length, annotations: { "org.opencontainers.image.ref.name": name } }] };
  await fs.writeFile(join(path, "index.json"), JSON.stringify(index));
  await fs.writeFile(join(path, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
}

/** Every entry under `path`: type, mode, owner, size, content digest, link target, device, overlay opaque mark (mtime of non-directories). */
async function tree(path: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(join(path, rel))).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      const p = join(path, r);
      const st = await fs.lstat(p);
      let extra = "";
      if (st.isFile()) {
        const xattrs = (await run("/usr/bin/python3", ["-c", "import os,sys\nprint(sorted((k, os.getxattr(sys.argv[1], k)) for k in os.listxattr(sys.argv[1])))", p])).stdout.trim();
        extra = `${st.size} ${createHash("sha256").update(await fs.readFile(p)).digest("hex").slice(0, 12)} nlink=${st.nlink} mtime=${st.mtimeMs} xattrs=${xattrs}`;
      }
      else if (st.isSymbolicLink()) extra = `-> ${await fs.readlink(p)} mtime=${st.mtimeMs}`;
      else if (st.isCharacterDevice() || st.isFIFO()) extra = `rdev=${st.rdev}`;
      else if (st.isDirectory()) extra = `opaque=${(await run("/usr/bin/python3", ["-c", "import os,sys\ntry: print(os.getxattr(sys.argv[1], 'trusted.overlay.opaque'))\nexcept OSError: print('-')", p])).stdout.trim()}`;
      out.push(`${r} ${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${extra}`);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk("");
  return out;
}

describe.skipIf(!hasPodman)("containers-storage: a bad image leaves the store as it was", () => {
  it("a layer that is not what the config's diff_ids say is refused, with no layer, image or temporary directory left", async () => {
    const layout = join(dir, "bad-layout");
    await layoutWith(layout, "bad", [await tarOf([[{ name: "one" }, "1"]])]);
    // Point the config at another diff ID: the layer blob itself is intact (the copy verifies it).
    const index = JSON.parse(await fs.readFile(join(layout, "index.json"), "utf8")) as { manifests: { digest: string; size: number }[] };
    const manifestPath = join(layout, "blobs/sha256", index.manifests[0]!.digest.slice(7));
    const manifest = JSON.parse(await fs.readFile(manifestPath, "utf8")) as { config: { digest: string; size: number } };
    const config = JSON.parse(await fs.readFile(join(layout, "blobs/sha256", manifest.config.digest.slice(7)), "utf8")) as { rootfs: { diff_ids: string[] } };
    config.rootfs.diff_ids = [`sha256:${"ab".repeat(32)}`];
    const configBytes = Buffer.from(JSON.stringify(config));
    const configHex = createHash("sha256").update(configBytes).digest("hex");
    await fs.writeFile(join(layout, "blobs/sha256", configHex), configBytes);
    manifest.config = { ...manifest.config, digest: `sha256:${configHex}`, size: configBytes.length };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const manifestHex = createHash("sha256").update(manifestBytes).digest("hex");
    await fs.writeFile(join(layout, "blobs/sha256", manifestHex), manifestBytes);
    index.manifests[0] = { ...index.manifests[0]!, digest: `sha256:${manifestHex}`, size: manifestBytes.length };
    await fs.writeFile(join(layout, "index.json"), JSON.stringify(index));
    const before = { layers: await fs.readFile(join(root, "vfs-layers", "layers.json"), "utf8"), images: await fs.readFile(join(root, "vfs-images", "images.json"), "utf8"), dirs: await fs.readdir(join(root, "vfs", "dir")) };
    await expect(copyImage(parseImageName(`oci:${layout}:bad`), parseImageName(`containers-storage:${store()}localhost/bad:1`))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH", message: expect.stringContaining("diff_ids[0]") });
    expect(await fs.readFile(join(root, "vfs-layers", "layers.json"), "utf8")).toBe(before.layers);
    expect(await fs.readFile(join(root, "vfs-images", "images.json"), "utf8")).toBe(before.images);
    expect(await fs.readdir(join(root, "vfs", "dir"))).toEqual(before.dirs);
    expect((await fs.readdir(join(root, "vfs-layers"))).filter((f) => f.includes(".airlock-"))).toEqual([]);
  });
});

describe.skipIf(!hasPodman)("containers-storage: signatures", () => {
  it("signatures copied into the store are the ones skopeo and airlock read back", async () => {
    const layout = join(dir, "signed-layout");
    await layoutWith(layout, "s", [await tarOf([[{ name: "signed.txt" }, "signed"]])]);
    const signed = join(dir, "signed-dir");
    await copyImage(parseImageName(`oci:${layout}:s`), parseImageName(`dir:${signed}`));
    // Opaque bytes in the simple-signing blob format (an OpenPGP packet tag first): nothing here verifies them.
    const sig = Buffer.concat([Buffer.from([0xa3, 0x01]), randomBytes(40)]);
    await fs.writeFile(join(signed, "signature-1"), sig);
    const ref = `containers-storage:${store()}localhost/signed:1`;
    expect((await copyImage(parseImageName(`dir:${signed}`), parseImageName(ref))).signatures).toBe(1);
    const bySkopeo = join(dir, "signed-by-skopeo");
    await skopeo("copy", ref, `dir:${bySkopeo}`);
    expect(await fs.readFile(join(bySkopeo, "signature-1"))).toEqual(sig);
    const byAirlock = join(dir, "signed-by-airlock");
    await copyImage(parseImageName(ref), parseImageName(`dir:${byAirlock}`));
    expect(await fs.readFile(join(byAirlock, "signature-1"))).toEqual(sig);
  });
});

describe.skipIf(!hasPodman)("containers-storage: containers/storage's locks", () => {
  /** The variable that makes airlock use one lock helper (lock.ts). */
  const HELPER_ENV = "AIRLOCK_STORAGE_LOCK_HELPER";
  afterEach(() => {
    delete process.env[HELPER_ENV];
  });
  it.each(["/usr/bin/python3", "perl"])("a write waits while another process holds layers.lock (fcntl), and records its write in the lock file (helper: %s)", async (helper) => {
    process.env[HELPER_ENV] = helper;
    const lockFile = join(root, "vfs-layers", "layers.lock");
    const before = await fs.readFile(lockFile);
    // Another process takes the lock as podman does: fcntl F_SETLKW, F_WRLCK.
    const holder = spawn("/usr/bin/python3", ["-c", "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.lockf(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()", lockFile]);
    await new Promise((resolve) => holder.stdout.once("data", resolve));
    let released = false;
    const copied = copyImage(parseImageName(`dir:${fixtures}dir/docker`), parseImageName(`containers-storage:${store()}localhost/locked-${helper.replace(/\W/g, "")}:1`)).then(() => released);
    // Wait until airlock's request is queued behind the lock in the kernel (/proc/locks shows it blocked).
    const ino = (await fs.stat(lockFile)).ino;
    for (;;) {
      const locks = await fs.readFile("/proc/locks", "utf8");
      if (locks.split("\n").some((l) => l.includes("->") && l.includes(`:${ino} `))) break;
      await sleep(20);
    }
    const images = JSON.parse(await fs.readFile(join(root, "vfs-images", "images.json"), "utf8")) as { names?: string[] }[];
    expect(images.some((i) => i.names?.includes(`localhost/locked-${helper.replace(/\W/g, "")}:1`))).toBe(false);
    released = true;
    holder.stdin.end();
    expect(await copied).toBe(true);
    expect((await podman("image", "exists", `localhost/locked-${helper.replace(/\W/g, "")}:1`)).stdout).toBe("");
    expect((await fs.readFile(lockFile)).equals(before)).toBe(false);
  });
});

describe.skipIf(!hasPodman)("containers-storage: layers applied as podman applies them", () => {
  for (const driver of ["vfs", "overlay"]) {
    it(`${driver}: whiteouts, an opaque directory, owners, modes, links, xattrs and a fifo give podman's files and podman's diff IDs`, async () => {
      const layout = join(dir, `wh-${driver}`);
      const l1 = await tarOf([
        [{ name: "a", type: "directory", mode: 0o755 }],
        [{ name: "a/x" }, "x"],
        [{ name: "a/y" }, "y"],
        [{ name: "keep", uid: 1000, gid: 1001, mode: 0o640 }, "keep"],
        [{ name: "gone" }, "gone"],
        [{ name: "sub", type: "directory", mode: 0o750 }],
        [{ name: "sub/deep" }, "deep"],
        [{ name: "bin", type: "directory", mode: 0o755 }],
        [{ name: "bin/tool", mode: 0o4755 }, "#!/bin/sh\n"],
        [{ name: "link", type: "symlink", linkname: "keep" }],
        [{ name: "hard", type: "link", linkname: "keep" }],
        [{ name: "attrs", pax: { "SCHILY.xattr.user.airlock": "hello" } }, "with an extended attribute"],
      ]);
      const l2 = await tarOf([
        [{ name: "a", type: "directory", mode: 0o700 }],
        [{ name: "a/.wh..wh..opq" }],
        [{ name: "a/z" }, "z"],
        [{ name: ".wh.gone" }],
        [{ name: "sub/.wh.deep" }],
        [{ name: "keep", uid: 1000, gid: 1001, mode: 0o600 }, "kept again"],
        [{ name: "fifo", type: "fifo", mode: 0o644 }],
      ]);
      await layoutWith(layout, "wh", [l1, l2]);
      const theirs = join(dir, `podman-${driver}`);
      const ours = join(dir, `airlock-${driver}`);
      const p = (r: string, ...args: string[]) => run("podman", ["--storage-driver", driver, "--root", join(r, "root"), "--runroot", join(r, "run"), "--events-backend", "file", ...args]);
      try {
        await p(theirs, "pull", "-q", `oci:${layout}:wh`);
      } finally {
        // podman's store is read below from disk; its mount is not needed.
        if (driver === "overlay") await run("umount", [join(theirs, "root", "overlay")]).catch(() => {});
      }
      await copyImage(parseImageName(`oci:${layout}:wh`), parseImageName(`containers-storage:[${driver}@${join(ours, "root")}+${join(ours, "run")}]localhost/wh:1`));
      const layers = JSON.parse(await fs.readFile(join(ours, "root", `${driver}-layers`, "layers.json"), "utf8")) as { id: string; parent?: string; "diff-digest": string; uidset: number[] }[];
      const top = layers.find((l) => l.parent !== undefined);
      expect(top?.["diff-digest"]).toBe(`sha256:${createHash("sha256").update(l2).digest("hex")}`);
      const theirLayers = JSON.parse(await fs.readFile(join(theirs, "root", `${driver}-layers`, "layers.json"), "utf8")) as typeof layers;
      expect(layers.map((l) => [l.id, l.parent, l["diff-digest"], l.uidset])).toEqual(theirLayers.map((l) => [l.id, l.parent, l["diff-digest"], l.uidset]));
      const diff = (r: string, id: string) => (driver === "vfs" ? join(r, "root", "vfs", "dir", id) : join(r, "root", "overlay", id, "diff"));
      for (const l of layers) expect(await tree(diff(ours, l.id)), l.id).toEqual(await tree(diff(theirs, l.id)));
      const base = layers.find((l) => l.parent === undefined) as { id: string };
      expect((await tree(diff(ours, base.id))).find((e) => e.startsWith("attrs "))).toContain("user.airlock");
      // podman regenerates both layers from airlock's tar-split records with their diff IDs.
      const saved = join(dir, `saved-${driver}`);
      await run("skopeo", ["copy", `containers-storage:[${driver}@${join(ours, "root")}+${join(ours, "run")}]localhost/wh:1`, `dir:${saved}`]);
      for (const l of [l1, l2]) expect(await fs.readFile(join(saved, createHash("sha256").update(l).digest("hex")))).toEqual(l);
    });
  }
});
