/**
 * `airlock inspect` of a containers-storage image reports the manifest as stored, as
 * `skopeo inspect` does (while a copy uses the uncompressed layers the store holds), and manifest
 * lists in a store: podman's own (`podman manifest create/add`), and the list an image was pulled
 * through. podman and skopeo run rootful on a private store in a temporary directory, as in
 * containers-storage.test.ts. Skipped when podman or skopeo is missing or not root.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { copyImage, parseImageName } from "@airlock/core";
import "../../packages/core/src/transports/all.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { hasPodman } from "../support/tools.js";

const run = promisify(execFile);
const fixtures = fileURLToPath(new URL("../../fixtures/", import.meta.url));

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

/**
 * Checks the image manifest `desc` names in the OCI layout at `layout`: its digest and size, and
 * that every layer is gzip data as its media type says and decompresses to the config's diff ID. Returns the manifest.
 */
async function expectGzipImage(layout: string, desc: { digest: string; size: number }): Promise<{ config: unknown; layers: { mediaType: string; digest: string; size: number }[] }> {
  const blob = (d: string) => fs.readFile(join(layout, "blobs/sha256", d.slice(7)));
  const bytes = await blob(desc.digest);
  expect([sha256(bytes), bytes.length]).toEqual([desc.digest, desc.size]);
  const manifest = JSON.parse(bytes.toString()) as { config: { digest: string }; layers: { mediaType: string; digest: string; size: number }[] };
  const diffIDs = (JSON.parse((await blob(manifest.config.digest)).toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  expect(manifest.layers).toHaveLength(diffIDs.length);
  for (const [i, l] of manifest.layers.entries()) {
    const layer = await blob(l.digest);
    expect(l.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
    expect([sha256(layer), layer.length]).toEqual([l.digest, l.size]);
    expect(sha256(gunzipSync(layer))).toBe(diffIDs[i]);
  }
  return manifest;
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
    expect({ ...list, Name: undefined, Digest: undefined, LayersData: undefined }).toEqual({ ...single, Name: undefined, Digest: undefined });
    const arm = await runCli(["--override-arch", "arm64", "inspect", cs("localhost/partial:1")]);
    expect(arm.code).toBe(2);
    expect(arm.stderr).toContain(MULTI_ARM64);
  });

  it("the index an image was pulled through: copy --all … dir: gives skopeo's list and images byte for byte; … oci: names the recompressed image", async () => {
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
    // Into an OCI layout, as skopeo: the layers are compressed again (their media type says gzip), so the
    // image and the list get new digests, and the list names the image written; a warning says so.
    const oci = await runCli(["copy", "--all", ref, `oci:${join(dir, "one-oci")}:x`]);
    expect(oci.code).toBe(0);
    expect(oci.stderr).toMatch(/warning: .*manifest digest changed .*compressed with gzip/);
    expect(oci.stderr).toMatch(/warning: .*manifest digest changed .*its images were converted/);
    const index = JSON.parse(await fs.readFile(join(dir, "one-oci", "index.json"), "utf8")) as { manifests: { digest: string }[] };
    const written = JSON.parse(await skopeo("inspect", "--raw", `oci:${join(dir, "one-oci")}:x`)) as { manifests: { digest: string; size: number }[] };
    expect(index.manifests[0]?.digest).toBe(sha256(await skopeo("inspect", "--raw", `oci:${join(dir, "one-oci")}:x`)));
    expect(written.manifests.map((m) => ({ ...m, digest: "", size: 0 }))).toEqual(list.manifests.map((m) => ({ ...m, digest: "", size: 0 })));
    await expectGzipImage(join(dir, "one-oci"), written.manifests[0] as { digest: string; size: number });
    await skopeo("copy", "--all", `oci:${join(dir, "one-oci")}:x`, `oci:${join(dir, "one-oci-again")}:x`);
  });

  it("a podman manifest list whose images are in the store: copy --all writes the list and every image (gzip layers), each as skopeo copies it alone", async () => {
    const out = join(dir, "list-airlock");
    const r = await runCli(["copy", "-q", "--all", cs("localhost/list:1"), `oci:${out}:l`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const stored = JSON.parse(await skopeo("inspect", "--raw", cs("localhost/list:1"))) as { manifests: { digest: string; platform: unknown }[] };
    const written = JSON.parse(await skopeo("inspect", "--raw", `oci:${out}:l`)) as { manifests: { digest: string; size: number; platform: unknown }[] };
    expect(written.manifests.map((m) => m.platform)).toEqual(stored.manifests.map((m) => m.platform));
    // skopeo 1.9.3 looks a list's images up in the list image only, so it cannot copy podman's lists: each image alone is the reference
    // (the same config and layer media types; skopeo's gzip bytes are Go's), and the list names the manifests written, whose layers are gzip.
    for (const [i, name] of ["localhost/single:1", "localhost/base-a:1"].entries()) {
      const alone = `oci:${join(dir, `alone-${i}`)}:x`;
      await skopeo("copy", cs(name), alone);
      const theirs = JSON.parse(await skopeo("inspect", "--raw", alone)) as { config: unknown; layers: { mediaType: string }[] };
      const ours = await expectGzipImage(out, written.manifests[i] as { digest: string; size: number });
      expect(ours.config).toEqual(theirs.config);
      expect(ours.layers.map((l) => l.mediaType)).toEqual(theirs.layers.map((l) => l.mediaType));
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
