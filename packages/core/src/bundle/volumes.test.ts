/**
 * Split bundles: volumes cut at entry boundaries (an oversize blob continues in continuation
 * volumes), concatenation to one valid tar, and every fault named precisely: a missing volume, a
 * damaged one, a flipped blob byte, a truncated volume, a volume checked alone.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeImage, makeIndex, MemoryStore } from "../../../../test/support/memory-transport.js";
import { type Digest, digestOf } from "../digest.js";
import { type ExportResult, exportBundle } from "./export.js";
import { type BundleMetadata, checksumFileName, volumeFileName } from "./format.js";
import { importBundle } from "./import.js";
import { BundleReader } from "./reader.js";
import { decodeHeader, encodeHeader } from "./tar.js";
import { verifyBundle } from "./verify.js";

const SPLIT = 64 * 1024;
const tmp = mkdtempSync(join(tmpdir(), "airlock-volumes-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Deterministic content that does not compress: each layer is its own sha256 stream.
function bytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; i++) off += digestOf(`${seed}/${i}`).slice(7).length / 2 && Buffer.from(digestOf(`${seed}/${i}`).slice(7), "hex").copy(out, off);
  return out;
}

const store = new MemoryStore();
const big = bytes("big", 200_000);
const imgA = makeImage(store, { layers: [bytes("base", 30_000), bytes("a", 20_000)], arch: "amd64" });
const imgB = makeImage(store, { layers: [bytes("base", 30_000), bytes("b", 45_000)], arch: "arm64" });
makeIndex(store, [{ manifest: imgA, arch: "amd64" }, { manifest: imgB, arch: "arm64" }], "multi");
makeImage(store, { layers: [big, bytes("after-big", 5_000)], name: "big" });
makeImage(store, { layers: Array.from({ length: 12 }, (_, i) => bytes(`small${i}`, 3_000 + i * 500)), name: "many" });
const NAMES = ["multi", "big", "many"];

const bundleName = (n: string) => `volumes.example/${n}:v1`;

const dir = join(tmp, "original");
const out = join(dir, "bundle.tar");
let result: ExportResult;

beforeAll(async () => {
  mkdirSync(dir);
  result = await exportBundle(
    NAMES.map((n) => ({ source: store.wholeBlobsRef(n), name: bundleName(n) })),
    out,
    { splitSize: SPLIT },
  );
});

/** A copy of the bundle's files in a fresh directory, to damage. */
function copyBundle(): string {
  const d = mkdtempSync(join(tmp, "copy-"));
  for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(d, f));
  return join(d, "bundle.tar");
}

/** The volume holding the header of blob `digest`, from bundle.json. */
function volumeOf(digest: Digest): number {
  const meta = JSON.parse(execFileSync("tar", ["-xOf", "-", "airlock/bundle.json"], { input: concat(out) }).toString()) as BundleMetadata;
  const b = [...meta.blobs, ...meta.manifests].find((x) => x.digest === digest);
  if (!b) throw new Error(`${digest} not in bundle.json`);
  return b.volume;
}

function concat(base: string): Buffer {
  return Buffer.concat(result.volumes.map((v) => readFileSync(volumeFileName(base, v.volume))));
}

