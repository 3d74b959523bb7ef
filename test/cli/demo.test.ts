/**
 * `npm run demo` (scripts/demo.sh), the README's first command: the round trip on
 * manifests/examples/fixtures.yaml (lock, export, verify, import into `airlock serve`, pull) exits
 * 0, ends with "Round trip complete" for every image of the example, reports each image with the
 * digest of its source (a new one for the image cut down to one platform), removes its temporary
 * directory, stops the registry it started and leaves no file in the checkout.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const EXAMPLE = join(ROOT, "manifests/examples/fixtures.yaml");
const tmp = mkdtempSync(join(tmpdir(), "airlock-demo-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface ExampleImage {
  source: string;
  as: string;
  platforms?: string[];
}

/** The digest of an example image's source: its index.json entry (oci:) or manifest.json (dir:). */
function sourceDigest(source: string): string {
  const dir = join(ROOT, "manifests/examples");
  const oci = /^oci:(.+):([^:/]+)$/.exec(source);
  if (oci) {
    const index = JSON.parse(readFileSync(join(dir, oci[1] as string, "index.json"), "utf8")) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const entry = index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === oci[2]);
    if (!entry) throw new Error(`${source}: no such image in the fixtures`);
    return entry.digest;
  }
  const path = source.replace(/^dir:/, "");
  return `sha256:${createHash("sha256").update(readFileSync(join(dir, path, "manifest.json"))).digest("hex")}`;
}

/** What git sees under the committed example and fixtures, untracked and ignored files included. */
const checkout = () => spawnSync("git", ["status", "--porcelain", "--untracked-files=all", "--ignored", "--", "manifests", "fixtures"], { cwd: ROOT, encoding: "utf8" }).stdout;

describe("npm run demo", () => {
  it("runs the round trip on manifests/examples/fixtures.yaml, offline, and leaves the checkout as it was", () => {
    const images = (parse(readFileSync(EXAMPLE, "utf8")) as { images: ExampleImage[] }).images;
    const before = checkout();
    const r = spawnSync("bash", [join(ROOT, "scripts/demo.sh")], { cwd: ROOT, env: { ...process.env, TMPDIR: tmp }, encoding: "utf8", timeout: 50_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`Round trip complete: ${images.length} images exported, verified, imported and pulled with identical digests`);
    expect(r.stdout).not.toContain("FAIL");

    // One "ok REGISTRY/mirror/NAME DIGEST" line per image: the source's digest, or for a platform
    // subset a rewritten index, whose digest differs from the source's.
    const pulled = new Map([...r.stdout.matchAll(/^ok {3}[\d.]+:\d+\/mirror\/(\S+) (sha256:[0-9a-f]{64})$/gm)].map((m) => [m[1], m[2]]));
    expect([...pulled.keys()].sort()).toEqual(images.map((i) => i.as).sort());
    for (const image of images) {
      if (image.platforms) expect(pulled.get(image.as), image.as).not.toBe(sourceDigest(image.source));
      else expect(pulled.get(image.as), image.as).toBe(sourceDigest(image.source));
    }
    expect(images.some((i) => i.platforms)).toBe(true);

    expect(readdirSync(tmp)).toEqual([]);
    // The offline registry (airlock serve) was stopped, not left running.
    const ps = spawnSync("ps", ["-eo", "args"], { encoding: "utf8" }).stdout;
    expect(ps.split("\n").filter((line) => line.includes(tmp))).toEqual([]);
    expect(checkout()).toBe(before);
  });
});
