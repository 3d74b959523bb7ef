/**
 * Signed bundles: `export --sign-key` signs the bundle's metadata (which commits to every digest),
 * `verify --key` and `import --verify-key` refuse an unsigned, wrongly signed or altered bundle
 * before a single byte reaches the registry. gpg checks the signature independently.
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runBin, runCli } from "../support/cli.js";

const ROOT = join(import.meta.dirname, "../..");
const KEYS = join(ROOT, "fixtures/keys");
const tmp = mkdtempSync(join(tmpdir(), "airlock-bundle-sign-"));
let reg: RunningRegistry;
let bundle: string;

beforeAll(async () => {
  reg = await startRegistry({ mode: "plain" });
  const yaml = join(tmp, "images.yaml");
  writeFileSync(yaml, `version: 1\nimages:\n  - source: oci:${ROOT}/fixtures/oci:single\n    as: demo/single:1\n  - source: oci:${ROOT}/fixtures/oci:base-a\n    as: demo/base-a:1\n`);
  bundle = join(tmp, "bundle.tar");
  const r = await runCli(["export", "-q", "-f", yaml, "-o", bundle, "--sign-key", join(KEYS, "protected.sec.asc"), "--sign-passphrase-file", join(KEYS, "protected.passphrase")]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain(`Signed: ${bundle}.sig`);
});

afterAll(async () => {
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const tagsOf = async (repo: string) => (await runCli(["list-tags", `docker://${reg.host}/${repo}`])).code;

describe("signed bundles", () => {
  it("verify --key accepts the signer's key; gpg agrees the signature covers airlock/bundle.json", async () => {
    const r = await runCli(["verify", bundle, "--key", join(KEYS, "protected.pub.asc")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/signature ok: metadata signed by [0-9A-F]{40}/i);
    const gnupg = mkdtempSync(join(tmp, "gnupg-"));
    const gpg = (...args: string[]) => promisify(execFile)("gpg", ["--homedir", gnupg, "--batch", ...args], { encoding: "utf8" });
    await gpg("--import", join(KEYS, "protected.pub.asc"));
    const metadata = join(tmp, "bundle.json");
    await promisify(execFile)("tar", ["-xOf", bundle, "airlock/bundle.json"], { encoding: "buffer", maxBuffer: 1 << 26 }).then(({ stdout }) => writeFileSync(metadata, stdout));
    await expect(gpg("--verify", `${bundle}.sig`, metadata)).resolves.toBeTruthy();
  });

  it("import --verify-key pushes a correctly signed bundle", async () => {
    const r = await runCli(["import", "-q", bundle, "--to", `${reg.host}/signed`, "--verify-key", join(KEYS, "protected.pub.asc")]);
    expect(r.code, r.stderr).toBe(0);
    expect(await tagsOf("signed/demo/single")).toBe(0);
  });

  it("refuses a bundle signed by another key, before pushing anything", async () => {
    const r = await runBin(["import", bundle, "--to", `${reg.host}/wrongkey`, "--verify-key", join(KEYS, "signer.pub.asc")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not one of the trusted keys|trusted key|signed by/i);
    expect(await tagsOf("wrongkey/demo/single")).toBe(2);
  });

  it("refuses an unsigned bundle", async () => {
    const copy = join(tmp, "unsigned.tar");
    copyFileSync(bundle, copy);
    const r = await runBin(["import", copy, "--to", `${reg.host}/unsigned`, "--verify-key", join(KEYS, "protected.pub.asc")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not signed: no signature file/);
    expect(await tagsOf("unsigned/demo/single")).toBe(2);
  });

  /** A copy of the signed bundle (with its signature) where `find` is replaced by `replace`. */
  const tampered = (name: string, find: Buffer, replace: Buffer, last = false) => {
    const copy = join(tmp, name);
    const bytes = readFileSync(bundle);
    const at = last ? bytes.lastIndexOf(find) : bytes.indexOf(find);
    expect(at).toBeGreaterThan(0);
    replace.copy(bytes, at);
    writeFileSync(copy, bytes);
    copyFileSync(`${bundle}.sig`, `${copy}.sig`);
    return copy;
  };

  it("refuses an altered blob (one flipped byte) before pushing a single byte", async () => {
    const layer = readFileSync(join(ROOT, "fixtures/oci/blobs/sha256/1a77f40700774bb037b20a84ada0f8c47685bf1c55c2b38ecaac8ee300b16344"));
    const flipped = Buffer.from(layer);
    flipped[50] = (flipped[50] as number) ^ 0xff;
    const copy = tampered("altered-blob.tar", layer, flipped);
    const r = await runBin(["import", copy, "--to", `${reg.host}/altered`, "--verify-key", join(KEYS, "protected.pub.asc")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not match its signed metadata.*nothing was pushed/);
    expect(r.stderr).toMatch(/sha256:1a77f4070077/);
    expect(await tagsOf("altered/demo/single")).toBe(2);
    expect(await tagsOf("altered/demo/base-a")).toBe(2);
  });

  it("refuses an altered index.json: it no longer matches the signed metadata", async () => {
    const copy = tampered("altered-index.tar", Buffer.from('"demo/single:1"'), Buffer.from('"demo/single:2"'));
    const r = await runBin(["import", copy, "--to", `${reg.host}/index`, "--verify-key", join(KEYS, "protected.pub.asc")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not match its signed metadata.*nothing was pushed/);
    expect(await tagsOf("index/demo/single")).toBe(2);
  });

  it("refuses altered metadata (airlock/bundle.json): the signature no longer verifies", async () => {
    const copy = tampered("altered-meta.tar", Buffer.from('"demo/single:1"'), Buffer.from('"demo/single:2"'), true);
    const v = await runBin(["verify", copy, "--key", join(KEYS, "protected.pub.asc")]);
    expect(v.code).toBe(1);
    const r = await runBin(["import", copy, "--to", `${reg.host}/meta`, "--verify-key", join(KEYS, "protected.pub.asc")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/signature/i);
    expect(await tagsOf("meta/demo/single")).toBe(2);
  });

  it("an expired key cannot sign a bundle", async () => {
    const yaml = join(tmp, "images.yaml");
    const r = await runBin(["export", "-q", "-f", yaml, "-o", join(tmp, "expired.tar"), "--sign-key", join(KEYS, "expired.sec.asc")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/expired/i);
  });
});
