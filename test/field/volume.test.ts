/**
 * One volume on its own (`airlock verify bundle.tar.001` with only that file at hand, as on a USB
 * stick): verify names that volume's state from its own description — intact, or which of its
 * blobs is damaged — and does not call the absent volumes faults of this one.
 */
import { copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportBundle } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { generatedImage } from "../support/generated-image.js";

const tmp = mkdtempSync(join(tmpdir(), "airlock-volume-"));
let volumes: string[];

beforeAll(async () => {
  const images = await Promise.all([0, 1, 2].map(async (i) => ({ name: `example.com/vol/img${i}:1`, source: await generatedImage(`volume-${i}`, 300 * 1024) })));
  await exportBundle(images, join(tmp, "bundle.tar"), { splitSize: 512 * 1024 });
  volumes = readdirSync(tmp).filter((f) => /^bundle\.tar\.\d{3}$/.test(f)).sort();
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A directory holding only volume `n` (and nothing else of the bundle). */
function alone(n: number, name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  copyFileSync(join(tmp, volumes[n] as string), join(dir, volumes[n] as string));
  return join(dir, volumes[n] as string);
}

describe("verify one volume alone", () => {
  it("an intact middle volume is reported intact; the absent ones are named, not counted as its faults", async () => {
    expect(volumes.length).toBeGreaterThanOrEqual(3);
    const path = alone(1, "intact");
    const r = await runCli(["verify", path]);
    expect(r.stdout).toContain(`volume 1 of ${volumes.length} (${path}): OK;`);
    expect(r.stdout).toMatch(/volume\(s\) 0, 2.* not present, not checked/);
    expect(r.code).toBe(0);
    const j = JSON.parse((await runCli(["verify", "--json", path])).stdout);
    expect(j.volumeAlone).toMatchObject({ volume: 1, ok: true, problems: [] });
    expect(j.volumes.find((v: { volume: number }) => v.volume === 1)).toMatchObject({ present: true, ok: true });
  });

  it("with its checksum file beside it, the volume's checksum is compared too", async () => {
    const path = alone(2, "with-sidecar");
    copyFileSync(join(tmp, "bundle.tar.sha256"), join(tmp, "with-sidecar", "bundle.tar.sha256"));
    const r = await runCli(["verify", path]);
    expect(r.stdout).toMatch(/volume 2 of \d+ .*: OK; sha256:[a-f0-9]{64} matches/);
    expect(r.code).toBe(0);
  });

  it("a damaged volume alone: the damaged blob and the volume are named", async () => {
    const path = alone(1, "damaged");
    const fd = openSync(path, "r+");
    writeSync(fd, Buffer.from("XXXX"), 0, 4, 200 * 1024); // inside the volume's first layer
    const r = await runCli(["verify", path]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/error: blob sha256:[a-f0-9]{64} in volume 1 \(.*bundle\.tar\.001\) is damaged/);
    expect(r.stdout).toContain(`volume 1 of ${volumes.length} (${path}): DAMAGED`);
    expect(r.stderr).toMatch(/copy this volume again/);
  });
});
