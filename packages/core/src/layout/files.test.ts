import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { digestOf, VerifyingStream } from "../digest.js";
import { writeVerifiedFile } from "./files.js";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-files-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** `data` in chunks of `size` bytes, as a network source delivers it. */
function chunked(data: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += size) parts.push(data.subarray(off, off + size));
  return Readable.from(parts);
}

/** The stream the copy pipeline hands a destination: `source` passing through a VerifyingStream. */
function verified(source: Readable, expected: { digest: ReturnType<typeof digestOf>; size: number }): VerifyingStream {
  const v = new VerifyingStream(expected);
  source.on("error", (err) => v.destroy(err));
  return source.pipe(v);
}

describe("writeVerifiedFile", () => {
  it("writes many small chunks and large ones byte for byte", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const expected = { digest: digestOf(data), size: data.length };
    for (const size of [1000, 64 * 1024, 2 * 1024 * 1024]) {
      const path = join(dir, `blob-${size}`);
      await writeVerifiedFile(path, expected, chunked(data, size));
      expect(Buffer.compare(await fs.readFile(path), data)).toBe(0);
    }
  });

  it("a stream that verifies the same digest and fails at its end leaves nothing behind", async () => {
    const data = randomBytes(200_000);
    const wrong = Buffer.from(data);
    wrong[123_456] = (wrong[123_456] as number) ^ 1;
    const expected = { digest: digestOf(data), size: data.length };
    const path = join(dir, "blob");
    await expect(writeVerifiedFile(path, expected, verified(chunked(wrong, 16 * 1024), expected))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it("a stream that verifies something else is still checked against what the file must hold", async () => {
    const other = randomBytes(50_000);
    const data = randomBytes(50_000);
    const path = join(dir, "blob");
    // The stream is right about its own content, which is not the content asked for.
    const stream = verified(chunked(other, 8192), { digest: digestOf(other), size: other.length });
    await expect(writeVerifiedFile(path, { digest: digestOf(data), size: data.length }, stream)).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    expect(await fs.readdir(dir)).toEqual([]);
  });
});
