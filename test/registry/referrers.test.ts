/**
 * The referrers API (distribution spec "Listing Referrers": `GET /v2/NAME/referrers/DIGEST`,
 * HTTP 200 with an image index) against a server that has it — airlock serve's registry
 * (@airlock/registry) on an OCI layout store. docker-registry 2.8 lacks the API, so elsewhere
 * only the tag-schema fallback is exercised.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
 */
import { createHash } from "node:crypto";
import { mkdtempSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { type Digest, MediaType, RegistryClient, setRegistryDebugLogger } from "@airlock/core";
import { createRegistryServer, LayoutRegistryStore, type RegistryServer } from "@airlock/registry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}` as Digest;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe("RegistryRepository.referrers against airlock serve's registry", () => {
  const dir = mkdtempSync(join(tmpdir(), "airlock-referrers-"));
  let server: RegistryServer;
  let host: string;
  beforeAll(async () => {
    const store = await LayoutRegistryStore.open(join(dir, "store"));
    server = createRegistryServer({ store });
    host = (await server.listen("127.0.0.1:0")).host;
  });
  afterAll(async () => {
    setRegistryDebugLogger(undefined);
    await server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("lists the artifacts whose subject is an image, filters by artifactType, and needs no tag-schema fallback", async () => {
    const repo = new RegistryClient(host).repository("app", "push");
    const put = async (bytes: Uint8Array) => {
      const digest = sha(bytes);
      await repo.putBlob({ digest, size: bytes.length }, Readable.from([bytes]));
      return { digest, size: bytes.length };
    };
    // The image.
    const config = await put(json({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
    const layer = await put(Buffer.from("a layer"));
    const image = json({
      schemaVersion: 2,
      mediaType: MediaType.OCIManifest,
      config: { mediaType: MediaType.OCIConfig, ...config },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
    });
    await repo.putManifest("1.0", image, MediaType.OCIManifest);
    const subject = { mediaType: MediaType.OCIManifest, digest: sha(image), size: image.length };

    // Two artifacts that refer to it, of different artifactType, pushed by digest only.
    const empty = await put(Buffer.from("{}"));
    const artifact = (artifactType: string, content: string) => async () => {
      const blob = await put(Buffer.from(content));
      const bytes = json({
        schemaVersion: 2,
        mediaType: MediaType.OCIManifest,
        artifactType,
        config: { mediaType: "application/vnd.oci.empty.v1+json", ...empty },
        layers: [{ mediaType: "application/octet-stream", ...blob }],
        subject,
        annotations: { "org.example.kind": artifactType },
      });
      const digest = sha(bytes);
      await repo.putManifest(digest, bytes, MediaType.OCIManifest);
      return { digest, size: bytes.length };
    };
    const sbom = await artifact("application/vnd.example.sbom+json", "an sbom")();
    const sig = await artifact("application/vnd.example.signature", "a signature")();

    const requests: string[] = [];
    setRegistryDebugLogger((line) => requests.push(line));
    const all = await repo.referrers(subject.digest);
    expect(all.map((d) => d.digest).sort()).toEqual([sbom.digest, sig.digest].sort());
    const bySbom = all.find((d) => d.digest === sbom.digest);
    expect(bySbom).toEqual({
      mediaType: MediaType.OCIManifest,
      digest: sbom.digest,
      size: sbom.size,
      artifactType: "application/vnd.example.sbom+json",
      annotations: { "org.example.kind": "application/vnd.example.sbom+json" },
    });
    expect(all.find((d) => d.digest === sig.digest)).toMatchObject({ size: sig.size, artifactType: "application/vnd.example.signature" });

    const filtered = await repo.referrers(subject.digest, { artifactType: "application/vnd.example.signature" });
    expect(filtered.map((d) => d.digest)).toEqual([sig.digest]);
    expect(await repo.referrers(subject.digest, { artifactType: "application/vnd.example.none" })).toEqual([]);
    // An image nothing refers to has no referrers (200 with an empty index, not a 404).
    expect(await repo.referrers(sbom.digest)).toEqual([]);
    setRegistryDebugLogger(undefined);

    // Every answer came from the referrers API (200); the tag schema (sha256-HEX) was never read.
    const referrerCalls = requests.filter((l) => l.includes("/referrers/"));
    expect(referrerCalls.length).toBe(4);
    for (const l of referrerCalls) expect(l).toMatch(/→ 200$/);
    expect(requests.filter((l) => /\/manifests\/sha256-/.test(l))).toEqual([]);
    // The server answers in one page (no Link), so pagination is not exercised here.
  });
});
