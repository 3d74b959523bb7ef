/**
 * `airlock export` when a source lacks a blob while several blobs are in flight: the run stops its
 * other downloads, and the user gets the one-line error (exit status 2, the image cannot be
 * exported) — never a stack trace from an 'error' event nobody listened to (an aborted file
 * stream made the process die with `Unhandled 'error' event … AbortError`). The partial bundle is
 * kept for a resume and does not look finished; once the blob is back, the same command resumes.
 * Run through the built binary: an unhandled 'error' event kills the process, which only a child
 * process shows. Sources: an OCI layout written here, and a real docker-registry that lost a blob.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, promises as fs, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { type CliRun, runBin } from "../support/cli.js";

const LAYERS = 8;

let work: string;
let layout: string;
let images: string;
/** The layer removed from the layout: the largest, so it is among the first blobs opened. */
let missing: { digest: string; path: string; bytes: Buffer };

/** Writes `bytes` as a blob of `dir` and returns its descriptor fields. */
async function putBlob(dir: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
  const hex = createHash("sha256").update(bytes).digest("hex");
  await fs.writeFile(join(dir, "blobs", "sha256", hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "airlock-export-failures-"));
  // An OCI image layout with one image of several layers (256 KiB and up: each takes a few reads).
  layout = join(work, "layout");
  await fs.mkdir(join(layout, "blobs", "sha256"), { recursive: true });
  const layers: { mediaType: string; digest: string; size: number; bytes: Buffer }[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const bytes = randomBytes(256 * 1024 + i * 4096);
    layers.push({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...(await putBlob(layout, bytes)), bytes });
  }
  const config = await putBlob(layout, Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) } })));
  const manifest = await putBlob(
    layout,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
      }),
    ),
  );
  await fs.writeFile(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await fs.writeFile(
    join(layout, "index.json"),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest, annotations: { "org.opencontainers.image.ref.name": "app" } }] }),
  );
  const largest = layers[LAYERS - 1] as (typeof layers)[number];
  missing = { digest: largest.digest, path: join(layout, "blobs", "sha256", largest.digest.slice("sha256:".length)), bytes: largest.bytes };
  await fs.rm(missing.path);
  images = join(work, "images.yaml");
  await fs.writeFile(images, `version: 1\nimages:\n  - source: oci:${layout}:app\n    as: team/app:1.0\n`);
});

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** Asserts the failure as the user must see it: exit 2, one `airlock:` line naming blob and image, no stack trace. */
function expectOneLineNotFound(r: CliRun, advice = "copy the image into it again"): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).not.toMatch(/Unhandled|node:events|AbortError|^\s+at /m);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  const errors = lines.filter((l) => l.startsWith("airlock: "));
  expect(errors, r.stderr).toHaveLength(1);
  expect(lines.at(-1)).toBe(errors[0]);
  const line = errors[0] as string;
  expect(line).toContain(`blob ${missing.digest}`);
  expect(line).toContain("team/app:1.0");
  expect(line).toContain(advice);
  expect(line).toContain(".partial");
}

describe("export with a layer missing from an oci: source, several blobs in flight", () => {
  for (const flags of [[], ["--concurrency", "8"], ["--keep-going"]]) {
    it(`fails with one line and exit 2, keeping the partial bundle (${flags.join(" ") || "default concurrency"})`, async () => {
      const out = join(work, `a${flags.join("")}.tar`);
      const r = await runBin(["export", "-f", images, "-o", out, "--quiet", ...flags]);
      expectOneLineNotFound(r);
      // Nothing looks finished: no bundle, no checksum file; the partial and its journal stay for a resume.
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.sha256`)).toBe(false);
      expect(existsSync(`${out}.partial`)).toBe(true);
      expect(existsSync(`${out}.journal.json`)).toBe(true);
    });
  }

  it("resumes the partial bundle once the blob is back", async () => {
    const out = join(work, "resume.tar");
    expectOneLineNotFound(await runBin(["export", "-f", images, "-o", out, "--quiet"]));
    await fs.writeFile(missing.path, missing.bytes);
    try {
      const r = await runBin(["export", "-f", images, "-o", out, "--quiet"]);
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(out)).toBe(true);
      expect(existsSync(`${out}.partial`)).toBe(false);
      const v = await runBin(["verify", out]);
      expect(v.code, v.stderr + v.stdout).toBe(0);
    } finally {
      await fs.rm(missing.path, { force: true });
    }
  });
});

describe("export from a docker:// source that lost a layer blob, several blobs in flight", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "plain" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("fails with one line and exit 2, keeping the partial bundle", async () => {
    // The complete image into the registry, then the registry loses the largest layer.
    await fs.writeFile(missing.path, missing.bytes);
    try {
      const pushed = await runBin(["copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:app`, `docker://${reg.host}/team/app:1.0`]);
      expect(pushed.code, pushed.stderr).toBe(0);
    } finally {
      await fs.rm(missing.path, { force: true });
    }
    // Deleted through the API (the registry's descriptor cache would still vouch for a file removed underneath it).
    const deleted = await fetch(`${reg.url}/v2/team/app/blobs/${missing.digest}`, { method: "DELETE" });
    expect(deleted.status).toBe(202);
    const yaml = join(work, "images-registry.yaml");
    await fs.writeFile(yaml, `version: 1\nregistries:\n  ${JSON.stringify(reg.host)}:\n    tlsVerify: false\nimages:\n  - source: docker://${reg.host}/team/app:1.0\n    as: team/app:1.0\n`);
    const out = join(work, "registry.tar");
    const r = await runBin(["export", "-f", yaml, "-o", out, "--quiet"]);
    expectOneLineNotFound(r, "push team/app:1.0 to the registry again");
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial`)).toBe(true);
  });
});
