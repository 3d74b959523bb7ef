import { describe, expect, it } from "vitest";
import { type Digest, digestOf } from "../digest.js";
import { Manifest } from "../manifest.js";
import { MediaType } from "../mediatype.js";
import type { ImageReference } from "../transports/types.js";
import { convertToOci, type ResolvedImage } from "./resolve.js";

const blob = (seed: string, mediaType: string) => ({ mediaType, digest: digestOf(seed) as Digest, size: seed.length });
const parse = (json: unknown, mediaType: string) => Manifest.parse(Buffer.from(JSON.stringify(json)), { mediaType });

function dockerImage(seed: string): Manifest {
  return parse(
    {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: { mediaType: MediaType.DockerConfig, size: 5, digest: digestOf(`${seed}-config`) },
      layers: [
        { mediaType: MediaType.DockerLayerGzip, size: 7, digest: digestOf(`${seed}-layer`) },
        { mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", size: 9, digest: digestOf(`${seed}-foreign`), urls: ["https://example.com/l"] },
      ],
    },
    MediaType.DockerManifest,
  );
}

function resolved(top: Manifest, children: Manifest[] = []): ResolvedImage {
  const manifests = [...children, top];
  return { name: "x:1", source: {} as ImageReference, top, manifests, blobs: manifests.flatMap((m) => (m.isIndex ? [] : m.blobs())) };
}

describe("convertToOci (export --format oci)", () => {
  it("converts a Docker v2s2 image manifest, keeping every blob and the source digest", () => {
    const src = dockerImage("a");
    const r = convertToOci(resolved(src));
    expect(r.top.mediaType).toBe(MediaType.OCIManifest);
    expect(r.top.digest).not.toBe(src.digest);
    expect(r.sourceTop?.digest).toBe(src.digest);
    const img = r.top.image;
    expect(img.config).toEqual({ ...src.image.config, mediaType: MediaType.OCIConfig });
    expect(img.layers.map((l) => l.mediaType)).toEqual([MediaType.OCILayerGzip, MediaType.OCILayerNondistributableGzip]);
    expect(img.layers.map((l) => [l.digest, l.size])).toEqual(src.image.layers.map((l) => [l.digest, l.size]));
    expect(img.layers[1]?.urls).toEqual(["https://example.com/l"]);
    expect(r.blobs.map((b) => b.digest)).toEqual(src.blobs().map((b) => b.digest));
    expect(r.manifests).toEqual([r.top]);
  });

  it("converts a Docker manifest list and its images; the OCI index lists the new digests with the platforms", () => {
    const amd = dockerImage("amd");
    const arm = dockerImage("arm");
    const list = parse(
      {
        schemaVersion: 2,
        mediaType: MediaType.DockerManifestList,
        manifests: [
          { mediaType: MediaType.DockerManifest, size: amd.bytes.length, digest: amd.digest, platform: { architecture: "amd64", os: "linux" } },
          { mediaType: MediaType.DockerManifest, size: arm.bytes.length, digest: arm.digest, platform: { architecture: "arm64", os: "linux", variant: "v8" } },
        ],
      },
      MediaType.DockerManifestList,
    );
    const r = convertToOci(resolved(list, [amd, arm]));
    expect(r.top.mediaType).toBe(MediaType.OCIIndex);
    expect(r.sourceTop?.digest).toBe(list.digest);
    const [c1, c2] = r.manifests;
    expect(r.manifests).toHaveLength(3);
    expect(r.top.index.manifests).toEqual([
      { mediaType: MediaType.OCIManifest, digest: c1?.digest, size: c1?.bytes.length, platform: { architecture: "amd64", os: "linux" } },
      { mediaType: MediaType.OCIManifest, digest: c2?.digest, size: c2?.bytes.length, platform: { architecture: "arm64", os: "linux", variant: "v8" } },
    ]);
    expect(r.platforms?.map((p) => p.digest)).toEqual([c1?.digest, c2?.digest]);
  });

  it("leaves an OCI image as it is (same object, same digest)", () => {
    const oci = parse({ schemaVersion: 2, mediaType: MediaType.OCIManifest, config: blob("c", MediaType.OCIConfig), layers: [blob("l", MediaType.OCILayerGzip)] }, MediaType.OCIManifest);
    const r = resolved(oci);
    expect(convertToOci(r)).toBe(r);
  });
});
