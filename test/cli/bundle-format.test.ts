/**
 * `export --format oci`: images with Docker media types converted to OCI, so that skopeo (whose
 * OCI layout code skips Docker media types) reads every image of the bundle; without it the
 * manifests and digests are kept as they are.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { runBin } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const DOCKER = "sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625"; // fixtures/oci:docker, a Docker v2s2 manifest
const MULTI = "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01"; // fixtures/oci:multi, an OCI index
const sha = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const skopeo = (...args: string[]) => promisify(execFile)("skopeo", args, { encoding: "utf8" });

const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-format-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const yaml = join(tmp, "images.yaml");
writeFileSync(yaml, `version: 1\nimages:\n  - source: oci:${FIX}/oci:docker\n    as: fx/docker:1.0\n  - source: oci:${FIX}/oci:multi\n    as: fx/multi:1.0\n`);

describe("export --format oci", () => {
  it("without it, a Docker-typed image keeps its digest, and skopeo cannot address it in the bundle: a warning says so and names --format oci", async () => {
    const out = join(tmp, "kept.tar");
    const r = await runBin(["export", "-f", yaml, "-o", out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`fx/docker:1.0 ${DOCKER}\n`);
    await expect(skopeo("inspect", "--raw", `oci-archive:${out}:fx/docker:1.0`)).rejects.toThrow(/no descriptor found/);
    const warnings = r.stderr.split("\n").filter((l) => l.startsWith("warning: "));
    expect(warnings).toHaveLength(1); // fx/multi:1.0 is an OCI index: nothing to say
    expect(warnings[0]).toMatch(/^warning: fx\/docker:1\.0 has a Docker-typed manifest \(application\/vnd\.docker\.distribution\.manifest\.v2\+json\).*skopeo 1\.9 and umoci do not take it from an OCI layout; export with --format oci/);
  });

  it("with it, skopeo reads and copies the converted image; blobs keep their bytes, OCI images their digest", async () => {
    const out = join(tmp, "oci.tar");
    const r = await runBin(["export", "--format", "oci", "-f", yaml, "-o", out]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain("warning: ");
    const line = r.stdout.split("\n").find((l) => l.startsWith("fx/docker:1.0 ")) ?? "";
    const converted = line.split(" ")[1] as string;
    expect(converted).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(converted).not.toBe(DOCKER);
    expect(line).toContain(`converted to OCI (--format oci), so the digest changes: ${DOCKER} (source) → ${converted} (bundle)`);
    expect(r.stdout).toContain(`fx/multi:1.0 ${MULTI}\n`); // OCI already: untouched

    const raw = (await skopeo("inspect", "--raw", `oci-archive:${out}:fx/docker:1.0`)).stdout;
    expect(sha(raw)).toBe(converted);
    const manifest = JSON.parse(raw);
    const source = JSON.parse(readFileSync(join(FIX, "oci/blobs/sha256", DOCKER.slice(7)), "utf8"));
    expect(manifest.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(manifest.config).toMatchObject({ mediaType: "application/vnd.oci.image.config.v1+json", digest: source.config.digest, size: source.config.size });
    expect(manifest.layers.map((l: { digest: string; mediaType: string }) => [l.digest, l.mediaType])).toEqual(
      source.layers.map((l: { digest: string }) => [l.digest, "application/vnd.oci.image.layer.v1.tar+gzip"]),
    );
    await skopeo("copy", "-q", `oci-archive:${out}:fx/docker:1.0`, `oci:${join(tmp, "pulled")}:x`);
    expect(JSON.parse(readFileSync(join(tmp, "pulled/index.json"), "utf8")).manifests[0].digest).toBe(converted);

    expect((await runBin(["verify", out])).code).toBe(0);
    const imported = join(tmp, "imported");
    expect((await runBin(["import", "-q", out, "--to", `oci:${imported}`])).code).toBe(0);
    const index = JSON.parse(readFileSync(join(imported, "index.json"), "utf8"));
    expect(index.manifests.map((m: { digest: string }) => m.digest).sort()).toEqual([converted, MULTI].sort());
  });

  it("plan says the same, and any other format is refused with what to do", async () => {
    const plan = await runBin(["plan", "--format", "oci", "-f", yaml, "-o", join(tmp, "planned.tar")]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/converted to OCI \(--format oci\), so the digest changes: sha256:f32e085a\S+ \(source\)/);
    const bad = await runBin(["export", "--format", "v2s2", "-f", yaml, "-o", join(tmp, "bad.tar")]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^airlock: --format takes "oci" .*; leave it out to keep every manifest as it is$/);
  });
});