describe("split export", () => {
  it("writes numbered volumes no larger than the split size, each self-describing", async () => {
    expect(result.volumes.length).toBeGreaterThan(6);
    expect(result.volumes.map((v) => basename(v.path))).toEqual(result.volumes.map((_, i) => `bundle.tar.${String(i).padStart(3, "0")}`));
    expect(existsSync(out)).toBe(false);
    const continuations: number[] = [];
    for (const v of result.volumes) {
      const data = readFileSync(v.path);
      expect(data.length).toBe(v.size);
      expect(data.length).toBeLessThanOrEqual(SPLIT);
      let first = { path: "", size: 0 };
      try {
        first = decodeHeader(data.subarray(0, 512));
      } catch {
        // A continuation volume starts with blob data, not a header.
      }
      if (first.path === `airlock/volume-${String(v.volume).padStart(3, "0")}.json`) {
        const desc = JSON.parse(data.subarray(512, 512 + first.size).toString("utf8"));
        expect(desc).toMatchObject({ bundle: result.bundle, volume: v.volume, count: result.volumes.length, size: v.size });
        continuations.push(...(desc.continuedIn ?? []));
      } else {
        expect(continuations).toContain(v.volume);
      }
    }
    // The 200 kB layer needs three continuation volumes after the one it starts in.
    expect(continuations).toHaveLength(3);
    expect(execFileSync("sha256sum", ["-c", checksumFileName(out)], { cwd: dir, encoding: "utf8" }).match(/: OK/g)).toHaveLength(result.volumes.length);
  });

  it("records every volume's checksum in bundle.json except those it is written into", async () => {
    const meta = JSON.parse(execFileSync("tar", ["-xOf", "-", "airlock/bundle.json"], { input: concat(out) }).toString()) as BundleMetadata;
    expect(meta.volumes.map((v) => v.name)).toEqual(result.volumes.map((v) => basename(v.path)));
    expect(meta.volumes.slice(0, -1).map((v) => v.sha256)).toEqual(result.volumes.slice(0, -1).map((v) => v.sha256));
    expect(meta.volumes.at(-1)?.sha256).toBeNull();
  });

  it("concatenates to one valid tar that GNU tar lists and skopeo reads", async () => {
    const whole = join(tmp, "whole.tar");
    writeFileSync(whole, concat(out));
    const list = execFileSync("tar", ["-tf", whole], { encoding: "utf8" }).trim().split("\n");
    expect(list.filter((p) => p.startsWith("airlock/volume-"))).toHaveLength(result.volumes.length - 3);
    expect(list).toContain(`blobs/sha256/${digestOf(big).slice(7)}`);
    expect(execFileSync("tar", ["-xOf", whole, `blobs/sha256/${digestOf(big).slice(7)}`])).toEqual(big);
    const layout = join(tmp, "skopeo-layout");
    for (const n of NAMES) {
      execFileSync("skopeo", ["copy", "--all", "--preserve-digests", "-q", `oci-archive:${whole}:${bundleName(n)}`, `oci:${layout}:${n}`]);
      expect(digestOf(execFileSync("skopeo", ["inspect", "--raw", `oci:${layout}:${n}`]))).toBe(store.names.get(n));
    }
    // airlock reads the concatenation as a one-volume bundle too.
    expect((await verifyBundle(whole)).problems.filter((p) => p.severity === "error")).toEqual([]);
  });

  it("verifies clean and imports with every digest equal", async () => {
    const report = await verifyBundle(out);
    expect(report.problems).toEqual([]);
    expect(report.volumes.every((v) => v.ok && v.expected === v.sha256)).toBe(true);
    const dst = new MemoryStore();
    await importBundle(out, { destinationFor: (n) => dst.ref(n) });
    for (const n of NAMES) expect(dst.names.get(bundleName(n))).toBe(store.names.get(n));
    expect(dst.blobs.get(digestOf(big))).toEqual(big);
  });
});

