import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Digest, digestOf } from "../digest.js";
import { AirlockError } from "../errors.js";
import { type Descriptor, type IndexJSON, REF_NAME_ANNOTATION } from "../manifest.js";
import { addIndexEntry, emptyIndex, OciLayout, parseLayoutIndex, selectIndexEntry } from "./layout.js";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-layout-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const desc = (content: string, mediaType = "application/vnd.oci.image.manifest.v1+json"): Descriptor => ({ mediaType, digest: digestOf(content), size: Buffer.byteLength(content) });
const named = (d: Descriptor, name: string): Descriptor => ({ ...d, annotations: { [REF_NAME_ANNOTATION]: name } });

/** A stream that yields `good` and then fails, like a source whose verification failed upstream. */
function failingStream(good: string): Readable {
  return new Readable({
    read() {
      this.push(Buffer.from(good));
      this.destroy(new AirlockError("ERR_DIGEST_MISMATCH", "upstream verification failed"));
    },
  });
}

describe("OciLayout blobs", () => {
  it("is created lazily: blobs/sha256/<hex> by the first write, oci-layout and index.json by the first index update", async () => {
    const root = join(dir, "new");
    const layout = await OciLayout.open(root, { create: true });
    await expect(fs.access(root)).rejects.toThrow();
    const data = "hello blob";
    await layout.writeBlob({ digest: digestOf(data), size: data.length }, Readable.from([Buffer.from(data)]));
    // oci-layout and index.json come with the first index update, so an unfinished write never looks like a layout.
    expect(await fs.readdir(root)).toEqual(["blobs"]);
    await layout.updateIndex((idx) => idx);
    expect(JSON.parse(await fs.readFile(join(root, "oci-layout"), "utf8"))).toEqual({ imageLayoutVersion: "1.0.0" });
    expect(JSON.parse(await fs.readFile(join(root, "index.json"), "utf8"))).toEqual(emptyIndex());
    expect(await fs.readFile(join(root, "blobs", "sha256", digestOf(data).slice(7)), "utf8")).toBe(data);
    expect(await layout.hasBlob({ digest: digestOf(data), size: data.length })).toBe(true);
    expect(await layout.hasBlob({ digest: digestOf(data), size: data.length + 1 })).toBe(false);
    expect(await layout.hasBlob({ digest: digestOf("other") })).toBe(false);
  });

  it("keeps nothing when the content does not match the digest or the size", async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const d = digestOf("expected");
    await expect(layout.writeBlob({ digest: d, size: 8 }, Readable.from([Buffer.from("tampered")]))).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
    await expect(layout.writeBlob({ digest: d, size: 8 }, Readable.from([Buffer.from("expect")]))).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
    expect(await layout.hasBlob({ digest: d })).toBe(false);
    expect(await fs.readdir(join(dir, "blobs", "sha256"))).toEqual([]);
  });

  it("keeps nothing when the input stream errors part-way", async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const d = digestOf("partial content that never finishes");
    await expect(layout.writeBlob({ digest: d, size: 36 }, failingStream("partial "))).rejects.toThrow(/upstream verification failed/);
    expect(await fs.readdir(join(dir, "blobs", "sha256"))).toEqual([]);
  });

  it("reads a blob from an offset and reports the remaining size", async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const data = "0123456789abcdef";
    const { digest } = await layout.writeBlobBytes(Buffer.from(data));
    const { stream, size } = await layout.readBlob(digest, { offset: 10 });
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("abcdef");
    expect(size).toBe(6);
    await expect(layout.readBlob(digest, { offset: 17 })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
  });

  it("names the digest and the path of a missing blob", async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const d = digestOf("absent");
    const err = await layout.readBlob(d).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ERR_BLOB_NOT_FOUND" });
    expect((err as Error).message).toContain(d);
    expect((err as Error).message).toContain(join(dir, "blobs", "sha256", d.slice(7)));
  });

  it("never turns a malformed digest into a path", async () => {
    const layout = await OciLayout.open(dir, { create: true });
    for (const bad of ["sha256:../../../etc/passwd", `sha256:${"a".repeat(63)}/`, "md5:d41d8cd98f00b204e9800998ecf8427e", `../sha256:${"a".repeat(64)}`]) {
      expect(() => layout.blobPath(bad)).toThrow(expect.objectContaining({ code: "ERR_INVALID_DIGEST" }));
      await expect(layout.readBlob(bad)).rejects.toMatchObject({ code: "ERR_INVALID_DIGEST" });
    }
  });
});

