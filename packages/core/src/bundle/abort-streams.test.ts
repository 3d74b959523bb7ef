/**
 * Blob streams when a run is aborted (one download failed and the others are stopped): a stream
 * destroyed while nobody reads it must not emit an unhandled 'error' event (that kills the
 * process), a file opened while the abort happened must not become a stream at all, and a reader
 * handed an already destroyed stream must settle instead of waiting for events that never come.
 * Vitest fails the run on an uncaught error, so the first two also fail loudly, not just by their
 * assertions.
 */
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addAbortSignal, Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { digestOf } from "../digest.js";
import { AirlockError } from "../errors.js";
import { destroyOnAbort, openBlobFile } from "../layout/files.js";
import { planLayout } from "./plan.js";
import type { VolumeFiles } from "./volumes.js";
import { eachChunk, writeBlobData } from "./writer.js";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-abort-streams-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const tick = () => new Promise((r) => setImmediate(r));
/** How many file descriptors of this process are open on `path` (Linux: /proc/self/fd). */
async function openDescriptorsOf(path: string): Promise<number> {
  let n = 0;
  for (const fd of await fs.readdir("/proc/self/fd")) {
    if ((await fs.readlink(`/proc/self/fd/${fd}`).catch(() => "")) === path) n++;
  }
  return n;
}
const notFound = () => new AirlockError("ERR_BLOB_NOT_FOUND", "no such blob");

describe("destroyOnAbort", () => {
  it("destroys a stream nobody reads when the signal is already aborted, without an unhandled 'error' event", async () => {
    const reason = new AirlockError("ERR_BLOB_NOT_FOUND", "a sibling blob is missing");
    const s = destroyOnAbort(new Readable({ read() {} }), AbortSignal.abort(reason));
    await tick();
    expect(s.destroyed).toBe(true);
    expect(s.errored).toMatchObject({ name: "AbortError", cause: reason });
  });

  it("does the same when the signal aborts later", async () => {
    const c = new AbortController();
    const s = destroyOnAbort(new Readable({ read() {} }), c.signal);
    c.abort(new Error("stop"));
    await tick();
    expect(s.destroyed).toBe(true);
    expect(s.errored?.name).toBe("AbortError");
  });

  it("still hands the error to a reader that listens", async () => {
    const c = new AbortController();
    const s = destroyOnAbort(new Readable({ read() {} }), c.signal);
    const seen = new Promise<Error>((resolve) => s.once("error", resolve));
    c.abort(new Error("stop"));
    expect((await seen).name).toBe("AbortError");
  });
});

describe("openBlobFile", () => {
  it("returns no stream, and closes the file, when the run aborts while the file is being opened", async () => {
    const path = join(dir, "blob");
    await fs.writeFile(path, Buffer.alloc(1024, 7));
    const c = new AbortController();
    const opening = openBlobFile(path, { signal: c.signal }, notFound);
    c.abort(new AirlockError("ERR_BLOB_NOT_FOUND", "a sibling blob is missing"));
    await expect(opening).rejects.toMatchObject({ code: "ERR_BLOB_NOT_FOUND", message: "a sibling blob is missing" });
    await tick();
    expect(await openDescriptorsOf(path)).toBe(0);
  });

  it("gives a stream that an abort destroys quietly before anyone reads it", async () => {
    const path = join(dir, "blob");
    await fs.writeFile(path, Buffer.alloc(1024, 7));
    const c = new AbortController();
    const { stream } = await openBlobFile(path, { signal: c.signal }, notFound);
    c.abort(new Error("stop"));
    await tick();
    expect(stream.destroyed).toBe(true);
  });
});

describe("reading an already destroyed stream", () => {
  it("eachChunk rejects with the stream's error instead of waiting forever", async () => {
    const s = new Readable({ read() {} });
    s.on("error", () => {});
    s.destroy(new Error("gone"));
    await tick();
    await expect(eachChunk(s, () => undefined)).rejects.toThrow("gone");
  });

  it("eachChunk rejects for a stream closed before its end without an error", async () => {
    const s = new Readable({ read() {} });
    s.destroy();
    await tick();
    await expect(eachChunk(s, () => undefined)).rejects.toMatchObject({ code: "ERR_ABORTED" });
  });

  it("writeBlobData on a stream the abort destroyed before it came: fails with the run's reason, writes nothing, no unhandled error", async () => {
    const data = Buffer.alloc(4096, 1);
    const digest = digestOf(data);
    const plan = planLayout([{ path: `blobs/sha256/${digest.slice(7)}`, size: data.length, kind: "blob", digest }], { mtime: 0 });
    let writes = 0;
    const files = {
      writev: async () => {
        writes++;
      },
    } as unknown as VolumeFiles;
    const c = new AbortController();
    const reason = new AirlockError("ERR_BLOB_NOT_FOUND", "a sibling blob is missing");
    c.abort(reason);
    // A source that ties its stream to the signal with Node's addAbortSignal (as docker-archive's
    // tar reader does), opened as the run aborted: the 'error' event comes on the next tick, with
    // no listener but the one writeBlobData attaches.
    const stream = addAbortSignal(c.signal, new Readable({ read() {} }));
    await expect(writeBlobData(files, plan.entries[1] as never, digest, stream, { signal: c.signal, what: "blob b" })).rejects.toBe(reason);
    await tick();
    expect(writes).toBe(0);
  });
});
