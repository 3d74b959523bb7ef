/**
 * A blob that does not match its digest while a split bundle is imported: the error names the
 * volume file(s) holding it and says what to do (copy that volume again, or run airlock verify),
 * as verify does; nothing is tagged at the destination (a real oci: layout).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeImage, MemoryStore } from "../../../../test/support/memory-transport.js";
import { digestOf } from "../digest.js";
import { isAirlockError } from "../errors.js";
import type { Descriptor } from "../manifest.js";
import { parseImageName } from "../transports/index.js";
import "../transports/all.js";
import { exportBundle } from "./export.js";
import { importBundle } from "./import.js";
import { BundleReader } from "./reader.js";

const tmp = mkdtempSync(join(tmpdir(), "airlock-import-volumes-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Deterministic bytes that do not compress. */
function bytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; i++, off += 32) Buffer.from(digestOf(`${seed}/${i}`).slice(7), "hex").copy(out, off);
  return out;
}

const store = new MemoryStore();
const image = makeImage(store, { layers: [bytes("one", 40_000), bytes("two", 40_000), bytes("big", 150_000)], name: "app" });
const NAME = "volumes.example/app:1";


let out: string;
beforeAll(async () => {
  out = join(tmp, "bundle.tar");
  await exportBundle([{ source: store.wholeBlobsRef("app"), name: NAME }], out, { splitSize: 64 * 1024 });
});

/**
 * Exports again under `dir`, flips a byte of `desc` in every volume holding it, and returns the
 * bundle path, those volumes and the digest of the damaged content.
 */
async function damaged(dir: string, desc: Descriptor): Promise<{ path: string; volumes: { volume: number; path: string }[]; actual: string }> {
  const path = join(tmp, dir, "bundle.tar");
  await exportBundle([{ source: store.wholeBlobsRef("app"), name: NAME }], path, { splitSize: 64 * 1024 });
  const reader = await BundleReader.open(path);
  const segments = reader.locateBlob(desc);
  await reader.close();
  for (const seg of segments) {
    const buf = readFileSync(seg.path);
    buf[seg.start + (seg.length >> 1)] = (buf[seg.start + (seg.length >> 1)] as number) ^ 0xff;
    writeFileSync(seg.path, buf);
  }
  const actual = digestOf(Buffer.concat(segments.map((seg) => readFileSync(seg.path).subarray(seg.start, seg.start + seg.length))));
  return { path, volumes: segments.map((s) => ({ volume: s.volume, path: s.path })), actual };
}

async function importError(path: string, dest: string): Promise<Error> {
  const err = await importBundle(path, { destinationFor: () => parseImageName(`oci:${dest}:app`), concurrency: 1, journal: false }).then(
    () => undefined,
    (e: Error) => e,
  );
  if (!err) throw new Error("the import of a damaged bundle succeeded");
  return err;
}

describe("a damaged blob in a split bundle", () => {
  it("the bundle is split, and the blobs lie in different volumes", async () => {
    const reader = await BundleReader.open(out);
    try {
      expect(reader.volumes.length).toBeGreaterThan(2);
      expect(reader.locateBlob(image.image.layers[2] as Descriptor).length).toBeGreaterThan(1);
    } finally {
      await reader.close();
    }
  });

  it("names the one volume holding it and says to copy that volume again or run verify", async () => {
    const layer = image.image.layers[1] as Descriptor;
    const { path, volumes, actual } = await damaged("one", layer);
    expect(volumes).toHaveLength(1);
    const [v] = volumes as [{ volume: number; path: string }];
    expect(v.path).toBe(`${path}.${String(v.volume).padStart(3, "0")}`);
    const dest = join(tmp, "one-dest");
    const err = await importError(path, dest);
    expect(isAirlockError(err, "ERR_DIGEST_MISMATCH")).toBe(true);
    expect(err.message).toBe(
      `blob ${layer.digest} of image ${NAME} in volume ${v.volume} (${v.path}) does not match its digest (content has digest ${actual}, expected ${layer.digest}): that volume is damaged; no manifest was written — copy ${v.path} again from the source media, or run airlock verify ${path} to list every damaged volume`,
    );
    expect(() => readFileSync(join(dest, "index.json"))).toThrow();
  });

  it("a blob across two volumes: names both", async () => {
    const layer = image.image.layers[2] as Descriptor;
    const { path, volumes } = await damaged("two", layer);
    expect(volumes.length).toBeGreaterThan(1);
    const err = await importError(path, join(tmp, "two-dest"));
    expect(err.message).toContain(`in ${volumes.map((v) => `volume ${v.volume} (${v.path})`).join(" and ")} does not match its digest`);
    expect(err.message).toContain(`those volumes are damaged; no manifest was written — copy ${volumes.map((v) => v.path).join(" and ")} again from the source media`);
  });
});
