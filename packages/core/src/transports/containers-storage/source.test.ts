import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Digest } from "../../digest.js";
import { Manifest } from "../../manifest.js";
import { updatedIndex } from "./source.js";

const d = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}` as Digest;
const image = (s: string) => Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: d(s), size: 1 }, layers: [] })));

describe("updatedIndex (a stored list once its images are copied)", () => {
  const a = d("a");
  const b = d("b");
  // Written by some tool other than Go: annotations unsorted, fields out of Go's order, an unknown field.
  const stored = Manifest.parse(
    Buffer.from(
      JSON.stringify({
        annotations: { z: "1", a: "<2>" },
        manifests: [
          { platform: { os: "linux", architecture: "amd64" }, annotations: { y: "1", b: "2" }, size: 10, digest: a, mediaType: "application/vnd.oci.image.manifest.v1+json" },
          { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: b, size: 20, platform: { architecture: "arm64", os: "linux", variant: "v8" } },
        ],
        mediaType: "application/vnd.oci.image.index.v1+json",
        schemaVersion: 2,
        extra: true,
      }),
    ),
  );

  it("is undefined when no image changed", () => {
    expect(updatedIndex(stored, new Map(), "x")).toBeUndefined();
  });

  it("names each changed image's copied manifest, in Go's field order with sorted maps and Go's escaping", () => {
    const copied = image("copied");
    const out = updatedIndex(stored, new Map([[a, copied]]), "x");
    expect(Buffer.from(out?.bytes ?? []).toString()).toBe(
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
        `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"${copied.digest}","size":${copied.bytes.length},"annotations":{"b":"2","y":"1"},"platform":{"architecture":"amd64","os":"linux"}},` +
        `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"${b}","size":20,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}],` +
        `"annotations":{"a":"\\u003c2\\u003e","z":"1"}}`,
    );
  });

  it("writes a Docker manifest list's entries as Schema2List does (size before digest)", () => {
    const list = Manifest.parse(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.docker.distribution.manifest.list.v2+json",
          manifests: [{ mediaType: "application/vnd.docker.distribution.manifest.v2+json", size: 10, digest: a, platform: { architecture: "amd64", os: "linux" } }],
        }),
      ),
    );
    const copied = image("v2");
    const out = updatedIndex(list, new Map([[a, copied]]), "x");
    expect(Buffer.from(out?.bytes ?? []).toString()).toBe(
      `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"${copied.mediaType}","size":${copied.bytes.length},"digest":"${copied.digest}","platform":{"architecture":"amd64","os":"linux"}}]}`,
    );
  });
});
