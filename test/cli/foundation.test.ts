/**
 * The foundation verbs end to end: `airlock copy | inspect | manifest-digest` on the committed
 * fixtures, checked against skopeo and umoci, and every kind of bad input from issue 2.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runBin, runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const tmp = mkdtempSync(join(tmpdir(), "airlock-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(tmp, `t${n++}`);

const skopeo = (...args: string[]) => execFileSync("skopeo", args, { encoding: "utf8" });
const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** Every file under `dir` with its sha256, for "the destination is exactly as it was". */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = sha(readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

const FIXTURE_DIGESTS = {
  single: "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952",
  multi: "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01",
  docker: "sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625",
};

describe("copy and inspect on the fixtures", () => {
  it("copies an image into an OCI layout that skopeo and umoci read with the same digest", async () => {
    const layout = fresh();
    const r = await runCli(["copy", "-q", `oci:${FIX}/oci:single`, `oci:${layout}:app:1.0`]);
    expect(r).toMatchObject({ code: 0, stdout: "" });
    expect(sha(skopeo("inspect", "--raw", `oci:${layout}:app:1.0`))).toBe(FIXTURE_DIGESTS.single);
    const bundle = fresh();
    execFileSync("umoci", ["unpack", "--rootless", "--image", `${layout}:app:1.0`, bundle], { stdio: "pipe" });
    expect(readFileSync(join(bundle, "rootfs/app/hello.txt"), "utf8")).toMatch(/hello/i);
  });

  it("copies a whole index with --all, and one platform without it", async () => {
    const layout = fresh();
    expect((await runCli(["copy", "-q", "--all", `oci:${FIX}/oci:multi`, `oci:${layout}:multi`])).code).toBe(0);
    expect(sha(skopeo("inspect", "--raw", `oci:${layout}:multi`))).toBe(FIXTURE_DIGESTS.multi);
    expect((await runCli(["--override-arch", "arm64", "copy", "-q", `oci:${FIX}/oci:multi`, `dir:${layout}-arm`])).code).toBe(0);
    const arm = JSON.parse(skopeo("inspect", `dir:${layout}-arm`));
    expect(arm.Architecture).toBe("arm64");
  });

  it("keeps Docker v2s2 manifests byte for byte in dir: (skopeo reads it, same digest)", async () => {
    const dir = fresh();
    expect((await runCli(["copy", "-q", `oci:${FIX}/oci:docker`, `dir:${dir}`])).code).toBe(0);
    expect(sha(readFileSync(join(dir, "manifest.json")))).toBe(FIXTURE_DIGESTS.docker);
    expect(JSON.parse(skopeo("inspect", `dir:${dir}`)).Digest).toBe(FIXTURE_DIGESTS.docker);
  });

  it("reads what skopeo wrote", async () => {
    const layout = fresh();
    skopeo("copy", "-q", "--all", `oci:${FIX}/oci:multi`, `oci:${layout}:m`);
    const r = await runCli(["inspect", "--raw", `oci:${layout}:m`]);
    expect(sha(r.stdout)).toBe(FIXTURE_DIGESTS.multi);
  });

  it.each(["oci:FIX/oci:single", "oci:FIX/oci:base-b", "dir:FIX/dir/docker"])("inspect %s prints what skopeo inspect prints", async (name) => {
    const ref = name.replace("FIX", FIX);
    const ours = JSON.parse((await runCli(["inspect", ref])).stdout);
    // skopeo 1.9.3 predates LayersData; newer skopeo prints it as airlock does.
    expect(ours.LayersData.map((l: { Digest: string }) => l.Digest)).toEqual(ours.Layers);
    delete ours.LayersData;
    expect(ours).toEqual(JSON.parse(skopeo("inspect", ref)));
    expect((await runCli(["inspect", "--config", ref])).stdout).toBe(skopeo("inspect", "--config", ref));
  });

  it("inspect --raw prints the stored bytes; manifest-digest hashes them", async () => {
    const raw = (await runCli(["inspect", "--raw", `oci:${FIX}/oci:single`])).stdout;
    const file = join(tmp, "m.json");
    writeFileSync(file, raw);
    expect((await runCli(["manifest-digest", file])).stdout.trim()).toBe(FIXTURE_DIGESTS.single);
    expect(skopeo("manifest-digest", file).trim()).toBe(FIXTURE_DIGESTS.single);
  });

  it("inspect --format renders a Go template", async () => {
    const r = await runCli(["inspect", "--format", "{{.Digest}} {{.Os}}/{{.Architecture}} {{len .Layers}}", `oci:${FIX}/oci:single`]);
    expect(r.stdout).toBe(`${FIXTURE_DIGESTS.single} linux/amd64 2\n`);
  });

  it("the real binary: progress on stderr, nothing on stdout, --digestfile written", async () => {
    const layout = fresh();
    const digestfile = join(tmp, "digest");
    const r = await runBin(["copy", "--digestfile", digestfile, `oci:${FIX}/oci:single`, `oci:${layout}:x`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/Copying blob sha256:/);
    expect(readFileSync(digestfile, "utf8")).toBe(FIXTURE_DIGESTS.single);
  });

  it("--json prints NDJSON events on stderr", async () => {
    const r = await runBin(["copy", "--json", `oci:${FIX}/oci:single`, `oci:${fresh()}:x`]);
    const events = r.stderr.trim().split("\n").map((l) => JSON.parse(l));
    expect(events.filter((e) => e.type === "blob-done")).toHaveLength(3);
    expect(events.at(-1)).toMatchObject({ type: "manifest", topLevel: true, digest: FIXTURE_DIGESTS.single });
  });
});

describe("bad input: one clear line, non-zero exit, destination untouched", () => {
  /** A destination layout that already holds one image, to check it is left exactly as it was. */
  const existing = () => {
    const layout = fresh();
    cpSync(join(FIX, "oci"), layout, { recursive: true });
    return layout;
  };

  const cases: [string, string[], RegExp, number][] = [
    ["a malformed docker reference", ["copy", "docker://Quay.io/UPPER/x:1", "oci:DEST:x"], /must be lowercase|invalid reference/i, 1],
    ["an unknown transport", ["copy", "ftp://x/y", "oci:DEST:x"], /unknown transport "ftp".*use one of .*docker.*oci/, 1],
    ["a name without a transport", ["copy", "busybox", "oci:DEST:x"], /expected TRANSPORT:REFERENCE/, 1],
    ["a missing source path", ["copy", "oci:/nonexistent/layout:x", "oci:DEST:x"], /\/nonexistent\/layout/, 1],
    ["an image name that is not in the layout", ["copy", "oci:FIX/oci:nope", "oci:DEST:x"], /nope/, 2],
    ["a blob whose digest does not match", ["copy", "oci:FIX/corrupt/digest-mismatch:bad", "oci:DEST:x"], /sha256:926eb7c30afe.*(digest|corrupt)/i, 1],
    ["a truncated blob", ["copy", "oci:FIX/corrupt/truncated-blob:bad", "oci:DEST:x"], /sha256:ae943e5f54c2.*(bytes|truncated)/i, 1],
    ["a missing blob", ["copy", "oci:FIX/corrupt/missing-blob:bad", "oci:DEST:x"], /sha256:10400388fafd/, 1],
    ["an unknown manifest media type", ["copy", "oci:FIX/corrupt/unknown-media-type:bad", "oci:DEST:x"], /application\/vnd\.example\.unknown\+json/, 1],
    ["a manifest whose bytes do not match its digest", ["copy", "oci:FIX/corrupt/bad-manifest-digest:bad", "oci:DEST:x"], /sha256:f4e0dc26c8e7/, 1],
    ["an index without the requested platform", ["--override-arch", "s390x", "copy", "oci:FIX/oci:multi", "oci:DEST:x"], /no image for linux\/s390x.*--override-arch.*--all/, 1],
  ];

  it.each(cases)("%s", async (_what, args, message, code) => {
    const dest = existing();
    const before = snapshot(dest);
    const r = await runBin(args.map((a) => a.replace("DEST", dest).replace("FIX", FIX)));
    expect(r.code).toBe(code);
    const lines = r.stderr.trim().split("\n").filter((l) => !/^Copying blob|^progress:/.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^airlock: /);
    expect(lines[0]).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace without --debug
    expect(snapshot(dest)).toEqual(before);
  });

  it("a corrupt blob copied over an existing dir: image leaves it as it was", async () => {
    const dir = fresh();
    expect((await runCli(["copy", "-q", `oci:${FIX}/oci:single`, `dir:${dir}`])).code).toBe(0);
    const before = snapshot(dir);
    const r = await runBin(["copy", "-q", `oci:${FIX}/corrupt/digest-mismatch:bad`, `dir:${dir}`]);
    expect(r.code).toBe(1);
    expect(snapshot(dir)).toEqual(before);
    expect(JSON.parse(skopeo("inspect", `dir:${dir}`)).Digest).toBe(FIXTURE_DIGESTS.single);
  });

  it("--debug adds the error code and stack", async () => {
    const r = await runBin(["--debug", "copy", "oci:/nonexistent/l:x", `oci:${fresh()}:x`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[ERR_[A-Z_]+\]/);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it("usage errors exit 1 with a hint", async () => {
    const r = await runBin(["copy", "--all", "--multi-arch", "all", `oci:${FIX}/oci:multi`, `oci:${fresh()}:x`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--all and --multi-arch cannot be used together/);
  });
});
