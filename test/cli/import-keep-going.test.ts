/**
 * `airlock import --keep-going` against a real docker-registry with token auth whose token server
 * never grants push on one repository (mirror/t/base-b): without --keep-going the import fails
 * (exit 1); with it, the allowed image is complete at the destination (skopeo inspect gives its
 * digest), the denied one is listed as FAILED with the registry's denial, in the summary and the
 * report, and the exit status is 1. A tampered blob still stops everything with --keep-going.
 * The two images (base-a and base-b of fixtures/oci) share blobs.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { exportBaseBundle } from "../support/bundles.js";
import { runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const skopeo = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), "airlock-import-keep-going-"));
let reg: RunningRegistry;
let bundle: string;
let digestA: string;
let digestB: string;

beforeAll(async () => {
  const [exported, started] = await Promise.all([exportBaseBundle(tmp), startRegistry({ mode: "token", denyPush: ["mirror/t/base-b"] })]);
  reg = started;
  bundle = exported.bundle;
  const { layout } = exported;
  const digestOf = async (name: string) => {
    const src = await parseImageName(`oci:${layout}:${name}`).newSource({});
    const manifest = await src.getManifest();
    await src.close();
    return manifest.digest;
  };
  [digestA, digestB] = await Promise.all([digestOf("base-a"), digestOf("base-b")]);
}, 60_000);

afterAll(async () => {
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** `import` into the token registry under PREFIX, with the registry's user. */
const importTo = (prefix: string, ...extra: string[]) =>
  runCli(["import", "-q", bundle, "--to", `${reg.host}/${prefix}`, "--dest-creds", `${reg.username}:${reg.password}`, "--dest-tls-verify=false", ...extra]);

/** The digest skopeo sees at `ref` (docker://…), or undefined when it cannot inspect it. */
const inspect = async (ref: string): Promise<string | undefined> => {
  try {
    const { stdout } = await skopeo("skopeo", ["inspect", "--tls-verify=false", "--creds", `${reg.username}:${reg.password}`, "--format", "{{.Digest}}", `docker://${ref}`], { encoding: "utf8" });
    return stdout.trim();
  } catch {
    return undefined;
  }
};

describe("import --keep-going", () => {
  it("without --keep-going: a push denied for one repository fails the import (exit 1)", async () => {
    const r = await importTo("mirror");
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/mirror\/t\/base-b/);
    expect(r.stdout).not.toMatch(/^FAILED/m);
    expect(await inspect(`${reg.host}/mirror/t/base-b:1`)).toBeUndefined();
  });

  it("with --keep-going: the allowed image is pushed completely, the denied one is listed as FAILED (exit 1)", async () => {
    const report = join(tmp, "keep-going.json");
    const r = await importTo("mirror", "--keep-going", "--report", report);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain(`pushed  docker://${reg.host}/mirror/t/base-a:1 ${digestA}`);
    const failed = r.stdout.split("\n").filter((l) => l.startsWith("FAILED"));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatch(/^FAILED t\/base-b:1: .*mirror\/t\/base-b: requested access to the resource is denied/);
    expect(r.stdout).toMatch(/1 image\(s\), 1 FAILED;/);
    expect(r.stderr).toMatch(/1 image\(s\) could not be imported .*t\/base-b:1/);
    expect(await inspect(`${reg.host}/mirror/t/base-a:1`)).toBe(digestA);
    expect(await inspect(`${reg.host}/mirror/t/base-b:1`)).toBeUndefined();
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep).toMatchObject({ ok: false, images: [expect.objectContaining({ name: "t/base-a:1", digest: digestA, status: "pushed" })] });
    expect(rep.images).toHaveLength(1);
    expect(rep.failures).toEqual([{ image: "t/base-b:1", destination: `docker://${reg.host}/mirror/t/base-b:1`, error: failed[0]?.slice("FAILED t/base-b:1: ".length), code: expect.any(String) }]);
    expect(rep.code).not.toBe("ERR_IMAGE_NOT_FOUND");
    expect(digestB).not.toBe(digestA);
  });

  it("with --keep-going and nothing denied: both images pushed, exit 0, no failures", async () => {
    const report = join(tmp, "all.json");
    const r = await importTo("open", "--keep-going", "--report", report);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/FAILED/);
    expect(await inspect(`${reg.host}/open/t/base-b:1`)).toBe(digestB);
    expect(JSON.parse(readFileSync(report, "utf8"))).toMatchObject({ ok: true, failures: [] });
  });

  it("a tampered blob still stops everything with --keep-going: no FAILED line, no image committed", async () => {
    // Flip one byte in the middle of base-b's config (not shared with base-a): same size, so the
    // bundle's structure still checks and the fault shows only while the blob streams.
    const src = await parseImageName(`oci:${join(tmp, "layout")}:base-b`).newSource({});
    const { image } = await src.getManifest();
    await src.close();
    const victim = image.config.digest;
    const bytes = readFileSync(bundle);
    const blob = readFileSync(join(FIX, "oci", "blobs", "sha256", victim.slice(7)));
    const at = bytes.indexOf(blob);
    expect(at).toBeGreaterThan(0);
    bytes[at + (blob.length >> 1)] ^= 0xff;
    const tampered = join(tmp, "tampered.tar");
    writeFileSync(tampered, bytes);
    const dest = join(tmp, "tampered-dest");
    const report = join(tmp, "tampered.json");
    const r = await runCli(["import", "-q", tampered, "--to", `oci:${dest}`, "--keep-going", "--report", report]);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toMatch(/FAILED|pushed/);
    expect(r.stderr).toContain(victim);
    const rep = JSON.parse(readFileSync(report, "utf8"));
    expect(rep).toMatchObject({ ok: false, code: "ERR_DIGEST_MISMATCH", images: [] });
    // Neither image was written (base-a's blobs may be, but no manifest and no tag).
    const index = existsSync(join(dest, "index.json")) ? JSON.parse(readFileSync(join(dest, "index.json"), "utf8")) : { manifests: [] };
    expect(index.manifests).toEqual([]);
  });
});
