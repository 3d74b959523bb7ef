import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { digestOf, isDigest, parseDigest, VerifyingStream, verifyBytes } from "./digest.js";

const EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

describe("digests", () => {
  it.each([
    [EMPTY, true],
    [`sha512:${"a".repeat(128)}`, true],
    ["sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", false],
    ["sha256:abc", false],
    ["md5:d41d8cd98f00b204e9800998ecf8427e", false],
    [`sha256:../../${"a".repeat(58)}`, false],
    [`sha256/${"a".repeat(64)}`, false],
    ["", false],
    [`sha384:${"a".repeat(96)}`, false],
  ])("%s valid=%s", (s, ok) => {
    expect(isDigest(s)).toBe(ok);
    if (!ok) expect(() => parseDigest(s)).toThrow(/digest/);
  });

  it("computes sha256 and sha512", () => {
    expect(digestOf("")).toBe(EMPTY);
    expect(digestOf("", "sha512")).toMatch(/^sha512:cf83e135/);
  });

  it("verifyBytes checks size and digest", () => {
    expect(() => verifyBytes(Buffer.from(""), { digest: parseDigest(EMPTY), size: 0 })).not.toThrow();
    expect(() => verifyBytes(Buffer.from("x"), { digest: parseDigest(EMPTY) })).toThrow(/expected sha256:e3b0/);
    expect(() => verifyBytes(Buffer.from(""), { digest: parseDigest(EMPTY), size: 3 })).toThrow(/expected 3/);
  });
});

describe("VerifyingStream", () => {
  const data = Buffer.from("hello world, this is a blob");
  const digest = digestOf(data);
  const chunks = () => Readable.from([data.subarray(0, 5), data.subarray(5)]);

  it("passes matching content through unchanged", async () => {
    const v = new VerifyingStream({ digest, size: data.length });
    const out = buffer(v);
    await pipeline(chunks(), v);
    expect(await out).toEqual(data);
    expect(v.bytes).toBe(data.length);
  });

  it("fails at the end on a digest mismatch", async () => {
    const v = new VerifyingStream({ digest: digestOf("other"), size: data.length });
    v.resume();
    await expect(pipeline(chunks(), v)).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
  });

  it("fails on a short stream", async () => {
    const v = new VerifyingStream({ digest, size: data.length + 1 });
    v.resume();
    await expect(pipeline(chunks(), v)).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
  });

  it("fails as soon as too many bytes arrive", async () => {
    const v = new VerifyingStream({ digest, size: 3 });
    v.resume();
    await expect(pipeline(chunks(), v)).rejects.toThrow(/more than the expected 3 bytes/);
    expect(v.bytes).toBeLessThan(data.length);
  });
});
