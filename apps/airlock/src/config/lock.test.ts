import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Descriptor, digestOf, isAirlockError, Manifest, MediaType, parseImageName, type Platform } from "@airlock/core";
import { afterAll, describe, expect, it } from "vitest";
import { VERSION } from "../version.js";
import { parseImagesConfig } from "./images.js";
import { buildLock, diffLock, type FetchedImage, formatLock, type Lock, parseLock, pinnedSourceName, readLock, writeLock } from "./lock.js";
import type { PlannedImage } from "./resolve.js";
import { ConfigFileError } from "./yaml-check.js";

/** An image manifest with one made-up layer, different per `seed`. */
function imageManifest(seed: string, mediaType: typeof MediaType.OCIManifest | typeof MediaType.DockerManifest = MediaType.OCIManifest): Manifest {
  const blob = (s: string, mt: string): Descriptor => ({ mediaType: mt, digest: digestOf(Buffer.from(s)), size: s.length });
  const config = mediaType === MediaType.OCIManifest ? MediaType.OCIConfig : MediaType.DockerConfig;
  return Manifest.fromJSON({ schemaVersion: 2, mediaType, config: blob(`config ${seed}`, config), layers: [blob(`layer ${seed}`, MediaType.OCILayerGzip)] }, mediaType);
}

/** An index over children, each with a platform; plus a BuildKit attestation manifest for the first. */
function index(children: [Manifest, Platform][], attest = true): { top: Manifest; all: Manifest[] } {
  const att = imageManifest("attestation");
  const first = children[0]?.[0] as Manifest;
  const manifests: Descriptor[] = children.map(([m, platform]) => m.descriptor({ platform }));
  if (attest) {
    manifests.push(att.descriptor({ platform: { os: "unknown", architecture: "unknown" }, annotations: { "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": first.digest } }));
  }
  const top = Manifest.fromJSON({ schemaVersion: 2, mediaType: MediaType.OCIIndex, manifests }, MediaType.OCIIndex);
  return { top, all: [...children.map(([m]) => m), ...(attest ? [att] : [])] };
}

const amd64 = imageManifest("amd64");
const arm64 = imageManifest("arm64");
const s390x = imageManifest("s390x");
const multi = index([
  [amd64, { os: "linux", architecture: "amd64" }],
  [arm64, { os: "linux", architecture: "arm64", variant: "v8" }],
  [s390x, { os: "linux", architecture: "s390x" }],
]);
const single = imageManifest("single", MediaType.DockerManifest);

function planned(bundleName: string, sourceName: string, platforms: PlannedImage["platforms"] = "all", keepIndex = false): PlannedImage {
  const source = sourceName.startsWith("docker://") ? { toString: () => sourceName } : parseImageName(sourceName);
  return { bundleName, source: source as PlannedImage["source"], sourceName, platforms, keepIndex, systemContext: {}, origin: "images.yaml:3:5" };
}

const NOW = new Date("2025-01-02T03:04:05.000Z");
const fetchFrom =
  (table: Record<string, FetchedImage>) =>
  async (image: PlannedImage): Promise<FetchedImage> => {
    const f = table[image.sourceName];
    if (f === undefined) throw new Error(`no such image ${image.sourceName}`);
    return f;
  };

