/**
 * `airlock export --include-tool=PATH`: the executable travels in the bundle as
 * `airlock/tool/airlock-linux-<arch>` (mode 0755, read back by GNU tar), bundle.json records its
 * sha256 and size, `verify` checks it and names a flipped byte in it. The single-file executable
 * itself making the round trip (taken out with tar, run offline) is in test/runtimes/smoke.test.ts.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { promises as fs, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { elfPlatform, hostToolPlatform } from "../../apps/airlock/src/include-tool.js";
import { runCli } from "../support/cli.js";

const IMAGES = fileURLToPath(new URL("../../manifests/examples/fixtures.yaml", import.meta.url));
const NAME = hostToolPlatform() === "linux/arm64" ? "airlock-linux-arm64" : "airlock-linux-x64";
const ENTRY = `airlock/tool/${NAME}`;

let work: string;
let tool: string;
let toolBytes: Buffer;
let bundle: string;

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const tar = (...args: string[]) => spawnSync("tar", args, { encoding: "buffer" });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "airlock-include-tool-"));
  // A small stand-in for the executable, with a marker to find its bytes in the archive.
  tool = join(work, "tool.sh");
  toolBytes = Buffer.from(`#!/bin/sh\n# marker ${"x".repeat(600)}\necho "stand-in for airlock $*"\n`);
  await fs.writeFile(tool, toolBytes, { mode: 0o644 });
  bundle = join(work, "bundle.tar");
  const r = await runCli(["export", "-f", IMAGES, "-o", bundle, "-q", `--include-tool=${tool}`]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain(`tool ${ENTRY} (${hostToolPlatform()})`);
});

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe("export --include-tool", () => {
  it("puts the file in the tar as airlock/tool/NAME, mode 0755, with the sha256 and size bundle.json records", async () => {
    const listing = tar("-tvf", bundle);
    expect(listing.status, String(listing.stderr)).toBe(0);
    const line = String(listing.stdout)
      .split("\n")
      .find((l) => l.endsWith(` ${ENTRY}`));
    expect(line, String(listing.stdout)).toMatch(/^-rwxr-xr-x /);
    const content = tar("-xOf", bundle, ENTRY);
    expect(content.status).toBe(0);
    expect(Buffer.compare(content.stdout, toolBytes)).toBe(0);
    const meta = JSON.parse(String(tar("-xOf", bundle, "airlock/bundle.json").stdout));
    expect(meta.tools).toEqual([{ path: ENTRY, platform: hostToolPlatform(), digest: sha256(toolBytes), size: toolBytes.length }]);
    // Extracted with plain tar, it runs.
    const out = join(work, "out");
    await fs.mkdir(out);
    expect(tar("-xf", bundle, "-C", out, "--strip-components=2", ENTRY).status).toBe(0);
    const ran = spawnSync(join(out, NAME), ["verify", "bundle.tar"], { encoding: "utf8" });
    expect(ran.stdout).toBe("stand-in for airlock verify bundle.tar\n");
  });

  it("verify checks it, and names a flipped byte in it", async () => {
    const ok = await runCli(["verify", bundle]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`ok      tool ${ENTRY} (${hostToolPlatform()}, `);
    expect(ok.stdout).toContain(sha256(toolBytes));

    const damaged = join(work, "damaged.tar");
    const bytes = await fs.readFile(bundle);
    const at = bytes.indexOf("# marker ");
    expect(at).toBeGreaterThan(0);
    bytes[at + 20] ^= 0x01;
    await fs.writeFile(damaged, bytes);
    const bad = await runCli(["verify", damaged]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`BROKEN  tool ${ENTRY}`);
    expect(bad.stdout).toMatch(new RegExp(`error: the tool ${ENTRY} .* says ${toolBytes.length} bytes with digest ${sha256(toolBytes)}; the bundle was altered`));
    expect(bad.stdout).toContain("bundle DAMAGED");
  });

  it("refuses an executable built for another platform than the one asked for", async () => {
    // An ELF header for aarch64 (e_machine 183), little-endian.
    const elf = Buffer.alloc(64);
    elf.write("\x7fELF", 0, "latin1");
    elf[4] = 2;
    elf[5] = 1;
    elf.writeUInt16LE(183, 18);
    const arm = join(work, "arm64-binary");
    await fs.writeFile(arm, elf);
    expect(elfPlatform(arm)).toBe("linux/arm64");
    const r = await runCli(["export", "-f", IMAGES, "-o", join(work, "x.tar"), "-q", `--include-tool=${arm}`, "--tool-platform", "linux/amd64"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`--include-tool=${arm} is an executable for linux/arm64, not linux/amd64`);
    await expect(fs.stat(join(work, "x.tar"))).rejects.toThrow();
    // Without --tool-platform, the ELF header names the platform.
    const named = await runCli(["export", "-f", IMAGES, "-o", join(work, "y.tar"), "-q", `--include-tool=${arm}`]);
    expect(named.code, named.stderr).toBe(0);
    expect(named.stdout).toContain("tool airlock/tool/airlock-linux-arm64 (linux/arm64)");
  });
});