describe("faults in a split bundle", () => {
  const errors = (r: Awaited<ReturnType<typeof verifyBundle>>) => r.problems.filter((p) => p.severity === "error");

  it("names a missing volume, the images it breaks, and import refuses it pushing nothing", async () => {
    const copy = copyBundle();
    const layer = digestOf(bytes("b", 45_000));
    const n = volumeOf(layer);
    rmSync(volumeFileName(copy, n));
    const report = await verifyBundle(copy);
    expect(report.ok).toBe(false);
    expect(errors(report).map((p) => [p.kind, p.volume])).toEqual([["volume-missing", n]]);
    expect(errors(report)[0]?.message).toContain(`volume ${n} (${volumeFileName(copy, n)}) is missing`);
    expect(report.images.find((i) => i.name === bundleName("multi"))?.ok).toBe(false);
    expect(report.images.find((i) => i.name === bundleName("big"))?.ok).toBe(true);
    const dst = new MemoryStore();
    await expect(importBundle(copy, { destinationFor: (x) => dst.ref(x) })).rejects.toThrow(new RegExp(`missing volume: ${n}\\b`));
    expect(dst.log).toEqual([]);
    // The images whose content is all there can still be imported on their own.
    const r = await importBundle(copy, { destinationFor: (x) => dst.ref(x), images: [bundleName("big")] });
    expect(r.images[0]?.digest).toBe(store.names.get("big"));
  });

  it("names a missing continuation volume and the blob it cuts", async () => {
    const copy = copyBundle();
    const start = volumeOf(digestOf(big));
    rmSync(volumeFileName(copy, start + 2));
    const report = await verifyBundle(copy);
    expect(errors(report).map((p) => [p.kind, p.volume])).toEqual([
      ["volume-missing", start + 2],
      ["entry-incomplete", start + 2],
    ]);
    expect(errors(report)[1]?.digest).toBe(digestOf(big));
    expect(report.images.find((i) => i.name === bundleName("big"))?.ok).toBe(false);
    expect(report.images.find((i) => i.name === bundleName("many"))?.ok).toBe(true);
  });

  it("names a volume whose checksum is wrong although every blob in it is intact", async () => {
    const copy = copyBundle();
    const layer = digestOf(bytes("small3", 4_500)); // 4500 bytes: 108 bytes of tar padding follow it
    const n = volumeOf(layer);
    const reader = await BundleReader.open(copy);
    const seg = reader.locateBlob({ digest: layer, size: 4_500 })[0];
    await reader.close();
    const file = volumeFileName(copy, n);
    const buf = readFileSync(file);
    buf[(seg?.start ?? 0) + 4_500 + 50] = 0x41;
    writeFileSync(file, buf);
    const report = await verifyBundle(copy);
    expect(errors(report).map((p) => [p.kind, p.volume])).toEqual([["volume-checksum", n]]);
    expect(errors(report)[0]?.message).toMatch(/blobs are intact/);
    expect(report.images.every((i) => i.ok)).toBe(true);
    // Import checks blobs, not padding: it goes through.
    const dst = new MemoryStore();
    await importBundle(copy, { destinationFor: (x) => dst.ref(x) });
    expect(dst.names.size).toBe(3);
  });

  it("names a flipped blob byte and its volume; import refuses before any manifest", async () => {
    const copy = copyBundle();
    const layer = digestOf(bytes("small7", 6_500));
    const n = volumeOf(layer);
    const reader = await BundleReader.open(copy);
    const seg = reader.locateBlob({ digest: layer, size: 6_500 })[0];
    await reader.close();
    const buf = readFileSync(seg?.path as string);
    buf[(seg?.start ?? 0) + 1234] ^= 0x01;
    writeFileSync(seg?.path as string, buf);
    const report = await verifyBundle(copy);
    expect(errors(report).map((p) => [p.kind, p.volume, p.digest ?? null])).toEqual([
      ["blob-digest", n, layer],
      ["volume-checksum", n, null],
    ]);
    expect(errors(report)[0]?.message).toContain(`blob ${layer} in volume ${n} (${volumeFileName(copy, n)}) is damaged`);
    expect(report.images.find((i) => i.name === bundleName("many"))?.ok).toBe(false);
    const dst = new MemoryStore();
    await expect(importBundle(copy, { destinationFor: (x) => dst.ref(x) })).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(dst.log.some((l) => l.startsWith("putManifest") || l === "commit")).toBe(false);
    expect(dst.blobs.has(layer)).toBe(false);
  });

  it("names a truncated volume", async () => {
    const copy = copyBundle();
    const n = volumeOf(digestOf(bytes("b", 45_000)));
    const file = volumeFileName(copy, n);
    truncateSync(file, readFileSync(file).length - 700);
    const report = await verifyBundle(copy);
    const kinds = errors(report).map((p) => [p.kind, p.volume]);
    expect(kinds).toContainEqual(["volume-truncated", n]);
    expect(kinds).toContainEqual(["volume-checksum", n]);
    const dst = new MemoryStore();
    await expect(importBundle(copy, { destinationFor: (x) => dst.ref(x) })).rejects.toThrow(/nothing was imported/);
    expect(dst.log).toEqual([]);
  });

  it("refuses a bundle whose last volume (with bundle.json) is missing", async () => {
    const copy = copyBundle();
    const last = result.volumes.length - 1;
    rmSync(volumeFileName(copy, last));
    const report = await verifyBundle(copy);
    expect(errors(report)[0]).toMatchObject({ kind: "volume-missing", volume: last });
    // Without bundle.json, what else the last volume held is named by the manifests that list it.
    for (const p of errors(report).slice(1)) {
      expect(p.kind).toBe("blob-missing");
      expect(p.message).toContain(`it may be in missing volume ${last}`);
    }
    const dst = new MemoryStore();
    await expect(importBundle(copy, { destinationFor: (x) => dst.ref(x) })).rejects.toThrow(/no airlock\/bundle.json/);
    expect(dst.log).toEqual([]);
  });

  it("checks one volume alone against its description and the sidecar", async () => {
    const n = volumeOf(digestOf(bytes("small5", 5_500)));
    const report = await verifyBundle([volumeFileName(out, n)]);
    const checked = report.volumes.find((v) => v.volume === n);
    expect(checked).toMatchObject({ present: true, ok: true, sha256: result.volumes[n]?.sha256 });
    // Only absences are reported: everything the volume holds is intact.
    expect(new Set(errors(report).map((p) => p.kind))).toEqual(new Set(["volume-missing"]));
    expect(errors(report).map((p) => p.volume)).not.toContain(n);
    expect(report.volumes.filter((v) => v.present)).toHaveLength(1);
  });
});