describe("OciLayout.open", () => {
  it("names a missing directory", async () => {
    const missing = join(dir, "nope");
    await expect(OciLayout.open(missing)).rejects.toThrow(new RegExp(`no OCI image layout at ${missing}`));
  });

  it("refuses to read a directory without index.json and to write into a non-empty non-layout", async () => {
    await fs.writeFile(join(dir, "precious.txt"), "data");
    await expect(OciLayout.open(dir)).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
    await expect(OciLayout.open(dir, { create: true })).rejects.toThrow(/not an OCI image layout/);
  });

  it("refuses an unknown layout version", async () => {
    await fs.writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "2.0.0" }));
    await fs.writeFile(join(dir, "index.json"), JSON.stringify(emptyIndex()));
    await expect(OciLayout.open(dir)).rejects.toThrow(/layout version "2.0.0"/);
  });
});

describe("index.json", () => {
  it("rejects an index.json entry whose digest would escape blobs/", () => {
    const evil = JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: "sha256:../../../../etc/passwd", size: 1 }] });
    expect(() => parseLayoutIndex(Buffer.from(evil), "index.json")).toThrow(expect.objectContaining({ code: "ERR_INVALID_LAYOUT" }));
  });

  it("updateIndex serialises concurrent updates in one process", async () => {
    const layout = await OciLayout.open(dir, { create: true });
    await Promise.all(Array.from({ length: 20 }, (_, i) => layout.updateIndex((idx) => addIndexEntry(idx, desc(`m${i}`), `name-${i}`))));
    const index = await layout.readIndex();
    expect(index.manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION]).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `name-${i}`).sort());
    await expect(fs.access(join(dir, "index.json.lock"))).rejects.toThrow();
  });

  it("addIndexEntry moves a name, replaces an unnamed same-digest entry, and appends otherwise", () => {
    const a = desc("a");
    const b = desc("b");
    let idx: IndexJSON = emptyIndex();
    idx = addIndexEntry(idx, a, "app");
    idx = addIndexEntry(idx, b, "app");
    // The name moved to b; a stays, unnamed (containers/image's behaviour).
    expect(idx.manifests).toEqual([a, named(b, "app")]);
    // Writing a under a name again replaces the unnamed entry with the same digest.
    idx = addIndexEntry(idx, a, "other");
    expect(idx.manifests).toEqual([named(a, "other"), named(b, "app")]);
    // Without a name: appended once, then replaced rather than duplicated.
    const c = desc("c");
    idx = addIndexEntry(addIndexEntry(idx, c), c);
    expect(idx.manifests).toEqual([named(a, "other"), named(b, "app"), c]);
    // Other annotations survive losing the name.
    const withAnn = { ...a, annotations: { [REF_NAME_ANNOTATION]: "x", "org.example": "keep" } };
    const moved = addIndexEntry({ ...emptyIndex(), manifests: [withAnn] }, b, "x");
    expect(moved.manifests[0]!.annotations).toEqual({ "org.example": "keep" });
  });

  it("selectIndexEntry chooses by name, by position, or the only entry", () => {
    const a = named(desc("a"), "app");
    const b = named(desc("b"), "db");
    const u = desc("u");
    const idx: IndexJSON = { ...emptyIndex(), manifests: [a, b, u] };
    expect(selectIndexEntry(idx, { name: "db" }, "L").descriptor).toEqual(b);
    expect(selectIndexEntry(idx, { position: 2 }, "L")).toEqual({ descriptor: u, position: 2 });
    expect(selectIndexEntry({ ...emptyIndex(), manifests: [u] }, {}, "L").descriptor).toEqual(u);
    expect(() => selectIndexEntry(idx, { name: "nope" }, "L")).toThrow(expect.objectContaining({ code: "ERR_IMAGE_NOT_FOUND" }));
    expect(() => selectIndexEntry(idx, { position: 3 }, "L")).toThrow(expect.objectContaining({ code: "ERR_IMAGE_NOT_FOUND" }));
    expect(() => selectIndexEntry(emptyIndex(), {}, "L")).toThrow(expect.objectContaining({ code: "ERR_IMAGE_NOT_FOUND" }));
    const err = (() => {
      try {
        selectIndexEntry(idx, {}, "/srv/L");
      } catch (e) {
        return e as AirlockError;
      }
    })();
    expect(err?.code).toBe("ERR_AMBIGUOUS_IMAGE");
    expect(err?.message).toContain("more than one image in /srv/L; choose one with oci:/srv/L:NAME or oci:/srv/L:@N; names are: app, db (and 1 unnamed");
  });

  it("an entry's digest is validated before it is used", async () => {
    await fs.writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await fs.writeFile(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: "sha256:../../x" as Digest, size: 2 }] }));
    const layout = await OciLayout.open(dir);
    await expect(layout.readIndex()).rejects.toMatchObject({ code: "ERR_INVALID_LAYOUT" });
  });
});