describe("buildLock", () => {
  it("records every image with its top-level manifest and the child manifests that move", async () => {
    const images = [
      planned("docker.io/library/multi:1", "docker://docker.io/library/multi:1"),
      planned("docker.io/library/multi:arm", "docker://docker.io/library/multi:arm", [{ os: "linux", architecture: "arm64" }]),
      planned("docker.io/library/multi:amd", "docker://docker.io/library/multi:amd", [{ os: "linux", architecture: "amd64" }]),
      planned("docker.io/library/multi:keep", "docker://docker.io/library/multi:keep", [{ os: "linux", architecture: "arm64" }], true),
      planned("team/single:1", "oci:./layout:single", [{ os: "linux", architecture: "amd64" }]),
    ];
    const fetched = { manifest: multi.top, children: multi.all };
    const lock = await buildLock(
      images,
      fetchFrom({
        "docker://docker.io/library/multi:1": fetched,
        "docker://docker.io/library/multi:arm": fetched,
        "docker://docker.io/library/multi:amd": fetched,
        "docker://docker.io/library/multi:keep": { manifest: multi.top },
        "oci:./layout:single": { manifest: single, platform: { os: "linux", architecture: "amd64" } },
      }),
      { naming: "strip-registry", now: NOW },
    );
    expect(lock).toMatchObject({ version: 1, generated: "2025-01-02T03:04:05.000Z", tool: `airlock ${VERSION}`, naming: "strip-registry" });
    const [all, arm, amd, keep, one] = lock.images;
    expect(all).toEqual({
      name: "docker.io/library/multi:1",
      source: "docker://docker.io/library/multi:1",
      digest: multi.top.digest,
      mediaType: MediaType.OCIIndex,
      size: multi.top.bytes.length,
      platforms: "all",
      keepIndex: false,
      manifests: [
        { platform: "linux/amd64", digest: amd64.digest, mediaType: MediaType.OCIManifest, size: amd64.bytes.length },
        { platform: "linux/arm64/v8", digest: arm64.digest, mediaType: MediaType.OCIManifest, size: arm64.bytes.length },
        { platform: "linux/s390x", digest: s390x.digest, mediaType: MediaType.OCIManifest, size: s390x.bytes.length },
        { platform: "unknown/unknown", digest: multi.all[3]?.digest, mediaType: MediaType.OCIManifest, size: multi.all[3]?.bytes.length },
      ],
    });
    // arm64 matches arm64/v8; the attestation describes amd64, so it goes with amd64 only.
    expect(arm?.manifests?.map((m) => m.platform)).toEqual(["linux/arm64/v8"]);
    expect(arm?.platforms).toEqual(["linux/arm64"]);
    expect(amd?.manifests?.map((m) => m.platform)).toEqual(["linux/amd64", "unknown/unknown"]);
    expect(keep?.manifests).toHaveLength(4);
    expect(keep?.keepIndex).toBe(true);
    expect(one).toEqual({
      name: "team/single:1",
      source: "oci:./layout:single",
      digest: single.digest,
      mediaType: MediaType.DockerManifest,
      size: single.bytes.length,
      platforms: ["linux/amd64"],
      keepIndex: false,
      platform: "linux/amd64",
    });
  });

  it("names the platforms an index has when a requested one is missing", async () => {
    const err = await buildLock([planned("a:1", "docker://docker.io/library/a:1", [{ os: "linux", architecture: "ppc64le" }])], async () => ({ manifest: multi.top }), { naming: "keep-path" }).catch((e) => e);
    expect(isAirlockError(err, "ERR_NO_MATCHING_PLATFORM")).toBe(true);
    expect(err.message).toBe("images.yaml:3:5: docker://docker.io/library/a:1 has no linux/ppc64le image; its index has linux/amd64, linux/arm64/v8, linux/s390x; change platforms:");
  });

  it("refuses a single-platform image of another platform", async () => {
    const err = await buildLock([planned("a:1", "docker://docker.io/library/a:1", [{ os: "linux", architecture: "arm64" }])], async () => ({ manifest: single, platform: { os: "linux", architecture: "amd64" } }), {
      naming: "keep-path",
    }).catch((e) => e);
    expect(err.message).toMatch(/is a single-platform image for linux\/amd64, not linux\/arm64/);
  });

  it("checks fetched children against the index", async () => {
    const err = await buildLock([planned("a:1", "docker://docker.io/library/a:1")], async () => ({ manifest: multi.top, children: [amd64] }), { naming: "keep-path" }).catch((e) => e);
    expect(err.message).toMatch(/child manifest sha256:[0-9a-f]{64} was not fetched/);
  });

  it("reports failing images to onError and locks the others", async () => {
    const failed: string[] = [];
    const lock = await buildLock(
      [planned("a:1", "docker://docker.io/library/a:1"), planned("b:1", "docker://docker.io/library/b:1")],
      fetchFrom({ "docker://docker.io/library/b:1": { manifest: single } }),
      { naming: "keep-path", onError: (image, error) => failed.push(`${image.bundleName}: ${error.code}: ${error.message}`) },
    );
    expect(lock.images.map((i) => i.name)).toEqual(["b:1"]);
    expect(failed).toEqual(["a:1: ERR_REGISTRY: images.yaml:3:5: docker://docker.io/library/a:1: no such image docker://docker.io/library/a:1"]);
  });
});

