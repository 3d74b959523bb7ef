import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { UploadBody } from "./blobio.js";

const data = randomBytes(100_000);
/** The data as a stream of 7000-byte pieces. */
const stream = (from = 0) => Readable.from(Array.from({ length: Math.ceil((data.length - from) / 7000) }, (_, i) => data.subarray(from + i * 7000, Math.min(data.length, from + (i + 1) * 7000))));
const collect = async (r: Readable) => Buffer.concat(await r.toArray());

describe("UploadBody", () => {
  it("produces any range again from a seekable source, reading the stream once", async () => {
    const reopened: number[] = [];
    const reopen = (off: number) => {
      reopened.push(off);
      return stream(off);
    };
    const body = new UploadBody(stream(), data.length, reopen, "test");
    expect(await collect(body.body(0, 30_000))).toEqual(data.subarray(0, 30_000));
    // A retry from inside what was read: re-read from the source, then on from the stream.
    expect(await collect(body.body(12_345, 50_000))).toEqual(data.subarray(12_345, 50_000));
    expect(reopened).toEqual([12_345]);
    expect(await collect(body.body(50_000, data.length))).toEqual(data.subarray(50_000));
    expect(body.canStartAt(0)).toBe(true);
  });

  it("keeps bytes of a non-seekable stream only from the last confirmed offset", async () => {
    const body = new UploadBody(stream(), data.length, undefined, "test");
    expect(await collect(body.body(0, 40_000))).toEqual(data.subarray(0, 40_000));
    expect(await collect(body.body(20_000, 40_000))).toEqual(data.subarray(20_000, 40_000));
    body.confirm(40_000);
    expect(body.canStartAt(39_000)).toBe(false);
    expect(body.canStartAt(40_000)).toBe(true);
    await expect(collect(body.body(10_000, 50_000))).rejects.toThrow(/no longer held/);
  });

  it("skips to an offset (resume) and fails when the stream is longer or shorter than the size", async () => {
    const body = new UploadBody(stream(), data.length, undefined, "test");
    await body.skipTo(60_000);
    expect(await collect(body.body(60_000, data.length))).toEqual(data.subarray(60_000));
    const longer = new UploadBody(stream(), data.length - 10, undefined, "test");
    await expect(collect(longer.body(0, data.length - 10))).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
    const shorter = new UploadBody(stream(), data.length + 10, undefined, "test");
    await expect(collect(shorter.body(0, data.length + 10))).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
  });
});
