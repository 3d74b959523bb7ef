import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BLOCK_SIZE, decodeHeader, encodeHeader, END_OF_ARCHIVE_SIZE, isZeroBlock, paddedSize, parsePaxRecords, TypeFlag, USTAR_MAX_SIZE } from "./tar.js";

const dir = mkdtempSync(join(tmpdir(), "airlock-tar-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tar of the given entries, written with encodeHeader. */
function tarOf(entries: { path: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(encodeHeader({ path: e.path, size: e.data.length, mtime: 1_700_000_000 }));
    const padded = Buffer.alloc(paddedSize(e.data.length));
    e.data.copy(padded);
    parts.push(padded);
  }
  parts.push(Buffer.alloc(END_OF_ARCHIVE_SIZE));
  return Buffer.concat(parts);
}

describe("tar headers", () => {
  it("encodes a ustar header that decodes to the same path and size", () => {
    const h = encodeHeader({ path: "blobs/sha256/" + "a".repeat(64), size: 12345, mtime: 1_700_000_000 });
    expect(h.length).toBe(BLOCK_SIZE);
    const d = decodeHeader(h);
    expect(d).toEqual({ path: "blobs/sha256/" + "a".repeat(64), size: 12345, typeflag: TypeFlag.File, mtime: 1_700_000_000 });
  });

  it("uses the ustar prefix field for paths over 100 characters when a slash allows it", () => {
    const path = `${"d".repeat(120)}/${"f".repeat(90)}`;
    const h = encodeHeader({ path, size: 1, mtime: 0 });
    expect(h.length).toBe(BLOCK_SIZE);
    expect(decodeHeader(h).path).toBe(path);
  });

  it("adds a pax header for a path ustar cannot hold (sha512 blob names)", () => {
    const path = `blobs/sha512/${"b".repeat(128)}`;
    const h = encodeHeader({ path, size: 7, mtime: 0 });
    expect(h.length).toBe(3 * BLOCK_SIZE);
    const pax = decodeHeader(h.subarray(0, BLOCK_SIZE));
    expect(pax.typeflag).toBe(TypeFlag.PaxExtended);
    expect(parsePaxRecords(h.subarray(BLOCK_SIZE, BLOCK_SIZE + pax.size)).get("path")).toBe(path);
    expect(decodeHeader(h.subarray(2 * BLOCK_SIZE)).size).toBe(7);
  });

  it("adds a pax size record for entries of 8 GiB or more", () => {
    const size = USTAR_MAX_SIZE + 1 + 4096;
    const h = encodeHeader({ path: "big", size, mtime: 0 });
    const pax = decodeHeader(h.subarray(0, BLOCK_SIZE));
    expect(parsePaxRecords(h.subarray(BLOCK_SIZE, BLOCK_SIZE + pax.size)).get("size")).toBe(String(size));
    // GNU tar agrees: it lists the entry with the pax size (and then complains that the data is missing).
    const file = join(dir, "big.tar");
    writeFileSync(file, h);
    const out = spawnSync("tar", ["-tvf", file], { encoding: "utf8" });
    expect(out.stdout).toContain(String(size));
    expect(out.stdout).toContain("big");
  });

  it("writes pax records whose length prefix counts itself, across a digit boundary", () => {
    for (const n of [80, 85, 90, 95, 100, 994, 995, 996, 1000]) {
      const value = "x".repeat(n);
      const h = encodeHeader({ path: `${value}/${"y".repeat(101)}`, size: 0, mtime: 0 });
      const pax = decodeHeader(h.subarray(0, BLOCK_SIZE));
      const rec = h.subarray(BLOCK_SIZE, BLOCK_SIZE + pax.size);
      const len = Number.parseInt(rec.toString("ascii").split(" ")[0] as string, 10);
      expect(len).toBe(rec.length);
      expect(parsePaxRecords(rec).get("path")).toBe(`${value}/${"y".repeat(101)}`);
    }
  });

  it("detects a damaged header by its checksum", () => {
    const h = encodeHeader({ path: "index.json", size: 10, mtime: 0 });
    h[3] = (h[3] as number) ^ 0x01;
    expect(() => decodeHeader(h)).toThrow(/damaged/);
  });

  it("recognises zero blocks", () => {
    expect(isZeroBlock(Buffer.alloc(BLOCK_SIZE))).toBe(true);
    expect(isZeroBlock(encodeHeader({ path: "a", size: 0, mtime: 0 }))).toBe(false);
  });

  it("writes tars GNU tar lists and extracts byte for byte", () => {
    const entries = [
      { path: "oci-layout", data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
      { path: `blobs/sha512/${"c".repeat(128)}`, data: Buffer.from("pax path") },
      { path: "empty", data: Buffer.alloc(0) },
      { path: "exact", data: Buffer.alloc(BLOCK_SIZE, 7) },
    ];
    const file = join(dir, "t.tar");
    writeFileSync(file, tarOf(entries));
    const list = execFileSync("tar", ["-tf", file], { encoding: "utf8" }).trim().split("\n");
    expect(list).toEqual(entries.map((e) => e.path));
    for (const e of entries) {
      expect(execFileSync("tar", ["-xOf", file, e.path])).toEqual(e.data);
    }
  });
});