describe("images.lock.yaml", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function sampleLock(): Promise<Lock> {
    return buildLock(
      [
        planned("docker.io/library/multi:1", "docker://docker.io/library/multi:1", [{ os: "linux", architecture: "arm64" }]),
        planned("team/single:1", "oci:./layout:single"),
      ],
      fetchFrom({ "docker://docker.io/library/multi:1": { manifest: multi.top }, "oci:./layout:single": { manifest: single, platform: { os: "linux", architecture: "amd64" } } }),
      { naming: "keep-path", now: NOW },
    );
  }

  it("round-trips through writeLock and readLock", async () => {
    const dir = await mkdtemp(join(tmpdir(), "airlock-lock-"));
    dirs.push(dir);
    const lock = await sampleLock();
    const path = join(dir, "images.lock.yaml");
    await writeLock(path, lock);
    expect(await readLock(path)).toEqual(lock);
    const text = await readFile(path, "utf8");
    expect(text).toMatch(/^# images\.lock\.yaml: every image of images\.yaml pinned to digests/);
    expect(text).toContain("    platforms: [ linux/arm64 ]\n");
    expect(text).toContain(`    digest: ${multi.top.digest}\n`);
    // Atomic: no temporary file is left beside it.
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(dir)).toEqual(["images.lock.yaml"]);
  });

  it("leaves a lock that pins the same images as it is (no new time, no diff); rewrites it when an image moved", async () => {
    const dir = await mkdtemp(join(tmpdir(), "airlock-lock-"));
    dirs.push(dir);
    const path = join(dir, "images.lock.yaml");
    const lock = await sampleLock();
    expect(await writeLock(path, lock)).toBe(true);
    const before = await readFile(path, "utf8");
    expect(await writeLock(path, { ...lock, generated: "2030-01-01T00:00:00.000Z", tool: "airlock 9.9.9" })).toBe(false);
    expect(await readFile(path, "utf8")).toBe(before);
    const moved = { ...lock, images: lock.images.map((i, n) => (n === 1 ? { ...i, digest: `sha256:${"0".repeat(64)}` as typeof i.digest } : i)) };
    expect(await writeLock(path, moved)).toBe(true);
    expect(await readFile(path, "utf8")).toContain(`sha256:${"0".repeat(64)}`);
  });

  it("reports a missing lock with what to do", async () => {
    const err = await readLock("/nonexistent/images.lock.yaml").catch((e) => e);
    expect(isAirlockError(err, "ERR_IO")).toBe(true);
    expect(err.message).toMatch(/no such file; run airlock lock first/);
  });

  it("checks a lock strictly, with line and column", async () => {
    const good = formatLock(await sampleLock());
    const broken = good
      .replace(/^version: 1$/m, "version: 2")
      .replace(`digest: ${multi.top.digest}`, "digest: sha256:abc")
      .replace(/size: \d+/, "size: -1")
      .replace("naming: keep-path", "naming: flat\nextra: 1");
    let err: unknown;
    try {
      parseLock(broken, "images.lock.yaml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigFileError);
    const lines = broken.split("\n");
    const at = (needle: string) => {
      const i = lines.findIndex((l) => l.includes(needle));
      return `${i + 1}:${(lines[i] as string).indexOf(needle.split(": ")[1] ?? needle) + 1}`;
    };
    const got = (err as ConfigFileError).issues.map((i) => `${i.line}:${i.col} ${i.message.split(":")[0]}`);
    expect(got).toEqual([
      `${at("version: 2")} version must be 1; this lock was written by another airlock`,
      `${at("naming: flat")} naming must be one of keep-path, strip-registry, found "flat"`,
      `${at("extra")} the lock`,
      `${at("digest: sha256:abc")} images[0].digest`,
      `${at("size: -1")} images[0].size must be an integer of at least 0, found the number "-1"`,
    ]);
  });

  it("requires manifests: for an index and refuses it for an image manifest", async () => {
    const good = formatLock(await sampleLock());
    const noChildren = good.replace(/ {4}manifests:\n( {6}.*\n)+/, "");
    expect(() => parseLock(noChildren, "l.yaml")).toThrow(/l\.yaml:\d+:5: images\[0\]: an index needs manifests:/);
  });

  it("refuses two images with the same name", async () => {
    const lock = await sampleLock();
    lock.images.push({ ...(lock.images[1] as Lock["images"][number]) });
    expect(() => parseLock(formatLock(lock), "l.yaml")).toThrow(/images\[2\]: "team\/single:1" is already locked by images\[1\]/);
  });

  it("survives a file written by hand with comments and flow style", async () => {
    const file = join(await mkdtemp(join(tmpdir(), "airlock-lock-")), "l.yaml");
    dirs.push(file.slice(0, file.lastIndexOf("/")));
    await writeFile(
      file,
      `# hand-made\nversion: 1\ngenerated: 2025-01-01T00:00:00Z\ntool: airlock 0.0.1\nnaming: keep-path\nimages:\n  - { name: "a:1", source: "docker://docker.io/library/a:1", digest: "${single.digest}", mediaType: ${MediaType.DockerManifest}, size: 12, platforms: all, keepIndex: false }\n`,
    );
    const lock = await readLock(file);
    expect(lock.images[0]).toMatchObject({ name: "a:1", size: 12, platforms: "all" });
  });
});

describe("diffLock", () => {
  const base: Lock = {
    version: 1,
    generated: "2025-01-01T00:00:00.000Z",
    tool: "airlock 0.1.0",
    naming: "keep-path",
    images: [
      { name: "docker.io/library/a:1", source: "docker://docker.io/library/a:1", digest: amd64.digest, mediaType: MediaType.OCIManifest, size: 1, platforms: "all", keepIndex: false },
      { name: "docker.io/library/b:1", source: "docker://docker.io/library/b:1", digest: arm64.digest, mediaType: MediaType.OCIManifest, size: 1, platforms: ["linux/amd64"], keepIndex: false },
      { name: "team/c:1", source: "oci:./l:c", digest: s390x.digest, mediaType: MediaType.OCIManifest, size: 1, platforms: "all", keepIndex: false },
    ],
  };

  it("finds nothing when only the time and tool differ", () => {
    expect(diffLock(base, { ...base, generated: "2030-01-01T00:00:00.000Z", tool: "airlock 9" })).toEqual([]);
  });

  it("names every drift", () => {
    const [a, b, c] = base.images as [Lock["images"][number], Lock["images"][number], Lock["images"][number]];
    const fresh: Lock = {
      ...base,
      naming: "strip-registry",
      images: [
        { ...a, digest: single.digest },
        { ...b, platforms: ["linux/amd64"], keepIndex: true },
        { ...c, source: "oci:./other:c", digest: amd64.digest },
        { ...a, name: "docker.io/library/new:1", source: "docker://docker.io/library/new:1" },
      ],
    };
    expect(diffLock({ ...base, images: [...base.images, { ...a, name: "docker.io/library/gone:1" }] }, fresh)).toEqual([
      { kind: "digest", name: "docker.io/library/a:1", message: `docker.io/library/a:1: the tag now points to ${single.digest}, locked ${amd64.digest}` },
      { kind: "platforms", name: "docker.io/library/b:1", message: "docker.io/library/b:1: platforms changed from linux/amd64 to linux/amd64 (keepIndex)" },
      { kind: "source", name: "team/c:1", message: "team/c:1: the source changed from oci:./l:c to oci:./other:c" },
      { kind: "digest", name: "team/c:1", message: `team/c:1: the source now has ${amd64.digest}, locked ${s390x.digest}` },
      { kind: "added", name: "docker.io/library/new:1", message: "docker.io/library/new:1: selected by images.yaml (docker://docker.io/library/new:1) but not in the lock; run airlock lock to add it" },
      { kind: "removed", name: "docker.io/library/gone:1", message: "docker.io/library/gone:1: in the lock but no longer selected by images.yaml; run airlock lock to remove it" },
      { kind: "source", name: "", message: "destination naming changed from keep-path to strip-registry" },
    ]);
  });
});

describe("pinnedSourceName", () => {
  it.each([
    ["docker://docker.io/library/a:1", "docker://docker.io/library/a@"],
    ["docker://localhost:5000/x/a:v1", "docker://localhost:5000/x/a@"],
    ["docker://localhost:5000/x/a", "docker://localhost:5000/x/a@"],
    [`docker://r.io/a@sha256:${"e".repeat(64)}`, "docker://r.io/a@"],
  ])("%s", (source, want) => {
    expect(pinnedSourceName({ name: "n", source, digest: amd64.digest, mediaType: MediaType.OCIManifest, size: 1, platforms: "all", keepIndex: false })).toBe(want + amd64.digest);
  });

  it("leaves other transports as they are", () => {
    expect(pinnedSourceName({ name: "n", source: "oci:./l:c", digest: amd64.digest, mediaType: MediaType.OCIManifest, size: 1, platforms: "all", keepIndex: false })).toBe("oci:./l:c");
  });
});

describe("lock from images.yaml", () => {
  it("carries the naming mode of the file", async () => {
    const config = parseImagesConfig("version: 1\ndestination: { naming: strip-registry }\nimages:\n  - source: oci:./l:x\n    as: x:1\n", "/p/images.yaml");
    const lock = await buildLock([planned("x:1", "oci:./l:x")], async () => ({ manifest: single }), { naming: config.destination.naming, now: NOW });
    expect(parseLock(formatLock(lock), "l.yaml").naming).toBe("strip-registry");
  });
});

describe("lock of manifests/examples/fixtures.yaml through the real oci: and dir: transports", () => {
  it("pins every fixture to the digest its layout records", async () => {
    const { fileURLToPath } = await import("node:url");
    const { loadImagesFile } = await import("./images.js");
    const { resolveImages } = await import("./resolve.js");
    const root = fileURLToPath(new URL("../../../../", import.meta.url));
    const config = await loadImagesFile(`${root}manifests/examples/fixtures.yaml`);
    const images = await resolveImages(config, { listTags: async () => [] });
    const lock = await buildLock(
      images,
      async (image) => {
        const src = await image.source.newSource(image.systemContext);
        try {
          const manifest = await src.getManifest();
          const children = manifest.isIndex ? await Promise.all(manifest.index.manifests.map((d) => src.getManifest(d.digest))) : undefined;
          return children === undefined ? { manifest } : { manifest, children };
        } finally {
          await src.close();
        }
      },
      { naming: config.destination.naming, now: NOW },
    );
    // The digests, read independently from the layout's index.json.
    const layout = JSON.parse(await readFile(`${root}fixtures/oci/index.json`, "utf8")) as { manifests: Descriptor[] };
    const byName = new Map(layout.manifests.map((d) => [d.annotations?.["org.opencontainers.image.ref.name"], d]));
    expect(lock.images.map((i) => [i.name, i.source, i.digest, i.size])).toEqual(
      config.images.map((e) => {
        const src = e.kind === "transport" ? e.sourceAsWritten : "";
        const d = byName.get(src.startsWith("oci:") ? src.slice(src.lastIndexOf(":") + 1) : "docker") as Descriptor;
        return [e.kind === "transport" ? `${e.as.repository}:${e.as.tag}` : "", src, d.digest, d.size];
      }),
    );
    const arm = lock.images.find((i) => i.name === "fixtures/multi:1.0-arm64");
    expect(arm?.manifests?.map((m) => m.platform)).toEqual(["linux/arm64/v8"]);
    expect(lock.images.find((i) => i.name === "fixtures/multi:1.0")?.manifests).toHaveLength(2);
    expect(parseLock(formatLock(lock), "images.lock.yaml")).toEqual(lock);
  });
});
