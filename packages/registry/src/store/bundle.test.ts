/**
 * Serving a bundle whose image names carry a registry host with a port (as export names images
 * from such a registry): every image is served under the name `airlock import --to HOST` gives it,
 * keep-path or strip-registry (the bundle's recorded naming, or the caller's), and skopeo pulls it
 * back with the digest it was exported with.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { exportBundle, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, serve } from "../serve.js";

const execFileP = promisify(execFile);
const FIXTURES = join(import.meta.dirname, "..", "..", "..", "..", "fixtures", "oci");
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const MULTI = "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01";
const BASE_A = "sha256:ec3bbc6cac42279c72c4dab2711918c31ef1fb8917d7e95190983ad50a18776b";
const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** The digest of the manifest `ref` names, from its raw bytes (skopeo inspect --raw). */
async function rawDigest(ref: string, ...flags: string[]): Promise<string> {
  const { stdout } = await execFileP("skopeo", ["inspect", ...flags, "--raw", ref], { encoding: "buffer", timeout: 60_000 });
  return digestOf(stdout);
}

const dir = mkdtempSync(join(tmpdir(), "airlock-bundle-names-"));
const bundle = join(dir, "bundle.tar");
const stripped = join(dir, "stripped.tar");
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

beforeAll(async () => {
  const images = [
    { source: parseImageName(`oci:${FIXTURES}:single`), name: "127.0.0.1:5000/team/app:1" },
    { source: parseImageName(`oci:${FIXTURES}:multi`), name: "Registry.Example.com:5000/team/multi:2.0" },
    { source: parseImageName(`oci:${FIXTURES}:base-a`), name: `localhost:5000/pinned@${BASE_A}` },
    { source: parseImageName(`oci:${FIXTURES}:base-a`), name: "docker.io/library/base:1" },
    { source: parseImageName(`oci:${FIXTURES}:single`), name: "team/as-name:3" },
  ];
  await exportBundle(images, bundle);
  // Two registries holding team/app: the same name once the registry is stripped.
  await exportBundle(
    [
      { source: parseImageName(`oci:${FIXTURES}:single`), name: "127.0.0.1:5000/team/app:1" },
      { source: parseImageName(`oci:${FIXTURES}:base-a`), name: "other.example:5000/team/app:1" },
    ],
    stripped,
    { lock: { version: 1, naming: "strip-registry", images: [] } },
  );
});

describe("a bundle served with keep-path naming (the default)", () => {
  let s: RunningServer;
  const warnings: string[] = [];
  beforeAll(async () => {
    s = await serve({ bundle: [bundle], listen: "127.0.0.1:0", log: (l) => l.startsWith("warning:") && warnings.push(l) });
  });
  afterAll(() => s?.close());

  it("names every image as import --to HOST would, and says so", async () => {
    expect(s.bundle?.naming).toBe("keep-path");
    expect(s.bundle?.images).toEqual([
      { name: "127.0.0.1:5000/team/app:1", served: "127.0.0.1_5000/team/app:1" },
      { name: "Registry.Example.com:5000/team/multi:2.0", served: "registry.example.com_5000/team/multi:2.0" },
      { name: `localhost:5000/pinned@${BASE_A}`, served: `localhost_5000/pinned@${BASE_A}` },
      { name: "docker.io/library/base:1", served: "docker.io/library/base:1" },
      { name: "team/as-name:3", served: "team/as-name:3" },
    ]);
    expect(warnings).toEqual([]);
    const catalog = (await (await fetch(`${s.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(catalog.repositories).toEqual(["127.0.0.1_5000/team/app", "docker.io/library/base", "localhost_5000/pinned", "registry.example.com_5000/team/multi", "team/as-name"]);
    // An image pinned by digest only has no tag, but is pulled by its digest.
    expect(await (await fetch(`${s.url}/v2/localhost_5000/pinned/tags/list`)).json()).toEqual({ name: "localhost_5000/pinned", tags: [] });
  });

  it("skopeo pulls each image with the digest it was exported with", async () => {
    const flags = ["--tls-verify=false"];
    expect(await rawDigest(`docker://${s.host}/127.0.0.1_5000/team/app:1`, ...flags)).toBe(SINGLE);
    expect(await rawDigest(`docker://${s.host}/localhost_5000/pinned@${BASE_A}`, ...flags)).toBe(BASE_A);
    expect(await rawDigest(`docker://${s.host}/docker.io/library/base:1`, ...flags)).toBe(BASE_A);
    const out = join(dir, "out");
    await execFileP("skopeo", ["copy", "-q", "--all", "--src-tls-verify=false", `docker://${s.host}/registry.example.com_5000/team/multi:2.0`, `oci:${out}:multi`], { timeout: 60_000 });
    expect(await rawDigest(`oci:${out}:multi`)).toBe(MULTI);
    // The name with its port is not a repository a client can ask for.
    expect((await fetch(`${s.url}/v2/127.0.0.1:5000/team/app/manifests/1`)).status).toBe(400);
  });
});

describe("a bundle served with strip-registry naming", () => {
  it("follows the naming the bundle's lock records, serves the first of two images that become one name, and warns", async () => {
    const warnings: string[] = [];
    const s = await serve({ bundle: [stripped], listen: "127.0.0.1:0", log: (l) => l.startsWith("warning:") && warnings.push(l) });
    try {
      expect(s.bundle?.naming).toBe("strip-registry");
      expect(s.bundle?.images).toEqual([{ name: "127.0.0.1:5000/team/app:1", served: "team/app:1" }]);
      expect(warnings).toEqual([expect.stringMatching(/"127\.0\.0\.1:5000\/team\/app:1" and "other\.example:5000\/team\/app:1" .* both served as team\/app:1/)]);
      expect(await rawDigest(`docker://${s.host}/team/app:1`, "--tls-verify=false")).toBe(SINGLE);
    } finally {
      await s.close();
    }
  });

  it("is what the caller asks for over the recorded naming, and refused for a store directory", async () => {
    const s = await serve({ bundle: [bundle], naming: "strip-registry", listen: "127.0.0.1:0" });
    try {
      expect(s.bundle?.images.map((i) => i.served)).toEqual(["team/app:1", "team/multi:2.0", `pinned@${BASE_A}`, "library/base:1", "team/as-name:3"]);
      const r = await fetch(`${s.url}/v2/team/multi/manifests/2.0`, { method: "HEAD", headers: { Accept: "application/vnd.oci.image.index.v1+json" } });
      expect(r.headers.get("docker-content-digest")).toBe(MULTI);
    } finally {
      await s.close();
    }
    const kept = await serve({ bundle: [stripped], naming: "keep-path", listen: "127.0.0.1:0" });
    try {
      expect(kept.bundle?.images.map((i) => i.served)).toEqual(["127.0.0.1_5000/team/app:1", "other.example_5000/team/app:1"]);
    } finally {
      await kept.close();
    }
    await expect(serve({ root: join(dir, "store"), naming: "keep-path", listen: "127.0.0.1:0" })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
  });
});
