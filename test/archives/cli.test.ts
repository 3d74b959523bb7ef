/**
 * `airlock copy` with the archive transports and the conversion flags, as a skopeo user types them:
 * `--format`, `--dest-compress`, `--dest-decompress`, `--dest-compress-format`, `--additional-tag`,
 * `--preserve-digests`, `--digestfile`; the warning that names the changed digest; usage errors.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { digestOf } from "@airlock/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const run = promisify(execFile);
const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 });
const FIX = fileURLToPath(new URL("../../fixtures", import.meta.url));
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-archive-cli-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe("airlock copy: archives and conversion flags", () => {
  it("OCI into docker-archive with --additional-tag: a warning names both digests, --digestfile gets the new one, skopeo agrees", async () => {
    const path = join(dir, "a.tar");
    const digestfile = join(dir, "digest");
    const r = await runCli(["copy", "--digestfile", digestfile, "--additional-tag", "quay.io/org/app:stable", `oci:${FIX}/oci:single`, `docker-archive:${path}:app:1`]);
    expect(r.code, r.stderr).toBe(0);
    const digest = await fs.readFile(digestfile, "utf8");
    expect(digest).not.toBe(SINGLE);
    expect(r.stderr).toContain(`warning: oci:${FIX}/oci:single: manifest digest changed from ${SINGLE} to ${digest}`);
    const items = JSON.parse((await run("tar", ["-xOf", path, "manifest.json"])).stdout) as { RepoTags: string[] }[];
    expect(items[0]?.RepoTags).toEqual(["docker.io/library/app:1", "quay.io/org/app:stable"]);
    const raw = (await skopeo("inspect", "--raw", `docker-archive:${path}:quay.io/org/app:stable`)).stdout;
    // skopeo labels the uncompressed layers gzip (containers/image#1270); otherwise the same manifest.
    expect(digestOf(raw.replaceAll("rootfs.diff.tar.gzip", "rootfs.diff.tar"))).toBe(digest);
    const inspect = await runCli(["inspect", `docker-archive:${path}:app:1`]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout).Digest).toBe(digest);
  });

  it("--format v2s2 gives skopeo's digest; --preserve-digests refuses it with skopeo's words and writes nothing", async () => {
    const r = await runCli(["copy", "-q", "--format", "v2s2", "--digestfile", join(dir, "d1"), `oci:${FIX}/oci:single`, `dir:${join(dir, "a")}`]);
    expect(r.code, r.stderr).toBe(0);
    await skopeo("copy", "--format", "v2s2", "--digestfile", join(dir, "d2"), `oci:${FIX}/oci:single`, `dir:${join(dir, "b")}`);
    expect(await fs.readFile(join(dir, "d1"), "utf8")).toBe(await fs.readFile(join(dir, "d2"), "utf8"));
    const refused = await runCli(["copy", "-q", "--preserve-digests", "-f", "v2s2", `oci:${FIX}/oci:single`, `dir:${join(dir, "c")}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("Instructed to preserve digests");
    await expect(fs.stat(join(dir, "c"))).rejects.toThrow();
  });

  it("--dest-decompress then --dest-compress round-trip through oci-archive", async () => {
    const path = join(dir, "a.tar");
    expect((await runCli(["copy", "-q", "--dest-decompress", "--digestfile", join(dir, "d1"), `oci:${FIX}/oci:single`, `oci-archive:${path}:plain`])).code).toBe(0);
    const m = JSON.parse((await skopeo("inspect", "--raw", `oci-archive:${path}:plain`)).stdout) as { layers: { mediaType: string }[] };
    expect(m.layers.map((l) => l.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar"]);
    expect((await runCli(["copy", "-q", "--dest-compress", "--digestfile", join(dir, "d2"), `oci-archive:${path}:plain`, `oci-archive:${path}:gzip`])).code).toBe(0);
    const g = JSON.parse((await skopeo("inspect", "--raw", `oci-archive:${path}:gzip`)).stdout) as { layers: { mediaType: string }[] };
    expect(g.layers.map((l) => l.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+gzip"]);
    // Both images live in the one archive.
    const idx = JSON.parse((await run("tar", ["-xOf", path, "index.json"])).stdout) as { manifests: { digest: string }[] };
    expect(idx.manifests.map((d) => d.digest)).toEqual([await fs.readFile(join(dir, "d1"), "utf8"), await fs.readFile(join(dir, "d2"), "utf8")]);
  });

  it("usage errors: contradictory flags, an unknown format, --additional-tag elsewhere than docker-archive, an ambiguous archive", async () => {
    const src = `oci:${FIX}/oci:single`;
    for (const [args, message] of [
      [["--dest-compress", "--dest-decompress"], /cannot be used together/],
      [["--dest-decompress", "--dest-compress-format", "gzip"], /cannot be used together/],
      [["--format", "v2s1"], /v2s1/],
      [["--additional-tag", "x:1"], /applies to docker-archive/],
    ] as const) {
      const r = await runCli(["copy", "-q", ...args, src, `dir:${join(dir, "x")}`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
    }
    const path = join(dir, "two.tar");
    expect((await runCli(["copy", "-q", src, `docker-archive:${path}:a:1`])).code).toBe(0);
    expect((await runCli(["copy", "-q", `oci:${FIX}/oci:docker`, `docker-archive:${path}:b:1`])).code).toBe(0);
    const r = await runCli(["copy", "-q", `docker-archive:${path}`, `dir:${join(dir, "y")}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("holds 2 images");
    expect(r.stderr).toContain("@0 docker.io/library/a:1, @1 docker.io/library/b:1");
  });
});
