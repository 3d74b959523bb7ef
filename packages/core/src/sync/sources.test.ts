import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import "../transports/all.js";
import { isAirlockError } from "../errors.js";
import { DockerReference } from "../reference/docker.js";
import { dirSyncImages, dockerSyncImages, ociSyncImages, repositorySyncImages } from "./sources.js";

const FIX = join(import.meta.dirname, "../../../../fixtures");
const D = "sha256:0000000000000000000000000000000000000000000000000000000000001111";
const tmp = mkdtempSync(join(tmpdir(), "airlock-sync-sources-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function tree(root: string, files: string[]): void {
  for (const f of files) {
    mkdirSync(join(root, f, ".."), { recursive: true });
    writeFileSync(join(root, f), "{}");
  }
}

describe("dirSyncImages (skopeo's filepath.WalkDir)", () => {
  const root = join(tmp, "src");
  tree(root, [
    "busybox:1.0/manifest.json",
    "ns/app:2/manifest.json",
    "ns/app:2/nested/manifest.json", // not descended: its parent is an image
    "mixed/0first/manifest.json", // walked before mixed/manifest.json (lexical order)
    "mixed/manifest.json",
    "mixed/zlast/manifest.json", // skipped: the rest of mixed/ is skipped after its manifest.json
    "empty/readme",
  ]);

  it("finds every image directory with skopeo's suffixes, in lexical order", async () => {
    const images = await dirSyncImages(root);
    expect(images.map((i) => [i.source.toString(), i.suffix])).toEqual([
      [`dir:${root}/busybox:1.0`, "/busybox:1.0"],
      [`dir:${root}/mixed/0first`, "/mixed/0first"],
      [`dir:${root}/mixed`, "/mixed"],
      [`dir:${root}/ns/app:2`, "/ns/app:2"],
    ]);
  });

  it("strips SOURCE as typed (a trailing slash leaves no leading one); SOURCE itself an image → its base name", async () => {
    expect((await dirSyncImages(`${root}/`)).map((i) => i.suffix)[0]).toBe("busybox:1.0");
    const one = await dirSyncImages(join(root, "busybox:1.0"));
    expect(one.map((i) => [i.source.toString(), i.suffix])).toEqual([[`dir:${root}/busybox:1.0`, "busybox:1.0"]]);
  });

  it("refuses a missing SOURCE and one without images", async () => {
    await expect(dirSyncImages(join(tmp, "missing"))).rejects.toThrow(/Invalid source directory specified: .*missing/);
    await expect(dirSyncImages(join(root, "empty"))).rejects.toSatisfy((e) => isAirlockError(e, "ERR_IMAGE_NOT_FOUND") && /No images to sync found/.test((e as Error).message));
  });
});

describe("ociSyncImages", () => {
  it("lists every named entry of index.json", async () => {
    const images = await ociSyncImages(`${FIX}/oci`);
    expect(images.map((i) => [i.source.toString(), i.suffix])).toEqual(["single", "multi", "base-a", "base-b", "docker"].map((n) => [`oci:${FIX}/oci:${n}`, n]));
  });
  it("refuses a directory that is not a layout", async () => {
    await expect(ociSyncImages(tmp)).rejects.toSatisfy((e) => isAirlockError(e, "ERR_INVALID_LAYOUT"));
  });
});

describe("repositorySyncImages with named references (no registry needed)", () => {
  const repo = DockerReference.parse("registry.example.com/ns/app");

  it("keeps digests, filters and de-duplicates tags, names per-repository destinations", async () => {
    const images = await repositorySyncImages(repo, { refs: ["1.0", D, "1.0", "2.0-rc"], selectTags: (tags) => tags.filter((t) => !t.includes("rc")), destination: "tools/app" });
    expect(images.map((i) => [i.source.toString(), i.suffix, i.name])).toEqual([
      ["docker://registry.example.com/ns/app:1.0", "registry.example.com/ns/app:1.0", "tools/app:1.0"],
      [`docker://registry.example.com/ns/app@${D}`, `registry.example.com/ns/app@${D}`, `tools/app@${D}`],
    ]);
  });

  it("refuses an entry that is neither a tag nor a digest", async () => {
    await expect(repositorySyncImages(repo, { refs: ["no/tag"] })).rejects.toSatisfy((e) => isAirlockError(e, "ERR_INVALID_REFERENCE"));
  });

  it("dockerSyncImages: one image for a tagged source; a tag and a digest together are refused", async () => {
    const images = await dockerSyncImages("docker://busybox:1.36");
    expect(images.map((i) => i.suffix)).toEqual(["docker.io/library/busybox:1.36"]);
    await expect(dockerSyncImages(`busybox:1.36@${D}`)).rejects.toThrow(/both a tag and a digest/);
    await expect(dockerSyncImages("busybox:1.36", { selectTags: () => [] })).rejects.toThrow(/No images to sync found in "busybox:1.36": the tag filters exclude it/);
  });
});
