import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { digestOf } from "../digest.js";
import { AirlockError } from "../errors.js";
import { planLayout } from "./plan.js";
import type { VolumeFiles } from "./volumes.js";
import { eachChunk, WRITE_CHUNK_SIZE, writeBlobData } from "./writer.js";

/** A VolumeFiles whose writes complete only when the test says so; records every write issued. */
function controlledFiles() {
  const issued: { pos: number; n: number; first: number }[] = [];
  const release: (() => void)[] = [];
  const files = {
    writev(pieces: Uint8Array[], pos: number): Promise<void> {
      issued.push({ pos, n: pieces.reduce((k, p) => k + p.length, 0), first: pieces[0]?.[0] as number });
      return new Promise<void>((res) => release.push(res));
    },
  } as unknown as VolumeFiles;
  return { files, issued, release };
}

describe("writeBlobData", () => {
  it("issues no write after the blob failed, even from a flush that was waiting", async () => {
    const size = 3 * WRITE_CHUNK_SIZE;
    const digest = digestOf(Buffer.alloc(size, 1));
    const plan = planLayout([{ path: `blobs/sha256/${digest.slice(7)}`, size, kind: "blob", digest }], { mtime: 0 });
    const entry = plan.entries[1];
    if (!entry) throw new Error("no entry");
    const { files, issued, release } = controlledFiles();
    const stream = new Readable({ read() {} });
    const done = writeBlobData(files, entry, digest, stream, { what: "test blob" });
    stream.push(Buffer.alloc(WRITE_CHUNK_SIZE, 0x11)); // enough to write: write #1 in flight
    await new Promise((r) => setImmediate(r));
    stream.push(Buffer.alloc(WRITE_CHUNK_SIZE, 0x22)); // its flush waits for write #1
    await new Promise((r) => setImmediate(r));
    expect(issued).toHaveLength(1);
    stream.destroy(new AirlockError("ERR_NETWORK", "connection reset", { retryable: true }));
    await new Promise((r) => setImmediate(r));
    release.shift()?.(); // write #1 completes after the failure
    await expect(done).rejects.toMatchObject({ code: "ERR_NETWORK" });
    await new Promise((r) => setTimeout(r, 20));
    expect(issued).toHaveLength(1);
  });

  it("refuses more bytes than the descriptor says as soon as they arrive", async () => {
    const data = Buffer.from("0123456789");
    const digest = digestOf(data);
    const plan = planLayout([{ path: `blobs/sha256/${digest.slice(7)}`, size: 5, kind: "blob", digest }], { mtime: 0 });
    const { files } = controlledFiles();
    await expect(writeBlobData(files, plan.entries[1] as never, digest, Readable.from([data]), { what: "b" })).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
  });
});

describe("eachChunk", () => {
  it("hands over chunks one by one, pausing while a returned promise is pending", async () => {
    const seen: number[] = [];
    let busy = false;
    await eachChunk(Readable.from([Buffer.alloc(3), Buffer.alloc(5), Buffer.alloc(7)]), (c) => {
      expect(busy).toBe(false);
      seen.push(c.length);
      if (c.length !== 5) return undefined;
      busy = true;
      return new Promise<void>((r) =>
        setTimeout(() => {
          busy = false;
          r();
        }, 10),
      );
    });
    expect(seen).toEqual([3, 5, 7]);
  });

  it("rejects when the stream closes before its end without an error", async () => {
    const s = new Readable({ read() {} });
    const p = eachChunk(s, () => undefined);
    s.push(Buffer.alloc(1));
    s.destroy();
    await expect(p).rejects.toThrow(/closed before its end/);
  });
});
