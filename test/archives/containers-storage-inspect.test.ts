/**
 * `airlock inspect` of a containers-storage image reports the manifest as stored, as
 * `skopeo inspect` does (while a copy uses the uncompressed layers the store holds), and manifest
 * lists in a store: podman's own (`podman manifest create/add`), and the list an image was pulled
 * through. podman and skopeo run rootful on a private store in a temporary directory, as in
 * containers-storage.test.ts. Skipped when podman or skopeo is missing or not root.
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
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

/** The fixture index `multi` (linux/amd64 and linux/arm64/v8) and its images. */
const MULTI = "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01";
const MULTI_AMD64 = "sha256:0370dffc4771583cd14b72ad1516a0fcaaeba1f57f060275826459e73f6ffe3a";
const MULTI_ARM64 = "sha256:0ab3a8db7abd02adb7b7609a37b8b35deb2c03d2e6a4f3b731d793fb8405533a";

let dir: string;
const stores: Record<"vfs" | "overlay", { root: string; runroot: string }> = {} as never;
const podman = (driver: "vfs" | "overlay", ...args: string[]) =>
  run("podman", ["--storage-driver", driver, "--root", stores[driver].root, "--runroot", stores[driver].runroot, "--events-backend", "file", ...args], { maxBuffer: 16 << 20 });
const skopeo = async (...args: string[]) => (await run("skopeo", args, { maxBuffer: 16 << 20 })).stdout;
/** skopeo's exit status and stderr (it is expected to fail). */
const skopeoFails = (...args: string[]) => run("skopeo", args).then(() => ({ failed: false, stderr: "" }), (err: { stderr: string }) => ({ failed: true, stderr: err.stderr }));
const cs = (name: string, driver: "vfs" | "overlay" = "vfs") => `containers-storage:[${driver}@${stores[driver].root}+${stores[driver].runroot}]${name}`;
const sha256 = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** An OCI layout holding an index of the `multi` fixture's amd64 image alone, named `one`; returns the index's digest. */
async function oneImageIndex(path: string): Promise<string> {
  await fs.cp(join(fixtures, "oci"), path, { recursive: true });
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: MULTI_AMD64, size: 401, platform: { architecture: "amd64", os: "linux" } }],
    }),
  );
  const digest = sha256(index);
  await fs.writeFile(join(path, "blobs/sha256", digest.slice(7)), index);
  const top = { schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.index.v1+json", digest, size: index.length, annotations: { "org.opencontainers.image.ref.name": "one" } }] };
  await fs.writeFile(join(path, "index.json"), JSON.stringify(top));
  return digest;
}

/** Every file of a `dir:` image, by name → content digest. */
async function dirFiles(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await fs.readdir(path)).sort()) out[f] = sha256(await fs.readFile(join(path, f)));
  return out;
}

let oneIndex: string;

