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
