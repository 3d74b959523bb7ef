import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BlobLocations, MAX_DIGESTS, MAX_REGISTRIES, MAX_REPOS } from "./blob-locations.js";

const dir = mkdtempSync(join(tmpdir(), "airlock-blob-locations-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = () => join(dir, `cache-${n++}`, "blob-locations.json");
const D = (i: number) => `sha256:${i.toString(16).padStart(64, "0")}`;

describe("BlobLocations", () => {
  it("remembers where a digest was seen, most recent first, without the asking repository", () => {
    const c = new BlobLocations(undefined);
    c.record("r.example", "team/a", D(1));
    c.record("r.example", "team/b", D(1));
    expect(c.candidates("r.example", D(1), "team/c")).toEqual(["team/b", "team/a"]);
    expect(c.candidates("r.example", D(1), "team/b")).toEqual(["team/a"]);
    expect(c.candidates("other.example", D(1), "team/c")).toEqual([]);
    c.forget("r.example", "team/b", D(1));
    expect(c.candidates("r.example", D(1), "team/c")).toEqual(["team/a"]);
  });

  it("keeps what it saw across runs, merged with what another process wrote meanwhile", async () => {
    const path = file();
    const a = new BlobLocations(path);
    const b = new BlobLocations(path); // a second process, started before a flushed
    a.record("r.example", "team/a", D(1));
    b.record("r.example", "team/b", D(2));
    await a.flush();
    await b.flush();
    const later = new BlobLocations(path);
    expect(later.candidates("r.example", D(1), "x")).toEqual(["team/a"]);
    expect(later.candidates("r.example", D(2), "x")).toEqual(["team/b"]);
  });

  it("stays within its bounds: registries, digests per registry, repositories per digest", () => {
    const c = new BlobLocations(undefined);
    for (let i = 0; i < MAX_REPOS + 2; i++) c.record("r.example", `repo${i}`, D(0));
    expect(c.candidates("r.example", D(0), "none")).toHaveLength(MAX_REPOS);
    expect(c.candidates("r.example", D(0), "none")[0]).toBe(`repo${MAX_REPOS + 1}`);
    for (let i = 1; i <= MAX_DIGESTS + 1; i++) c.record("r.example", "repo", D(i));
    expect(c.candidates("r.example", D(0), "none")).toEqual([]); // the oldest digest went
    expect(c.candidates("r.example", D(MAX_DIGESTS + 1), "none")).toEqual(["repo"]);
    for (let i = 0; i <= MAX_REGISTRIES; i++) c.record(`r${i}.example`, "repo", D(1));
    expect(c.candidates("r.example", D(2), "none")).toEqual([]); // the least recently used registry went
    expect(c.candidates(`r${MAX_REGISTRIES}.example`, D(1), "none")).toEqual(["repo"]);
  });

  it("ignores a damaged or foreign file, and replaces it on the next flush", async () => {
    const path = file();
    mkdirSync(dirname(path), { recursive: true });
    const first = new BlobLocations(path);
    await first.flush(); // nothing seen: nothing written
    for (const junk of ["{not json", JSON.stringify({ version: 2, registries: {} }), JSON.stringify({ version: 1, registries: { "r.example": { [D(1)]: "team/a" } } })]) {
      writeFileSync(path, junk);
      const c = new BlobLocations(path);
      expect(c.candidates("r.example", D(1), "x")).toEqual([]);
      c.record("r.example", "team/a", D(3));
      await c.flush();
      expect(JSON.parse(readFileSync(path, "utf8")).registries["r.example"][D(3)]).toEqual(["team/a"]);
    }
  });

  it("never fails a flush it cannot write", async () => {
    const notADir = join(dir, "a-file");
    writeFileSync(notADir, "");
    const c = new BlobLocations(join(notADir, "airlock", "blob-locations.json"));
    c.record("r.example", "team/a", D(1));
    await expect(c.flush()).resolves.toBeUndefined();
  });
});
