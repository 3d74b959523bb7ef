/**
 * The `bundle:` transport, registered with the others: a bundle is read as a source by name
 * (`bundle:PATH:NAME`), or its only image (`bundle:PATH`), by copy and inspect; skopeo reads the
 * same tar as an oci-archive and sees the same image.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { exportBundle, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const run = promisify(execFile);
const skopeo = async (...args: string[]) => (await run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 })).stdout;
const FIXTURES = fileURLToPath(new URL("../../fixtures/oci", import.meta.url));
const NAME = "registry.example/fixtures/single:1.0";

const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-transport-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const one = join(tmp, "one.tar");
const two = join(tmp, "two.tar");

beforeAll(async () => {
  await exportBundle([{ source: parseImageName(`oci:${FIXTURES}:single`), name: NAME }], one);
  await exportBundle(
    [
      { source: parseImageName(`oci:${FIXTURES}:single`), name: NAME },
      { source: parseImageName(`oci:${FIXTURES}:docker`), name: "registry.example/fixtures/docker:1.0" },
    ],
    two,
  );
});

describe("bundle: transport", () => {
  it("airlock copy bundle:PATH:NAME oci:DIR:TAG copies the image with its digest", async () => {
    const out = join(tmp, "layout");
    const r = await runCli(["copy", `bundle:${two}:${NAME}`, `oci:${out}:y`]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const want = JSON.parse(await skopeo("inspect", `oci:${FIXTURES}:single`)).Digest;
    expect(JSON.parse(await skopeo("inspect", `oci:${out}:y`)).Digest).toBe(want);
  });

  it("airlock inspect bundle:… prints what skopeo prints for the same tar read as an oci-archive", async () => {
    const mine = JSON.parse((await runCli(["inspect", `bundle:${two}:${NAME}`])).stdout) as Record<string, unknown>;
    const theirs = JSON.parse(await skopeo("inspect", `oci-archive:${two}:${NAME}`)) as Record<string, unknown>;
    expect(mine.Name).toBe("registry.example/fixtures/single");
    delete mine.Name;
    // LayersData is newer than skopeo 1.9.
    expect(mine.LayersData).toHaveLength((mine.Layers as string[]).length);
    delete mine.LayersData;
    expect(mine).toEqual(theirs);
  });

  it("bundle:PATH names the only image of a bundle, and is refused for a bundle of several", async () => {
    const r = await runCli(["inspect", "--raw", `bundle:${one}`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(await skopeo("inspect", "--raw", `oci:${FIXTURES}:single`));
    const bad = await runCli(["inspect", `bundle:${two}`]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/holds 2 images.*bundle:.*:NAME/);
  });

  it("a bundle is not a destination", async () => {
    const r = await runCli(["copy", `oci:${FIXTURES}:single`, `bundle:${join(tmp, "x.tar")}:a`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/airlock export/);
  });
});