beforeAll(async () => {
  if (!hasPodman) return;
  dir = join(tmpdir(), `airlock-csi-${randomBytes(6).toString("hex")}`);
  await fs.mkdir(dir);
  for (const driver of ["vfs", "overlay"] as const) stores[driver] = { root: join(dir, driver, "root"), runroot: join(dir, driver, "run") };
  // podman pulls images with gzip layers (the store keeps them uncompressed) and a Docker v2s2 image.
  await podman("vfs", "tag", (await podman("vfs", "pull", "-q", `oci:${fixtures}oci:single`)).stdout.trim(), "localhost/single:1");
  await podman("vfs", "tag", (await podman("vfs", "pull", "-q", `oci:${fixtures}oci:base-a`)).stdout.trim(), "localhost/base-a:1");
  await podman("vfs", "tag", (await podman("vfs", "pull", "-q", `dir:${fixtures}dir/docker`)).stdout.trim(), "localhost/docker:1");
  // Pulled through an index: the image keeps the index as manifest-<index digest> (arm64 is not pulled).
  await podman("vfs", "tag", (await podman("vfs", "pull", "-q", `oci:${fixtures}oci:multi`)).stdout.trim(), "localhost/multi:1");
  oneIndex = await oneImageIndex(join(dir, "one-layout"));
  await podman("vfs", "tag", (await podman("vfs", "pull", "-q", `oci:${join(dir, "one-layout")}:one`)).stdout.trim(), "localhost/one:1");
  // airlock writes an image.
  await copyImage(parseImageName(`oci:${fixtures}oci:base-b`), parseImageName(cs("localhost/written:1")));
  // podman's manifest lists: one whose images are all in the store, one naming an image that is not.
  await podman("vfs", "manifest", "create", "localhost/list:1");
  await podman("vfs", "manifest", "add", "localhost/list:1", cs("localhost/single:1"));
  await podman("vfs", "manifest", "add", "localhost/list:1", cs("localhost/base-a:1"));
  await podman("vfs", "manifest", "create", "localhost/partial:1");
  await podman("vfs", "manifest", "add", "--all", "localhost/partial:1", `oci:${fixtures}oci:multi`);
  try {
    await podman("overlay", "tag", (await podman("overlay", "pull", "-q", `oci:${fixtures}oci:single`)).stdout.trim(), "localhost/single:1");
  } finally {
    await run("umount", [join(stores.overlay.root, "overlay")]).catch(() => {});
  }
});

