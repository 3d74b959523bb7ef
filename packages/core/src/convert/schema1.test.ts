/**
 * Docker schema 1 images, hand-built (unsigned, and signed with a real libtrust-style JWS), read
 * and copied the way skopeo does: the same digest, the same `inspect`, kept byte for byte where the
 * destination stores schema 1, and converted — to the same bytes skopeo writes — where it does not.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../../../../test/harness/registry.js";
import { runCli } from "../../../../test/support/cli.js";
import { makeSchema1Image, type Schema1Image, writeSchema1Dir } from "../../../../test/support/schema1-image.js";
import { exportBundle } from "../bundle/export.js";
import { copyImage } from "../copy/copy.js";
import { digestOf } from "../digest.js";
import { Manifest } from "../manifest.js";
import { manifestDigest } from "../manifest-schema1.js";
import { MediaType } from "../mediatype.js";
import type { ProgressEvent } from "../progress.js";
import { parseImageName } from "../transports/index.js";
import "../transports/all.js";
import type { ConversionOptions } from "./convert.js";

const run = promisify(execFile);
const skopeo = async (...args: string[]) => (await run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 })).stdout;

let dir: string;
let signed: Schema1Image;
let unsigned: Schema1Image;
beforeAll(async () => {
  signed = await makeSchema1Image({ signed: true });
  unsigned = await makeSchema1Image({ seed: "two" });
});
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-schema1-"));
  await writeSchema1Dir(join(dir, "signed"), signed);
  await writeSchema1Dir(join(dir, "unsigned"), unsigned);
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function copy(src: string, dst: string, convert: ConversionOptions = {}, extra: Parameters<typeof copyImage>[2] = {}) {
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

describe("schema 1: reading", () => {
  it("a signed manifest's digest is its JWS payload's, as skopeo and the registry compute it", async () => {
    const m = Manifest.parse(signed.manifest);
    expect(m.mediaType).toBe(MediaType.DockerSchema1Signed);
    expect(m.digest).toBe(signed.digest);
    expect(m.digest).not.toBe(digestOf(signed.manifest));
    expect(m.digest).toBe((await skopeo("manifest-digest", join(dir, "signed", "manifest.json"))).trim());
    expect((await runCli(["manifest-digest", join(dir, "signed", "manifest.json")])).stdout.trim()).toBe(m.digest);
    // Checked against that digest when read by digest; the raw bytes' digest is not it.
    expect(() => Manifest.parse(signed.manifest, { expected: digestOf(signed.manifest) })).toThrow(/expected/);
    expect(Manifest.parse(signed.manifest, { expected: m.digest }).bytes).toBe(signed.manifest);
  });

  it("an unsigned manifest's digest is its bytes'; the layers are listed base first, without config", () => {
    const m = Manifest.parse(unsigned.manifest);
    expect(m.mediaType).toBe(MediaType.DockerSchema1);
    expect(m.digest).toBe(digestOf(unsigned.manifest));
    expect(m.isSchema1).toBe(true);
    expect(m.blobs().map((b) => b.digest)).toEqual(unsigned.blobs.map((b) => b.digest));
    expect(() => m.image).toThrow(/schema 1.*--format v2s2/);
    expect(manifestDigest(unsigned.manifest)).toBe(m.digest);
  });

  it("drops a history entry that repeats the next one's ID and refuses a broken parent chain", () => {
    const json = JSON.parse(unsigned.payload.toString()) as { fsLayers: unknown[]; history: { v1Compatibility: string }[] };
    const dup = { ...json, fsLayers: [json.fsLayers[0], ...json.fsLayers], history: [json.history[0], ...json.history] };
    expect(Manifest.parse(Buffer.from(JSON.stringify(dup))).schema1.fsLayers).toHaveLength(3);
    const v1 = JSON.parse(json.history[1]?.v1Compatibility ?? "{}") as Record<string, unknown>;
    const broken = { ...json, history: [json.history[0], { v1Compatibility: JSON.stringify({ ...v1, parent: "f".repeat(64) }) }, json.history[2]] };
    expect(() => Manifest.parse(Buffer.from(JSON.stringify(broken)))).toThrow(/invalid parent ID/);
    expect(() => Manifest.parse(Buffer.from(JSON.stringify({ ...json, fsLayers: [] })))).toThrow(/fsLayers but 3 history/);
  });

  it.each(["signed", "unsigned"])("airlock inspect prints what skopeo inspect prints (%s), and --config too", async (name) => {
    const ref = `dir:${join(dir, name)}`;
    for (const flags of [[], ["--config"]]) {
      const mine = await runCli(["inspect", ...flags, ref]);
      expect(mine.stderr).toBe("");
      const out = JSON.parse(mine.stdout) as Record<string, unknown>;
      if (flags.length === 0) {
        // LayersData is newer than skopeo 1.9 (containers/image gives schema 1 layers no media type or size).
        expect(out.LayersData).toEqual((name === "signed" ? signed : unsigned).blobs.map((b) => ({ MIMEType: "", Digest: b.digest, Size: -1, Annotations: null })));
        delete out.LayersData;
      }
      expect(out).toEqual(JSON.parse(await skopeo("inspect", ...flags, ref)));
    }
    expect((await runCli(["inspect", "--raw", ref])).stdout).toBe((name === "signed" ? signed : unsigned).manifest.toString());
  });
});

describe("schema 1: copying", () => {
  it("into dir: it is kept byte for byte, with its digest", async () => {
    const r = await copy(`dir:${join(dir, "signed")}`, `dir:${join(dir, "out")}`);
    expect(r.digest).toBe(signed.digest);
    expect(r.mediaType).toBe(MediaType.DockerSchema1Signed);
    expect(r.warnings).toEqual([]);
    expect(await fs.readFile(join(dir, "out", "manifest.json"))).toEqual(signed.manifest);
    expect(JSON.parse(await skopeo("inspect", `dir:${join(dir, "out")}`)).Digest).toBe(signed.digest);
  });

  it.each([
    ["into an OCI layout (which cannot hold schema 1)", "oci", {}, ""],
    ["with --format v2s2", "dir", { format: "v2s2" }, "v2s2"],
    ["with --format oci", "dir", { format: "oci" }, "oci"],
  ] as const)("%s it is converted to the bytes skopeo writes", async (_label, transport, options, format) => {
    for (const [name, image] of [
      ["signed", signed],
      ["unsigned", unsigned],
    ] as const) {
      const src = `dir:${join(dir, name)}`;
      const mine = transport === "oci" ? `oci:${join(dir, `mine-${name}`)}:x` : `dir:${join(dir, `mine-${name}`)}`;
      const theirs = join(dir, `skopeo-${name}`);
      const r = await copy(src, mine, options);
      await skopeo("copy", ...(format ? ["--format", format] : ["--format", "oci"]), src, `dir:${theirs}`);
      const expected = await fs.readFile(join(theirs, "manifest.json"));
      expect(r.digest).toBe(digestOf(expected));
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]).toContain(`from ${image.digest} to ${r.digest}`);
      expect(r.warnings[0]).toContain("1 empty layer(s) dropped");
      const m = Manifest.parse(expected);
      // The config skopeo built from the history, with the diffIDs of the decompressed layers.
      const configHex = m.image.config.digest.slice("sha256:".length);
      const layout = transport === "oci" ? join(dir, `mine-${name}`, "blobs", "sha256") : join(dir, `mine-${name}`);
      expect(await fs.readFile(join(layout, configHex))).toEqual(await fs.readFile(join(theirs, configHex)));
      const config = JSON.parse(await fs.readFile(join(theirs, configHex), "utf8")) as { rootfs: { diff_ids: string[] } };
      expect(config.rootfs.diff_ids).toEqual(image.layers.map((l) => l.diffID));
      expect(m.image.layers.map((l) => l.digest)).toEqual(image.layers.map((l) => l.digest));
      // skopeo reads what airlock wrote.
      expect(JSON.parse(await skopeo("inspect", mine)).Digest).toBe(r.digest);
    }
  });

  it("an OCI layout converted from schema 1 passes umoci's checks", async () => {
    await copy(`dir:${join(dir, "signed")}`, `oci:${join(dir, "layout")}:x`);
    await run("umoci", ["unpack", "--rootless", "--image", `${join(dir, "layout")}:x`, join(dir, "bundle")]);
    expect(await fs.readFile(join(dir, "bundle", "rootfs", "etc", "motd"), "utf8")).toBe("welcome one\n");
    expect(await fs.readFile(join(dir, "bundle", "rootfs", "hello.txt"), "utf8")).toBe("hello one\n");
  });

  it("--preserve-digests refuses a conversion before anything is written", async () => {
    await expect(copy(`dir:${join(dir, "signed")}`, `oci:${join(dir, "layout")}:x`, {}, { preserveDigests: true })).rejects.toThrow(/schema 1 manifest to application\/vnd.oci.image.manifest.v1\+json.*Instructed to preserve digests/);
    await expect(fs.access(join(dir, "layout", "index.json"))).rejects.toThrow();
  });

  it("into a docker-archive it is converted with uncompressed layers, the config the one skopeo builds", async () => {
    const mine = `docker-archive:${join(dir, "mine.tar")}:s1:latest`;
    const theirs = `docker-archive:${join(dir, "theirs.tar")}:s1:latest`;
    const r = await copy(`dir:${join(dir, "signed")}`, mine);
    await skopeo("copy", `dir:${join(dir, "signed")}`, theirs);
    expect(r.warnings[0]).toContain(`from ${signed.digest} to ${r.digest}`);
    expect(await skopeo("inspect", "--config", "--raw", mine)).toBe(await skopeo("inspect", "--config", "--raw", theirs));
    const inspected = JSON.parse(await skopeo("inspect", mine)) as { Layers: string[] };
    expect(inspected.Layers).toEqual(signed.layers.map((l) => l.diffID));
    // skopeo labels the uncompressed layers it reads from an archive …tar.gzip (containers/image#1270).
    const raw = await skopeo("inspect", "--raw", mine);
    expect(digestOf(raw.replaceAll("rootfs.diff.tar.gzip", "rootfs.diff.tar"))).toBe(r.digest);
  });

  it("a bundle export refuses it before writing anything, saying how to convert it", async () => {
    const out = join(dir, "bundle.tar");
    await expect(exportBundle([{ source: parseImageName(`dir:${join(dir, "signed")}`), name: "example.com/s1:latest" }], out)).rejects.toThrow(/schema 1 manifest, which a bundle .* cannot hold.*--format oci/);
    await expect(fs.access(out)).rejects.toThrow();
  });

  it("recompressing a schema 1 image's layers is refused with a way round", async () => {
    await expect(copy(`dir:${join(dir, "signed")}`, `oci:${join(dir, "layout")}:x`, { compressFormat: "zstd" })).rejects.toThrow(/schema 1.*--format v2s2/);
    await expect(copy(`dir:${join(dir, "signed")}`, `dir:${join(dir, "out")}`, { decompress: true })).rejects.toThrow(/--dest-decompress.*--format v2s2/);
  });
});

describe("schema 1: a registry", () => {
  let registry: RunningRegistry;
  let plain: RunningRegistry;
  beforeAll(async () => {
    [registry, plain] = await Promise.all([startRegistry({ mode: "plain", schema1: true }), startRegistry({ mode: "plain" })]);
  });
  afterAll(async () => {
    await registry?.stop();
    await plain?.stop();
  });

  it("is pushed as it is, read back, inspected as skopeo does, and converted on the way out", async () => {
    const ref = `docker://${registry.host}/library/s1:latest`;
    const r = await copy(`dir:${join(dir, "signed")}`, ref);
    expect(r.digest).toBe(signed.digest);
    expect(r.warnings).toEqual([]);
    // The registry keeps the payload and signs it again with its own key: the same digest.
    const raw = Buffer.from(await skopeo("inspect", "--raw", "--tls-verify=false", ref));
    expect(Manifest.parse(raw).digest).toBe(signed.digest);
    expect(raw.subarray(0, 200)).toEqual(signed.manifest.subarray(0, 200));
    const mine = JSON.parse((await runCli(["inspect", "--tls-verify=false", ref])).stdout) as Record<string, unknown>;
    delete mine.LayersData;
    expect(mine).toEqual(JSON.parse(await skopeo("inspect", "--tls-verify=false", ref)));
    // Out of the registry into an OCI layout: every layer streamed, decompressed for its diffID.
    const out = await copy(ref, `oci:${join(dir, "layout")}:x`);
    await skopeo("copy", "--src-tls-verify=false", ref, `oci:${join(dir, "theirs")}:x`);
    const index = JSON.parse(await fs.readFile(join(dir, "theirs", "index.json"), "utf8")) as { manifests: { digest: string }[] };
    expect(out.digest).toBe(index.manifests[0]?.digest);
    expect(out.blobsCopied).toBe(3);
  });

  it("a registry that refuses schema 1 pushes gets an error that says what to do", async () => {
    await expect(copy(`dir:${join(dir, "unsigned")}`, `docker://${plain.host}/library/s1:latest`)).rejects.toThrow(/refused the Docker schema 1 manifest.*--format v2s2/);
    const r = await copy(`dir:${join(dir, "unsigned")}`, `docker://${plain.host}/library/s1:latest`, { format: "v2s2" });
    expect(r.mediaType).toBe(MediaType.DockerManifest);
    expect(JSON.parse(await skopeo("inspect", "--tls-verify=false", `docker://${plain.host}/library/s1:latest`)).Digest).toBe(r.digest);
  });
});
