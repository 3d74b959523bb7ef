/**
 * podman and airlock exchange archives: `podman load` takes a docker-archive of several images
 * that airlock wrote (each image under its tags, with its config as image ID), and airlock reads
 * what `podman save` writes, as docker-archive (several images) and as oci-archive. podman runs
 * rootful with the vfs driver in a temporary store. Skipped when podman is not installed.
 */
import { execFile, execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { buffer } from "node:stream/consumers";
import { copyImage, DockerArchiveReference, digestOf, OciArchiveReference, OciReference } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const fixtures = fileURLToPath(new URL("../../fixtures/oci", import.meta.url));
const hasPodman = (() => {
  try {
    execFileSync("podman", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let dir: string;
const podman = (...args: string[]) =>
  run("podman", ["--storage-driver", "vfs", "--root", join(dir, "root"), "--runroot", join(dir, "runroot"), "--events-backend", "file", ...args], { maxBuffer: 16 << 20 });

beforeAll(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-podman-"));
});
afterAll(async () => {
  if (hasPodman) await podman("system", "reset", "--force").catch(() => {});
  await fs.rm(dir, { recursive: true, force: true });
});

/** The config digest (podman's image ID) of `name` in the fixture layout, as airlock reads it. */
async function configDigest(ref: Parameters<typeof copyImage>[0]): Promise<string> {
  const src = await ref.newSource();
  try {
    const m = await src.getManifest();
    return m.image.config.digest;
  } finally {
    await src.close();
  }
}

describe.skipIf(!hasPodman)("podman and airlock archives", () => {
  it("podman load takes a docker-archive of three images airlock wrote, each under its tags", async () => {
    const path = join(dir, "three.tar");
    const images = { single: "localhost/app:1", docker: "localhost/app:2", "base-a": "quay.io/org/base:a" };
    for (const [name, tag] of Object.entries(images)) await copyImage(OciReference.parse(`${fixtures}:${name}`), DockerArchiveReference.parse(`${path}:${tag}`));
    const { stdout } = await podman("load", "-i", path);
    for (const tag of Object.values(images)) expect(stdout).toContain(`Loaded image: ${tag}`);
    const listed = JSON.parse((await podman("images", "--format", "json")).stdout) as { Id: string; Names: string[] }[];
    for (const [name, tag] of Object.entries(images)) {
      const want = (await configDigest(OciReference.parse(`${fixtures}:${name}`))).slice(7);
      expect(listed.find((i) => i.Names.includes(tag))?.Id).toBe(want);
    }
  });

  it("airlock reads podman save output: a multi-image docker-archive and an oci-archive", async () => {
    const multi = join(dir, "saved.tar");
    await podman("save", "--multi-image-archive", "-o", multi, "localhost/app:1", "quay.io/org/base:a");
    for (const [tag, name] of [
      ["localhost/app:1", "single"],
      ["quay.io/org/base:a", "base-a"],
    ] as const) {
      expect(await configDigest(DockerArchiveReference.parse(`${multi}:${tag}`))).toBe(await configDigest(OciReference.parse(`${fixtures}:${name}`)));
    }
    await expect(DockerArchiveReference.parse(multi).newSource()).rejects.toMatchObject({ code: "ERR_AMBIGUOUS_IMAGE" });
    const ociPath = join(dir, "saved-oci.tar");
    await podman("save", "--format", "oci-archive", "-o", ociPath, "localhost/app:2");
    // podman rewrites a Docker config as an OCI config there: compare the layers the config lists.
    const src = await OciArchiveReference.parse(ociPath).newSource();
    const m = await src.getManifest();
    const config = JSON.parse((await buffer((await src.getBlob(m.image.config)).stream)).toString()) as { rootfs: { diff_ids: string[] } };
    const fixture = JSON.parse(await fs.readFile(join(fixtures, "blobs/sha256", (await configDigest(OciReference.parse(`${fixtures}:docker`))).slice(7)), "utf8")) as typeof config;
    expect(config.rootfs.diff_ids).toEqual(fixture.rootfs.diff_ids);
    for (const l of m.image.layers) expect(digestOf(await buffer((await src.getBlob(l)).stream))).toBe(l.digest);
    await src.close();
  });
});
