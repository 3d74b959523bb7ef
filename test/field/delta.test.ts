/**
 * Deltas end to end through the CLI against two real docker-registry instances: full export →
 * import (with --receipt) → two images change upstream → export --since the receipt → verify →
 * import; every digest matches the new upstream, the delta carries exactly the new blobs, and an
 * import onto a destination without the base is refused before anything is pushed.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BundleReader, copyImage, parseImageName, parseReceipt, RegistryClient } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";
import { generatedImage } from "../support/generated-image.js";

const tmp = mkdtempSync(join(tmpdir(), "airlock-delta-"));
let src: RunningRegistry;
let dst: RunningRegistry;
const NAMES = ["a", "b", "c", "d"] as const;
const LAYER = 512 * 1024;

async function push(name: string, seed: string): Promise<void> {
  await copyImage(await generatedImage(seed, LAYER), parseImageName(`docker://${src.host}/up/${name}:1`), {});
}

async function digestAt(host: string, repo: string, tag: string): Promise<string | undefined> {
  const c = new RegistryClient(host, { tlsVerify: false });
  try {
    return (await c.repository(repo).headManifest(tag))?.digest;
  } finally {
    await c.close();
  }
}

beforeAll(async () => {
  [src, dst] = await Promise.all([startRegistry({ mode: "plain" }), startRegistry({ mode: "plain" })]);
  for (const n of NAMES) await push(n, `v1-${n}`);
}, 60_000);

afterAll(async () => {
  await Promise.all([src?.stop(), dst?.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

describe("delta round trip", () => {
  const yaml = () => {
    const f = join(tmp, "images.yaml");
    writeFileSync(f, `version: 1\nregistries:\n  "${src.host}": { tlsVerify: false }\ndestination: { naming: keep-path }\nimages:\n${NAMES.map((n) => `  - name: ${src.host}/up/${n}\n    tags: ["1"]\n`).join("")}`);
    return f;
  };

  it("full export → import → receipt → 2 images change → delta → import gives the new upstream digests", async () => {
    const file = yaml();
    const full = join(tmp, "full.tar");
    expect((await runCli(["export", "-f", file, "-o", full, "-q"])).code).toBe(0);
    const receipt = join(tmp, "receipt.json");
    const imp = await runCli(["import", full, "--to", `${dst.host}/mirror`, "--dest-tls-verify=false", "--receipt", receipt, "-q"]);
    expect(imp.stderr).toBe("");
    expect(imp.code).toBe(0);
    const r = parseReceipt(readFileSync(receipt, "utf8"), receipt);
    expect(r.repositories.map((x) => x.name)).toEqual(NAMES.map((n) => `mirror/${src.host.replace(":", "_")}/up/${n}`));
    expect(r.blobs).toHaveLength(8); // 4 layers + 4 configs
    expect(r.manifests).toHaveLength(4);

    // The inventory verb gives the same digests.
    const receipt2 = join(tmp, "receipt2.json");
    expect((await runCli(["inventory", "--registry", `${dst.host}/mirror`, "--tls-verify=false", "-o", receipt2])).code).toBe(0);
    const r2 = parseReceipt(readFileSync(receipt2, "utf8"), receipt2);
    expect({ ...r2, created: "" }).toEqual({ ...r, created: "" });

    // Two images change upstream.
    await push("b", "v2-b");
    await push("d", "v2-d");
    const delta = join(tmp, "delta.tar");
    const ex = await runCli(["export", "-f", file, "--since", receipt, "-o", delta, "-q"]);
    expect(ex.stderr).toBe("");
    expect(ex.code).toBe(0);
    expect(ex.stdout).toMatch(/a delta: 4 blob\(s\) .* left out/);
    const full2 = join(tmp, "full2.tar");
    expect((await runCli(["export", "-f", file, "-o", full2, "-q"])).code).toBe(0);

    // The delta holds exactly the new blobs; its layout names the same digests as a full export.
    const rd = await BundleReader.open(delta);
    const rf = await BundleReader.open(full2);
    const md = await rd.metadata();
    const mf = await rf.metadata();
    await rd.close();
    await rf.close();
    if (!md || !mf) throw new Error("no bundle.json");
    const newBlobs = mf.blobs.filter((b) => !r.blobs.includes(b.digest));
    expect(md.blobs.map((b) => b.digest).sort()).toEqual(newBlobs.map((b) => b.digest).sort());
    expect(md.base?.count).toBe(4);
    expect(md.base?.blobs.sort()).toEqual(mf.blobs.filter((b) => r.blobs.includes(b.digest)).map((b) => b.digest).sort());
    expect(md.images.map((i) => [i.name, i.digest])).toEqual(mf.images.map((i) => [i.name, i.digest]));
    const newBytes = newBlobs.reduce((n, b) => n + b.size, 0);
    const deltaSize = statSync(delta).size;
    const fullSize = statSync(full2).size;
    // Metadata: tar headers, volume description, oci-layout, index.json, 4 manifests, bundle.json.
    expect(deltaSize - newBytes).toBeLessThan(64 * 1024);
    expect(deltaSize).toBeLessThan(fullSize);
    console.log(`delta for a 2-image change: ${deltaSize} bytes (${newBytes} of new blobs) vs full export ${fullSize} bytes`);

    // verify accepts the delta: the absent base blobs are expected.
    const v = await runCli(["verify", delta]);
    expect(v.stdout).toContain("bundle OK");
    expect(v.stdout).toMatch(/delta: 4 blob\(s\) of its base \(receipt .*; sha256:[a-f0-9]{64}\) are not in the bundle by design/);
    expect(v.code).toBe(0);

    // A destination without the base: refused before anything is pushed, naming what is missing.
    const bad = await runCli(["import", delta, "--to", `${dst.host}/elsewhere`, "--dest-tls-verify=false", "-q"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/delta .* lacks 4 of the blobs/);
    for (const d of md.base?.blobs ?? []) expect(bad.stderr).toContain(d);
    const c = new RegistryClient(dst.host, { tlsVerify: false });
    expect((await c.catalog()).filter((n) => n.startsWith("elsewhere/"))).toEqual([]);
    await c.close();

    // On top of its base: every digest is the new upstream's.
    const ok = await runCli(["import", delta, "--to", `${dst.host}/mirror`, "--dest-tls-verify=false", "-q"]);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    for (const n of NAMES) {
      const up = await digestAt(src.host, `up/${n}`, "1");
      expect(up).toBeDefined();
      expect(await digestAt(dst.host, `mirror/${src.host.replace(":", "_")}/up/${n}`, "1")).toBe(up);
    }
  });

  it("a new image whose blobs the receipt lists in another repository: left out, then mounted from there on import", async () => {
    // up/e is the same image as up/c: its blobs are on the other side, but in c's repository.
    await copyImage(parseImageName(`docker://${src.host}/up/c:1`), parseImageName(`docker://${src.host}/up/e:1`), {});
    const f = join(tmp, "images-e.yaml");
    writeFileSync(f, `version: 1\nregistries:\n  "${src.host}": { tlsVerify: false }\ndestination: { naming: keep-path }\nimages:\n  - name: ${src.host}/up/c\n    tags: ["1"]\n  - name: ${src.host}/up/e\n    tags: ["1"]\n`);
    const receipt = join(tmp, "receipt-e.json");
    expect((await runCli(["inventory", "--registry", `${dst.host}/mirror`, "--tls-verify=false", "-o", receipt])).code).toBe(0);
    const delta = join(tmp, "delta-e.tar");
    const ex = await runCli(["export", "-f", f, "--since", receipt, "-o", delta, "-q"]);
    expect(ex.code).toBe(0);
    expect(ex.stdout).toMatch(/Exported 2 image\(s\), 0 blob\(s\)/);
    const imp = await runCli(["import", delta, "--to", `${dst.host}/mirror`, "--dest-tls-verify=false", "-q"]);
    expect(imp.stderr).toBe("");
    expect(imp.code).toBe(0);
    expect(await digestAt(dst.host, `mirror/${src.host.replace(":", "_")}/up/e`, "1")).toBe(await digestAt(src.host, "up/c", "1"));
  });

  it("inventory reads a multi-arch index down to its children's blobs", async () => {
    const fix = join(import.meta.dirname, "../../fixtures/oci");
    await copyImage(parseImageName(`oci:${fix}:multi`), parseImageName(`docker://${dst.host}/inv/multi:1.0`), { multiArch: "all" });
    const out = join(tmp, "receipt-multi.json");
    expect((await runCli(["inventory", "--registry", `${dst.host}/inv`, "--tls-verify=false", "-o", out])).code).toBe(0);
    const r = parseReceipt(readFileSync(out, "utf8"), out);
    const c = new RegistryClient(dst.host, { tlsVerify: false });
    try {
      const repo = c.repository("inv/multi");
      const index = await repo.getParsedManifest("1.0");
      expect(index.isIndex).toBe(true);
      expect(r.repositories).toEqual([{ name: "inv/multi", tags: { "1.0": index.digest } }]);
      const children = await Promise.all(index.index.manifests.map((d) => repo.getParsedManifest(d.digest)));
      expect(r.manifests).toEqual([index.digest, ...children.map((m) => m.digest)].sort());
      const blobs = new Set(children.flatMap((m) => (m.isIndex ? [] : m.blobs().map((b) => b.digest))));
      expect(r.blobs).toEqual([...blobs].sort());
    } finally {
      await c.close();
    }
  });

  it("export --since an old bundle or an old lock leaves out what it carried", async () => {
    const file = yaml();
    const old = join(tmp, "full2.tar");
    const d1 = join(tmp, "since-bundle.tar");
    const e1 = await runCli(["export", "-f", file, "--since", old, "-o", d1, "-q"]);
    expect(e1.code).toBe(0);
    expect(e1.stdout).toMatch(/Exported 4 image\(s\), 0 blob\(s\).*a delta: 8 blob\(s\)/s);
    expect((await runCli(["lock", "-f", file])).code).toBe(0);
    await push("a", "v3-a");
    const d2 = join(tmp, "since-lock.tar");
    const e2 = await runCli(["export", "-f", file, "--since", join(tmp, "images.lock.yaml"), "-o", d2, "-q"]);
    expect(e2.code).toBe(0);
    expect(e2.stdout).toMatch(/Exported 4 image\(s\), 2 blob\(s\).*a delta: 6 blob\(s\)/s);
  });
});