afterAll(async () => {
  if (!dir) return;
  for (const driver of ["vfs", "overlay"] as const) await podman(driver, "system", "reset", "--force").catch(() => {});
  await run("umount", [join(stores.overlay.root, "overlay")]).catch(() => {});
  await fs.rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasPodman)("containers-storage: inspect reports the stored manifest, as skopeo inspect", () => {
  const cases: [string, string, "vfs" | "overlay"][] = [
    ["pulled by podman (gzip layers)", "localhost/single:1", "vfs"],
    ["pulled by podman (gzip layers), overlay", "localhost/single:1", "overlay"],
    ["pulled by podman (Docker v2s2)", "localhost/docker:1", "vfs"],
    ["written by airlock", "localhost/written:1", "vfs"],
    ["by the digest of the index it was pulled through", `localhost/multi@${MULTI}`, "vfs"],
  ];
  it.each(cases)("%s: inspect, --raw, --config and manifest-digest equal skopeo's (%s)", async (_what, name, driver) => {
    const ref = cs(name, driver);
    const raw = await skopeo("inspect", "--raw", ref);
    const ours = await runCli(["inspect", "--raw", ref]);
    expect(ours.code).toBe(0);
    expect(ours.stdout).toBe(raw);
    const inspected = JSON.parse((await runCli(["inspect", ref])).stdout) as Record<string, unknown> & { LayersData: { MIMEType: string; Digest: string; Size: number }[] };
    const theirs = JSON.parse(await skopeo("inspect", ref)) as Record<string, unknown>;
    // skopeo 1.9.3 predates LayersData: it must describe the stored manifest's layers (the image chosen from an index).
    const stored = JSON.parse(raw) as { layers?: { mediaType: string; digest: string; size: number }[] };
    const image = stored.layers ? stored : (JSON.parse(await skopeo("inspect", "--raw", cs(`${name.split("@")[0]}@${MULTI_AMD64}`, driver))) as typeof stored);
    expect(inspected.LayersData.map((l) => [l.MIMEType, l.Digest, l.Size])).toEqual(image.layers?.map((l) => [l.mediaType, l.digest, l.size]));
    delete (inspected as Partial<typeof inspected>).LayersData;
    // skopeo prints Tag only from a schema 1 manifest; airlock's inspect prints the reference's tag (for every transport).
    delete inspected.Tag;
    expect(inspected).toEqual(theirs);
    expect(inspected.Digest).toBe(sha256(raw));
    expect((await runCli(["inspect", "--config", ref])).stdout).toBe(await skopeo("inspect", "--config", ref));
    const file = join(dir, `raw-${randomBytes(4).toString("hex")}.json`);
    await fs.writeFile(file, ours.stdout);
    expect((await runCli(["manifest-digest", file])).stdout.trim()).toBe((await skopeo("manifest-digest", file)).trim());
  });

  it("a copy still writes the uncompressed layers, as skopeo copy … dir: does (so its digest is not the inspected one)", async () => {
    const ref = cs("localhost/single:1");
    await skopeo("copy", ref, `dir:${join(dir, "copy-skopeo")}`);
    const r = await copyImage(parseImageName(ref), parseImageName(`dir:${join(dir, "copy-airlock")}`));
    expect(await dirFiles(join(dir, "copy-airlock"))).toEqual(await dirFiles(join(dir, "copy-skopeo")));
    expect(r.digest).not.toBe(JSON.parse((await runCli(["inspect", ref])).stdout).Digest);
  });
});

describe.skipIf(!hasPodman)("containers-storage: manifest lists", () => {
  it("a podman manifest list: inspect --raw prints the stored list, as skopeo; inspect describes this platform's image, found in the store", async () => {
    for (const name of ["localhost/list:1", "localhost/partial:1"]) {
      const ours = await runCli(["inspect", "--raw", cs(name)]);
      expect(ours.code).toBe(0);
      expect(ours.stdout).toBe(await skopeo("inspect", "--raw", cs(name)));
    }
    // skopeo 1.9.3 cannot inspect these (it looks for the images in the list image only); airlock finds the first amd64 one: single.
    const list = JSON.parse((await runCli(["inspect", cs("localhost/list:1")])).stdout) as Record<string, unknown>;
    const single = JSON.parse(await skopeo("inspect", cs("localhost/single:1"))) as Record<string, unknown>;
    expect(list.Digest).toBe(sha256(await skopeo("inspect", "--raw", cs("localhost/list:1"))));
    expect({ ...list, Name: undefined, Tag: undefined, Digest: undefined, LayersData: undefined }).toEqual({ ...single, Name: undefined, Digest: undefined });
    const arm = await runCli(["--override-arch", "arm64", "inspect", cs("localhost/partial:1")]);
    expect(arm.code).toBe(2);
    expect(arm.stderr).toContain(MULTI_ARM64);
  });

  it("the index an image was pulled through: copy --all gives skopeo's list and images byte for byte", async () => {
    const ref = cs(`localhost/one@${oneIndex}`);
    // skopeo writes a dir: as it reads (an oci: layout gets layers it compresses again, with Go's gzip).
    await skopeo("copy", "--all", ref, `dir:${join(dir, "one-skopeo")}`);
    const r = await runCli(["copy", "-q", "--all", ref, `dir:${join(dir, "one-airlock")}`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const theirs = await dirFiles(join(dir, "one-skopeo"));
    expect(await dirFiles(join(dir, "one-airlock"))).toEqual(theirs);
    // The image was copied with its uncompressed layers, so the list names another digest than the stored one.
    const list = JSON.parse(await fs.readFile(join(dir, "one-skopeo", "manifest.json"), "utf8")) as { manifests: { digest: string }[] };
    expect(list.manifests[0]?.digest).not.toBe(MULTI_AMD64);
    // Into an OCI layout: the same index and image digests.
    expect((await runCli(["copy", "-q", "--all", ref, `oci:${join(dir, "one-oci")}:x`])).code).toBe(0);
    const index = JSON.parse(await fs.readFile(join(dir, "one-oci", "index.json"), "utf8")) as { manifests: { digest: string }[] };
    expect(index.manifests[0]?.digest).toBe(theirs["manifest.json"]);
    expect(JSON.parse(await skopeo("inspect", "--raw", `oci:${join(dir, "one-oci")}:x`))).toEqual(list);
  });

  it("a podman manifest list whose images are in the store: copy --all writes the list and every image, each as skopeo copies it alone", async () => {
    const out = join(dir, "list-airlock");
    const r = await runCli(["copy", "-q", "--all", cs("localhost/list:1"), `oci:${out}:l`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const stored = JSON.parse(await skopeo("inspect", "--raw", cs("localhost/list:1"))) as { manifests: { digest: string; platform: unknown }[] };
    const written = JSON.parse(await skopeo("inspect", "--raw", `oci:${out}:l`)) as { manifests: { digest: string; size: number; platform: unknown }[] };
    expect(written.manifests.map((m) => m.platform)).toEqual(stored.manifests.map((m) => m.platform));
    // skopeo 1.9.3 looks a list's images up in the list image only, so it cannot copy podman's lists: each image alone is the reference.
    for (const [i, name] of ["localhost/single:1", "localhost/base-a:1"].entries()) {
      const alone = join(dir, `alone-${i}`);
      await skopeo("copy", cs(name), `dir:${alone}`);
      const m = await fs.readFile(join(alone, "manifest.json"));
      expect(written.manifests[i]).toMatchObject({ digest: sha256(m), size: m.length });
    }
    // What airlock wrote is a valid layout for skopeo: it copies the whole index again.
    await skopeo("copy", "--all", `oci:${out}:l`, `oci:${join(dir, "list-again")}:l`);
    // Without --all, the image for this platform (the first amd64 entry) is copied.
    const single = await runCli(["copy", "-q", cs("localhost/list:1"), `oci:${join(dir, "list-system")}:l`]);
    expect(single.code).toBe(0);
    expect(JSON.parse(await skopeo("inspect", "--raw", `oci:${join(dir, "list-system")}:l`))).toMatchObject({ layers: expect.any(Array) });
    expect(sha256(await skopeo("inspect", "--raw", `oci:${join(dir, "list-system")}:l`))).toBe(written.manifests[0]?.digest);
  });

  it("an image the list names that the store lacks: copy --all fails naming its digest (skopeo fails too); one platform that is present copies", async () => {
    for (const [ref, absent] of [
      [cs(`localhost/multi@${MULTI}`), MULTI_ARM64],
      [cs("localhost/partial:1"), MULTI_ARM64],
    ] as const) {
      const r = await runCli(["copy", "-q", "--all", ref, `oci:${join(dir, `absent-${randomBytes(4).toString("hex")}`)}:x`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(absent);
      expect(r.stderr).toMatch(/not in the store.*without --all/);
      const theirs = await skopeoFails("copy", "--all", ref, `oci:${join(dir, `absent-skopeo-${randomBytes(4).toString("hex")}`)}:x`);
      expect(theirs.failed).toBe(true);
      // skopeo 1.9.3 looks in the list image only: for podman's list it already fails on the amd64 image (which airlock finds).
      expect(theirs.stderr).toContain(`manifest-${ref.includes("partial") ? MULTI_AMD64 : absent}`);
    }
    // The pulled platform of multi copies without --all, as skopeo copies it.
    const ref = cs(`localhost/multi@${MULTI}`);
    await skopeo("copy", ref, `dir:${join(dir, "multi-skopeo")}`);
    expect((await runCli(["copy", "-q", ref, `dir:${join(dir, "multi-airlock")}`])).code).toBe(0);
    expect(await dirFiles(join(dir, "multi-airlock"))).toEqual(await dirFiles(join(dir, "multi-skopeo")));
    // The arm64 image is not there: choosing it fails the same way.
    const arm = await runCli(["--override-arch", "arm64", "copy", "-q", ref, `oci:${join(dir, "multi-arm")}:x`]);
    expect(arm.code).toBe(2);
    expect(arm.stderr).toContain(MULTI_ARM64);
  });

  it("writing an index into the store is refused (as skopeo 1.9 refuses it), and the store is left as it was", async () => {
    const images = await fs.readFile(join(stores.vfs.root, "vfs-images", "images.json"), "utf8");
    const r = await runCli(["copy", "--all", `oci:${fixtures}oci:multi`, cs("localhost/multi-written:1")]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot store a multi-arch index; copy one platform/);
    expect((await skopeoFails("copy", "--all", `oci:${fixtures}oci:multi`, cs("localhost/multi-written:1"))).stderr).toContain("does not support copying multiple images");
    expect(await fs.readFile(join(stores.vfs.root, "vfs-images", "images.json"), "utf8")).toBe(images);
  });
});
