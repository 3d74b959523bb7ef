/**
 * `airlock list-tags docker-archive:PATH` against skopeo 1.9's for archives skopeo wrote: every
 * RepoTag, normalised, in order; `@N` for an untagged image; other transports refused as skopeo does.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const run = promisify(execFile);
const skopeo = async (...args: string[]) => (await run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 })).stdout;
const FIXTURES = fileURLToPath(new URL("../../fixtures/oci", import.meta.url));

const tmp = mkdtempSync(join(tmpdir(), "airlock-list-tags-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const tagged = join(tmp, "tagged.tar");
const untagged = join(tmp, "untagged.tar");

beforeAll(async () => {
  await skopeo("copy", "--additional-tag", "example.com/app:2.0", "--additional-tag", "busybox:latest", `oci:${FIXTURES}:single`, `docker-archive:${tagged}:example.com/app:1.0`);
  await skopeo("copy", `oci:${FIXTURES}:single`, `docker-archive:${untagged}`);
});

it.each([
  ["two tags and a short name", () => `docker-archive:${tagged}`],
  ["a reference after the path (ignored)", () => `docker-archive:${tagged}:example.com/app:1.0`],
  ["an untagged image", () => `docker-archive:${untagged}`],
])("prints what skopeo list-tags prints: %s", async (_label, ref) => {
  const mine = await runCli(["list-tags", ref()]);
  expect(mine.code).toBe(0);
  expect(mine.stdout).toBe(await skopeo("list-tags", ref()));
});

it("refuses a transport that has no tags, as skopeo does, and a missing archive", async () => {
  const r = await runCli(["list-tags", `oci:${FIXTURES}`]);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("Unsupported transport 'oci' for tag listing. Only supported: docker, docker-archive");
  const missing = await runCli(["list-tags", `docker-archive:${join(tmp, "nope.tar")}`]);
  expect(missing.code).not.toBe(0);
  expect(missing.stderr).toContain("nope.tar");
});
