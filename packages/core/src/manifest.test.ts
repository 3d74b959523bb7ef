import { describe, expect, it } from "vitest";
import { digestOf } from "./digest.js";
import { Manifest } from "./manifest.js";
import { MediaType } from "./mediatype.js";
import { normalizePlatform, parsePlatform, platformMatches } from "./platform.js";

const d = (s: string) => digestOf(s);
const image = { schemaVersion: 2, mediaType: MediaType.OCIManifest, config: { mediaType: MediaType.OCIConfig, digest: d("c"), size: 1 }, layers: [{ mediaType: MediaType.OCILayerGzip, digest: d("l"), size: 1 }] };

describe("Manifest.parse", () => {
  it("keeps the exact bytes and their digest (never re-serialised)", () => {
    const text = `{\n  "schemaVersion": 2,   "mediaType": "${MediaType.OCIManifest}",\n "config": ${JSON.stringify(image.config)}, "layers": ${JSON.stringify(image.layers)} }`;
    const m = Manifest.parse(Buffer.from(text));
    expect(Buffer.from(m.bytes).toString()).toBe(text);
    expect(m.digest).toBe(digestOf(text));
    expect(m.mediaType).toBe(MediaType.OCIManifest);
    expect(m.blobs().map((b) => b.digest)).toEqual([d("c"), d("l")]);
  });

  it("takes the media type from the source when the JSON has none", () => {
    const { mediaType: _, ...bare } = image;
    const m = Manifest.parse(Buffer.from(JSON.stringify(bare)), { mediaType: `${MediaType.DockerManifest}; charset=utf-8` });
    expect(m.mediaType).toBe(MediaType.DockerManifest);
  });

  it("guesses an index without a media type", () => {
    const m = Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] })));
    expect(m.isIndex).toBe(true);
  });

  it("checks the expected digest", () => {
    expect(() => Manifest.parse(Buffer.from(JSON.stringify(image)), { expected: d("other") })).toThrow(/expected sha256:/);
  });

  it.each([
    ["schema 1", { schemaVersion: 1, name: "x", tag: "y", fsLayers: [] }, /schema 1/],
    ["unknown media type", { ...image, mediaType: "application/vnd.example+json" }, /unsupported media type "application\/vnd.example\+json"/],
    ["bad layer digest", { ...image, layers: [{ mediaType: MediaType.OCILayerGzip, digest: "sha256:nothex", size: 1 }] }, /layers\[0\]: invalid sha256 digest/],
    ["negative size", { ...image, config: { ...image.config, size: -1 } }, /config: size/],
    ["not an object", [1, 2], /not a JSON object/],
    ["served type differs from the declared one", image, /says application\/vnd.oci.image.manifest.v1\+json but it was served as/],
  ])("refuses %s", (_name, json, re) => {
    const mt = _name.startsWith("served") ? MediaType.DockerManifest : undefined;
    expect(() => Manifest.parse(Buffer.from(JSON.stringify(json)), { mediaType: mt })).toThrow(re);
  });

  it("refuses bytes that are not JSON", () => {
    expect(() => Manifest.parse(Buffer.from("{nope"))).toThrow(/not valid JSON/);
  });
});

describe("platforms", () => {
  it.each([
    [{ os: "linux", architecture: "arm64" }, { os: "linux", architecture: "arm64", variant: "v8" }, true],
    [{ os: "linux", architecture: "arm64", variant: "v8" }, { os: "linux", architecture: "arm64" }, true],
    [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }, false],
    [{ os: "linux", architecture: "arm", variant: "v6" }, { os: "linux", architecture: "arm", variant: "v7" }, false],
    [{ os: "linux", architecture: "arm" }, { os: "linux", architecture: "arm", variant: "v6" }, true],
    [{ os: "windows", architecture: "amd64" }, { os: "linux", architecture: "amd64" }, false],
    [{ os: "linux", architecture: "x86_64" }, { os: "linux", architecture: "amd64" }, true],
  ])("%o matches %o: %s", (want, have, ok) => {
    expect(platformMatches(want, have)).toBe(ok);
  });

  it("parses and normalises", () => {
    expect(parsePlatform("linux/arm64/v8")).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(normalizePlatform(parsePlatform("linux/arm64/v8"))).toEqual({ os: "linux", architecture: "arm64" });
    expect(() => parsePlatform("linux")).toThrow(/OS\/ARCH/);
  });
});
