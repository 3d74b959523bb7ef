/**
 * Cross-repository mounts across runs (packages/core/src/registry/blob-locations.ts): two airlock
 * processes push two images sharing a layer into two repositories of the real registry; the second
 * mounts the shared layer where the first pushed it instead of uploading it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runBin } from "../support/cli.js";

const FIXTURES = fileURLToPath(new URL("../../fixtures/oci", import.meta.url));
/** The layer fixtures base-a and base-b share. */
const SHARED = "sha256:33e82c48a3a6effd4f8c5611ccfb708f8b73309ffd362a36394d3533507eae01";
/** The manifest digest of fixture image `name`. */
const fixtureDigest = (name: string) =>
  (JSON.parse(readFileSync(join(FIXTURES, "index.json"), "utf8")) as { manifests: { digest: string; annotations: Record<string, string> }[] }).manifests.find(
    (m) => m.annotations["org.opencontainers.image.ref.name"] === name,
  )?.digest;
const tmp = mkdtempSync(join(tmpdir(), "airlock-blob-locations-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.each(["plain", "basic"] as const)("a push mounts a blob an earlier run pushed elsewhere in the registry (%s)", (mode) => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode });
  });
  afterAll(async () => {
    await reg?.stop();
  });
  const creds = () => (reg.username ? [`--dest-creds=${reg.username}:${reg.password}`] : []);
  const push = (image: string, repo: string, cache: string) => runBin(["copy", ...creds(), `oci:${FIXTURES}:${image}`, `docker://${reg.host}/${repo}:1`], { env: { AIRLOCK_BLOB_LOCATIONS: cache } });
  /** The result line of `digest` in a copy's plain progress ("Copying blob sha256:0123456789ab done"). */
  const line = (stderr: string, digest: string) => stderr.split("\n").find((l) => l.startsWith(`Copying blob ${digest.slice(0, 19)} `) && !l.includes("("));

  it("mounts the shared layer in a second process, and records where each blob is", async () => {
    const cache = join(tmp, `${mode}-cache.json`);
    const first = await push("base-a", "one/a", cache);
    expect(first.code, first.stderr).toBe(0);
    expect(line(first.stderr, SHARED)).toMatch(/ done$/);
    expect(JSON.parse(readFileSync(cache, "utf8")).registries[reg.host][SHARED]).toEqual(["one/a"]);
    const second = await push("base-b", "two/b", cache);
    expect(second.code, second.stderr).toBe(0);
    expect(line(second.stderr, SHARED)).toMatch(/skipped: already exists$/);
    expect(JSON.parse(readFileSync(cache, "utf8")).registries[reg.host][SHARED]).toEqual(["two/b", "one/a"]);
    // The image with the mounted layer reads back with the source's manifest digest.
    const pulled = await runBin(["copy", ...(reg.username ? [`--src-creds=${reg.username}:${reg.password}`] : []), `docker://${reg.host}/two/b:1`, `oci:${join(tmp, `${mode}-layout`)}:b`]);
    expect(pulled.code, pulled.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(tmp, `${mode}-layout`, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    expect(index.manifests[0]?.digest).toBe(fixtureDigest("base-b"));
  });

  it("uploads when the recorded repository no longer has the blob, or when the cache is off", async () => {
    const cache = join(tmp, `${mode}-stale.json`);
    writeFileSync(cache, JSON.stringify({ version: 1, registries: { [reg.host]: { [SHARED]: ["gone/never"] } } }));
    const stale = await push("base-a", "three/a", cache);
    expect(stale.code, stale.stderr).toBe(0);
    expect(line(stale.stderr, SHARED)).toMatch(/ done$/);
    expect(JSON.parse(readFileSync(cache, "utf8")).registries[reg.host][SHARED]).toEqual(["three/a", "gone/never"]);
    const off = await push("base-b", "four/b", "off");
    expect(off.code, off.stderr).toBe(0);
    expect(line(off.stderr, SHARED)).toMatch(/ done$/);
  });
});
