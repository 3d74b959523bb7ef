import { promises as fs, createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pack } from "tar-stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { applyLayer } from "./extract.js";
import { assembleLayer, Crc64, readTarSplit, TarSplitRecorder } from "./tarsplit.js";

/** CRC-64/ISO of the 1000 test bytes below, computed by a bit-by-bit reference implementation in Python. */
const CRC_OF_DATA = "32a4b85267c95ac9";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-tarsplit-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function tarOf(entries: [Record<string, unknown> & { name: string }, string?][]): Promise<Buffer> {
  const p = pack();
  const done = buffer(p);
  for (const [header, content] of entries) {
    await new Promise<void>((resolve, reject) => p.entry({ mtime: new Date(0), ...header }, content ?? "", (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  return done;
}

/** Records `tar` while applying it to DIR/root; returns the tar-split path and the root. */
async function record(tar: Buffer): Promise<{ tarSplit: string; root: string }> {
  const root = join(dir, "root");
  await fs.mkdir(root);
  const tarSplit = join(dir, "layer.tar-split.gz");
  const recorder = new TarSplitRecorder(createWriteStream(tarSplit));
  await applyLayer(Readable.from([tar.subarray(0, 700), tar.subarray(700)]).pipe(recorder), root, "apply", "test layer");
  await recorder.written();
  return { tarSplit, root };
}

describe("tar-split", () => {
  it("computes Go's CRC-64/ISO", () => {
    const c = new Crc64();
    c.update(Buffer.from("123456789"));
    expect(c.sum().toString("hex")).toBe("b90956c775a41001");
    // Eight bytes at a time and byte by byte agree, whatever the chunking.
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff));
    const whole = new Crc64();
    whole.update(data);
    const parts = new Crc64();
    for (let i = 0; i < data.length; i += 3) parts.update(data.subarray(i, i + 3));
    expect(parts.sum()).toEqual(whole.sum());
    expect(whole.sum().toString("hex")).toBe(CRC_OF_DATA);
  });

  it("regenerates a tar byte for byte: PAX long names, empty and large files, links, and padding after the end", async () => {
    const long = `${"d".repeat(120)}/${"f".repeat(120)}`;
    const big = "0123456789abcdef".repeat(70_000);
    const tar = Buffer.concat([
      await tarOf([
        [{ name: "etc", type: "directory", mode: 0o755 }],
        [{ name: "etc/empty" }, ""],
        [{ name: long, mode: 0o600 }, "long name"],
        [{ name: "big" }, big],
        [{ name: "ln", type: "symlink", linkname: "big" }],
        [{ name: "hl", type: "link", linkname: "big" }],
      ]),
      Buffer.alloc(8192),
    ]);
    const { tarSplit, root } = await record(tar);
    expect(await fs.readFile(join(root, long), "utf8")).toBe("long name");
    const entries = [];
    for await (const e of readTarSplit(tarSplit)) entries.push(e);
    expect(entries.filter((e) => e.type === 1).map((e) => e.name)).toEqual(["etc", "etc/empty", long, "big", "ln", "hl"]);
    const again = await buffer(assembleLayer(tarSplit, root, "test layer"));
    expect(again.length).toBe(tar.length);
    expect(again.equals(tar)).toBe(true);
  });

  it("fails when a file of the layer changed since the tar-split was recorded", async () => {
    const tar = await tarOf([[{ name: "a" }, "original"]]);
    const { tarSplit, root } = await record(tar);
    await fs.writeFile(join(root, "a"), "tampered");
    await expect(buffer(assembleLayer(tarSplit, root, "test layer"))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH", message: expect.stringContaining('"a"') });
    await fs.writeFile(join(root, "a"), "short");
    await expect(buffer(assembleLayer(tarSplit, root, "test layer"))).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
  });

  it("refuses entries that lead outside the layer", async () => {
    const root = join(dir, "root");
    await fs.mkdir(root);
    await fs.mkdir(join(dir, "outside"));
    await fs.symlink(join(dir, "outside"), join(root, "esc"));
    const tar = await tarOf([[{ name: "esc/pwned" }, "x"]]);
    await expect(applyLayer(Readable.from([tar]), root, "apply", "test layer")).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
    expect(await fs.readdir(join(dir, "outside"))).toEqual([]);
  });
});