describe("a split bundle altered after export", () => {
  const errors = (r: Awaited<ReturnType<typeof verifyBundle>>) => r.problems.filter((p) => p.severity === "error");

  /** Appends a regular file entry to the tar `file` (whose last entry is followed by the end-of-archive marker only). */
  async function append(file: string, path: string, data: Buffer): Promise<void> {
    const buf = readFileSync(file);
    const end = buf.length - 2 * 512;
    expect(buf.subarray(end).every((b) => b === 0)).toBe(true);
    const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
    writeFileSync(file, Buffer.concat([buf.subarray(0, end), encodeHeader({ path, size: data.length, mtime: 0 }), data, pad, Buffer.alloc(1024)]));
  }

  it("a blob of an earlier volume appended again to the last: both places named, import refuses pushing nothing", async () => {
    const copy = copyBundle();
    const layer = digestOf(bytes("a", 20_000)); // of image "multi"
    const n = volumeOf(layer);
    const last = result.volumes.length - 1;
    expect(n).toBeLessThan(last);
    await append(volumeFileName(copy, last), `blobs/sha256/${layer.slice(7)}`, Buffer.alloc(20_000));
    const report = await verifyBundle(copy);
    const dup = errors(report).filter((p) => p.kind === "entry-duplicate");
    expect(dup.map((p) => [p.volume, p.digest])).toEqual([[last, layer]]);
    expect(dup[0]?.message).toMatch(new RegExp(`^duplicate entry blobs/sha256/${layer.slice(7)} at offset \\d+ of volume ${last} \\(.*\\) \\(the first is at offset \\d+ of volume ${n} \\(.*\\)\\): a tar reader would take the later one; the bundle was altered$`));
    expect(report.images.find((i) => i.name === bundleName("multi"))?.ok).toBe(false);
    expect(report.images.find((i) => i.name === bundleName("big"))?.ok).toBe(true);
    expect(report.volumes.find((v) => v.volume === n)?.ok).toBe(true);
    expect(report.volumes.find((v) => v.volume === last)?.ok).toBe(false);
    const dst = new MemoryStore();
    await expect(importBundle(copy, { destinationFor: (x) => dst.ref(x) })).rejects.toThrow(/is not as it was exported: duplicate entry blobs\/sha256\/\w+ .*nothing was imported/);
    expect(dst.log).toEqual([]);
  });

  it("an entry appended to the concatenation is not listed by the last volume's description", async () => {
    const whole = join(mkdtempSync(join(tmp, "concat-")), "whole.tar");
    writeFileSync(whole, concat(out));
    await append(whole, "extra.txt", Buffer.from("added\n"));
    const report = await verifyBundle(whole);
    const lastDescription = `airlock/volume-${String(result.volumes.length - 1).padStart(3, "0")}.json`;
    // (A concatenation's size is not checked against a description: it is the sum of the volumes.)
    expect(errors(report).map((p) => [p.kind, p.path])).toEqual([["entry-unlisted", "extra.txt"]]);
    expect(errors(report)[0]?.message).toMatch(new RegExp(`^entry extra\\.txt at offset \\d+ is not listed by ${lastDescription.replace(/\./g, "\\.")}, and comes after the last entry it lists \\(airlock/bundle\\.json\\)`));
  });

  it("without the sidecar, a damaged last volume (no checksum recorded) is not ok; the others are", async () => {
    const copy = copyBundle();
    rmSync(checksumFileName(copy));
    const last = result.volumes.length - 1;
    const reader = await BundleReader.open(copy);
    const blob = reader.entries().find((e) => e.volume === last && e.path.startsWith("blobs/") && e.size > 100);
    await reader.close();
    expect(blob).toBeDefined();
    const file = volumeFileName(copy, last);
    const buf = readFileSync(file);
    buf[(blob?.dataOffset ?? 0) + 10] ^= 0x01;
    writeFileSync(file, buf);
    const report = await verifyBundle(copy);
    const lastVolume = report.volumes.find((v) => v.volume === last);
    expect(lastVolume?.expected).toBeUndefined();
    expect(lastVolume?.ok).toBe(false);
    expect(report.volumes.filter((v) => v.volume !== last).every((v) => v.ok && v.expected === v.sha256)).toBe(true);
    expect(errors(report).map((p) => [p.kind, p.volume])).toEqual([["blob-digest", last]]);
  });
});
