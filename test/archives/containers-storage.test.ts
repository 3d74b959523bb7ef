/**
 * airlock and podman share a containers/storage store: airlock reads images podman stored (vfs and
 * overlay layouts) and gets the manifest, config and layer digests skopeo gets from the same store,
 * and podman sees, inspects and saves images airlock wrote, with the same diff IDs. podman runs
 * rootful with a private store in a temporary directory. Skipped when podman is not installed.
 */
import { execFile, execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { copyImage, parseImageName } from "@airlock/core";
import "../../packages/core/src/transports/all.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const run = promisify(execFile);
const fixtures = fileURLToPath(new URL("../../fixtures/", import.meta.url));
const has = (cmd: string) => {
  try {
    execFileSync(cmd, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
const hasPodman = has("podman") && has("skopeo") && process.getuid?.() === 0;

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
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-cs-"));
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
