/**
 * The air-gap round trip against the real CNCF distribution registry: images pushed to a source
 * registry are exported to a split bundle, verified, and imported into an empty registry, where
 * skopeo sees every digest of the source. A second import finds everything present.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../../../../test/harness/registry.js";
import { makeImage, makeIndex, MemoryStore } from "../../../../test/support/memory-transport.js";
import { copyImage } from "../copy/copy.js";
import { digestOf } from "../digest.js";
import { setRegistryDebugLogger } from "../registry/http.js";
import { parseImageName } from "../transports/index.js";
import "../transports/all.js";
import { exportBundle } from "./export.js";
import { importBundle } from "./import.js";
import { verifyBundle } from "./verify.js";

const FIXTURES = fileURLToPath(new URL("../../../../fixtures/oci", import.meta.url));

describe("export from one registry, import into another", () => {
  let source: RunningRegistry;
  let target: RunningRegistry;
  const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-registry-"));
  const images: { repo: string; digest: string }[] = [];

  beforeAll(async () => {
    [source, target] = await Promise.all([startRegistry({ mode: "plain" }), startRegistry({ mode: "plain" })]);
    // The fixtures (an index, a Docker v2s2 image, two images sharing a layer) via skopeo ...
    for (const n of ["single", "multi", "base-a", "base-b", "docker"]) {
      // skopeo 1.9.3 reads the Docker v2s2 image from its dir: copy, not from the OCI layout.
      const from = n === "docker" ? `dir:${FIXTURES}/../dir/docker` : `oci:${FIXTURES}:${n}`;
      execFileSync("skopeo", ["copy", "-q", "--all", "--preserve-digests", "--dest-tls-verify=false", from, `docker://${source.host}/fixtures/${n}:1`]);
      images.push({ repo: `fixtures/${n}:1`, digest: digestOf(execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${source.host}/fixtures/${n}:1`])) });
    }
    // ... and generated images with a 3 MiB layer and a shared base, via airlock's copy.
    const store = new MemoryStore();
    const base = randomBytes(300_000);
    const amd = makeImage(store, { layers: [base, randomBytes(3 * 1024 * 1024)], arch: "amd64" });
    const arm = makeImage(store, { layers: [base, randomBytes(200_000)], arch: "arm64" });
    makeIndex(store, [{ manifest: amd, arch: "amd64" }, { manifest: arm, arch: "arm64" }], "gen");
    await copyImage(store.ref("gen"), parseImageName(`docker://${source.host}/generated/app:2`), { multiArch: "all" });
    images.push({ repo: "generated/app:2", digest: store.names.get("gen") as string });
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    rmSync(tmp, { recursive: true, force: true });
  });

  it("moves every image with its digest, and a second import pushes nothing", async () => {
    const out = join(tmp, "bundle.tar");
    const exported = await exportBundle(
      images.map((i) => ({ source: parseImageName(`docker://${source.host}/${i.repo}`), name: `${source.host}/${i.repo}` })),
      out,
      { splitSize: 1024 * 1024 },
    );
    expect(exported.volumes.length).toBeGreaterThan(3);
    expect(exported.images.map((i) => i.digest)).toEqual(images.map((i) => i.digest));
    expect(exported.duplicateBlobs).toBeGreaterThanOrEqual(2);

    const report = await verifyBundle(out);
    expect(report.problems).toEqual([]);

    const destinationFor = (name: string) => parseImageName(`docker://${target.host}/mirror/${name.slice(name.indexOf("/") + 1)}`);
    const first = await importBundle(out, { destinationFor });
    expect(first.images.every((i) => i.status === "pushed")).toBe(true);
    for (const i of images) {
      const raw = execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${target.host}/mirror/${i.repo}`]);
      expect(digestOf(raw)).toBe(i.digest);
    }
    // skopeo can pull a platform image's layers from the target: the content is all there.
    execFileSync("skopeo", ["copy", "-q", "--src-tls-verify=false", "--override-arch", "arm64", `docker://${target.host}/mirror/generated/app:2`, `oci:${join(tmp, "pulled")}:x`]);

    // With everything present: one ping, then one manifest HEAD (by tag) per image, and nothing else.
    const requests: string[] = [];
    setRegistryDebugLogger((line) => requests.push(line));
    let again: Awaited<ReturnType<typeof importBundle>>;
    try {
      again = await importBundle(out, { destinationFor });
    } finally {
      setRegistryDebugLogger(undefined);
    }
    expect(again.blobsPushed).toBe(0);
    expect(again.manifestsPushed).toBe(0);
    expect(again.images.every((i) => i.status === "present")).toBe(true);
    expect(requests.filter((r) => r.startsWith(`GET http://${target.host}/v2/ `))).toHaveLength(1);
    const checks = requests.filter((r) => !r.startsWith(`GET http://${target.host}/v2/ `));
    expect(checks.sort()).toEqual(images.map((i) => `HEAD http://${target.host}/v2/mirror/${i.repo.replace(":", "/manifests/")} → 200`).sort());

    // A tag moved to another image is not "present": the import points it back.
    const moved = images[0] as { repo: string; digest: string };
    execFileSync("skopeo", ["copy", "-q", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false", `docker://${source.host}/${images[1]?.repo}`, `docker://${target.host}/mirror/${moved.repo}`]);
    const third = await importBundle(out, { destinationFor });
    expect(third.blobsPushed).toBe(0);
    expect(digestOf(execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${target.host}/mirror/${moved.repo}`]))).toBe(moved.digest);
  });
});
