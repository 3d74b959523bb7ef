/**
 * Image signatures inside bundles: signatures found at the source (here a dir: signed by
 * `airlock copy --sign-by-key`) are stored in the bundle under airlock/signatures/, covered by
 * bundle.json and `verify`, restored by `import` into oci: and dir: (where skopeo's signedBy
 * policy accepts them), and `import --policy` checks every image with them before anything is
 * pushed to the registry.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { BundleReader, bundleImageSource, isSignatureSource } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";
import { FIX, type GnuPG, gnupgWith, key, run, sha256, signedBy, workDir, writePolicy } from "./support.js";

const IDENTITY = "docker.io/demo/app:1";
/** The bundle name of the dir: image (as: names a repository; such a name is not a full Docker reference). */
const NAME = "demo/app:1";

let work: string;
let gpg: GnuPG;
let reg: RunningRegistry;
let signedBundle: string;
let registryBundle: string;
let registryIdentity: string;
let registriesD: string;
let lookaside: string;
let unsignedBundle: string;
let trustSigner: string;
let trustProtected: string;
let insecure: string;
let n = 0;
const fresh = (name = "t") => join(work, `${name}-${n++}`);
const skopeo = (args: string[]) => run("skopeo", args, gpg.env);
const tagsOf = async (repo: string) => runCli(["list-tags", `docker://${reg.host}/${repo}`]);

/** Exports the images of `body` (images.yaml entries) into a new bundle; returns its path. */
async function exportYaml(body: string, globals: string[] = []): Promise<string> {
  const yaml = fresh("images.yaml");
  writeFileSync(yaml, `version: 1\nregistries:\n  "${reg.host}": { tlsVerify: false }\nimages:\n${body}`);
  const out = fresh("bundle.tar");
  const r = await runCli([...globals, "export", "-q", "-f", yaml, "-o", out]);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

beforeAll(async () => {
  work = workDir("airlock-bundle-sigs-");
  [gpg, reg] = await Promise.all([gnupgWith(["signer"]), startRegistry({ mode: "plain" })]);
  const exact = { type: "exactReference", dockerReference: IDENTITY };
  trustSigner = writePolicy(work, "signer", { default: [signedBy("signer.pub.asc", exact)] });
  trustProtected = writePolicy(work, "protected", { default: [signedBy("protected.pub.asc", exact)] });
  insecure = writePolicy(work, "insecure", { default: [{ type: "insecureAcceptAnything" }] });
  const signedDir = fresh("signed");
  const c = await runCli(["--policy", insecure, "copy", "-q", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, `oci:${FIX}/oci:single`, `dir:${signedDir}`]);
  expect(c.code, c.stderr).toBe(0);
  expect(existsSync(join(signedDir, "signature-1"))).toBe(true);
  signedBundle = await exportYaml(`  - source: dir:${signedDir}\n    as: ${NAME}\n`);
  unsignedBundle = await exportYaml(`  - source: oci:${FIX}/oci:single\n    as: ${NAME}\n`);

  // A registry image signed into lookaside storage (registries.d), exported by its full name.
  registriesD = fresh("registries.d");
  lookaside = fresh("lookaside");
  mkdirSync(registriesD);
  writeFileSync(join(registriesD, "test.yaml"), `docker:\n  "${reg.host}":\n    lookaside: file://${lookaside}\n    lookaside-staging: file://${lookaside}\n`);
  registryIdentity = `${reg.host}/demo/app:1`;
  const p = await runCli(["--policy", insecure, "--registries.d", registriesD, "copy", "-q", "--dest-tls-verify=false", "--sign-by-key", key("signer.sec.asc"), `oci:${FIX}/oci:single`, `docker://${registryIdentity}`]);
  expect(p.code, p.stderr).toBe(0);
  registryBundle = await exportYaml(`  - name: ${reg.host}/demo/app\n    tags: ["1"]\n`, ["--registries.d", registriesD]);
}, 60_000);

afterAll(async () => {
  await gpg?.close();
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The bundle's airlock/bundle.json, read with tar (as any tool can). */
async function metadataOf(bundle: string): Promise<{ images: { digest: string }[]; signatures?: { manifest: string; index: number; path: string; digest: string; size: number }[] }> {
  const { stdout } = await promisify(execFile)("tar", ["-xOf", bundle, "airlock/bundle.json"], { encoding: "utf8", maxBuffer: 1 << 26 });
  return JSON.parse(stdout);
}

describe("image signatures in bundles", () => {
  it("export stores the source's signature under airlock/signatures/, listed with its sha256 in bundle.json; verify checks it", async () => {
    const meta = await metadataOf(signedBundle);
    const digest = meta.images[0]?.digest as string;
    expect(meta.signatures).toHaveLength(1);
    const sig = meta.signatures?.[0] as { manifest: string; path: string; digest: string; size: number };
    expect(sig.manifest).toBe(digest);
    expect(sig.path).toBe(`airlock/signatures/sha256/${digest.slice(7)}/signature-1`);
    const { stdout } = await promisify(execFile)("tar", ["-xOf", signedBundle, sig.path], { encoding: "buffer", maxBuffer: 1 << 26 });
    expect(sha256(stdout)).toBe(sig.digest);
    expect(stdout.length).toBe(sig.size);
    expect((await runCli(["verify", signedBundle])).code).toBe(0);
    expect((await metadataOf(unsignedBundle)).signatures).toBeUndefined();

    // An altered signature entry (same size, other bytes) is named by verify and refused by import.
    const altered = fresh("altered.tar");
    const buf = readFileSync(signedBundle);
    const at = buf.indexOf(stdout);
    expect(at).toBeGreaterThan(0);
    buf[at + 40] = (buf[at + 40] as number) ^ 0xff;
    writeFileSync(altered, buf);
    const v = await runCli(["verify", altered]);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain(sig.path);
    const layout = fresh("oci-altered");
    const i = await runCli(["--policy", insecure, "import", "-q", altered, "--to", `oci:${layout}`]);
    expect(i.code).toBe(1);
    expect(i.stderr).toMatch(/signature .* the bundle was altered/);
    expect(existsSync(layout)).toBe(false);
  });

  it("import restores the signature into oci: and dir:, where skopeo's and airlock's signedBy policies accept it", async () => {
    const digest = (await metadataOf(signedBundle)).images[0]?.digest as string;
    const layout = fresh("oci");
    const o = await runCli(["--policy", trustSigner, "import", "-q", signedBundle, "--to", `oci:${layout}`]);
    expect(o.code, o.stderr).toBe(0);
    expect(existsSync(join(layout, "signatures", "sha256", digest.slice(7), "signature-1"))).toBe(true);
    const fromOci = await runCli(["--policy", trustSigner, "copy", "-q", `oci:${layout}:${NAME}`, `dir:${fresh("copied")}`]);
    expect(fromOci.code, fromOci.stderr).toBe(0);

    const dirs = fresh("dirs");
    const d = await runCli(["--policy", trustSigner, "import", "-q", signedBundle, "--to", `dir:${dirs}`]);
    expect(d.code, d.stderr).toBe(0);
    const [imageDir] = readdirSync(dirs);
    const dir = join(dirs, imageDir as string);
    expect(existsSync(join(dir, "signature-1"))).toBe(true);
    expect((await skopeo(["--policy", trustSigner, "copy", "-q", `dir:${dir}`, `dir:${fresh("sk")}`])).code).toBe(0);
    expect((await runCli(["--policy", trustSigner, "copy", "-q", `dir:${dir}`, `dir:${fresh("al")}`])).code).toBe(0);
    const wrong = await skopeo(["--policy", trustProtected, "copy", "-q", `dir:${dir}`, `dir:${fresh("sk")}`]);
    expect(wrong.stderr).toMatch(/Source image rejected/);
  });

  it("export --format oci leaves out the signature of a manifest it converts, and says so", async () => {
    const dir = fresh("signed-docker");
    const c = await runCli(["--policy", insecure, "copy", "-q", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, `oci:${FIX}/oci:docker`, `dir:${dir}`]);
    expect(c.code, c.stderr).toBe(0);
    const yaml = fresh("images.yaml");
    writeFileSync(yaml, `version: 1\nimages:\n  - source: dir:${dir}\n    as: demo/docker:1\n`);
    const out = fresh("bundle.tar");
    const r = await runCli(["export", "--format", "oci", "-f", yaml, "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^warning: 1 signature\(s\) of sha256:\w+ \(dir:.*\) are left out: --format oci converted that manifest, so they no longer sign what the bundle holds$/m);
    expect((await metadataOf(out)).signatures).toBeUndefined();
    // Without the conversion the signature travels.
    const kept = fresh("bundle.tar");
    expect((await runCli(["export", "-q", "-f", yaml, "-o", kept])).code).toBe(0);
    expect((await metadataOf(kept)).signatures).toHaveLength(1);
  });

  it("carries the signatures of a multi-arch index and of each image it lists; bundleImageSource offers them", async () => {
    const dir = fresh("multi");
    const c = await runCli(["--policy", insecure, "copy", "-q", "--all", "--sign-by-key", key("signer.sec.asc"), "--sign-identity", IDENTITY, `oci:${FIX}/oci:multi`, `dir:${dir}`]);
    expect(c.code, c.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { manifests: { digest: string }[] };
    for (const { digest } of index.manifests) {
      const hex = digest.slice(7);
      const s = await runCli(["standalone-sign", join(dir, `${hex}.manifest.json`), IDENTITY, "--key", key("signer.sec.asc"), "-o", join(dir, `${hex}.signature-1`)]);
      expect(s.code, s.stderr).toBe(0);
    }
    const bundle = await exportYaml(`  - source: dir:${dir}\n    as: demo/multi:1\n`);
    const meta = await metadataOf(bundle);
    expect(meta.signatures).toHaveLength(1 + index.manifests.length);

    const reader = await BundleReader.open(bundle);
    try {
      const src = await bundleImageSource(reader, "demo/multi:1");
      expect(isSignatureSource(src)).toBe(true);
      if (!isSignatureSource(src)) return;
      const hexOf = (sigs: Uint8Array[]) => sigs.map((b) => Buffer.from(b).toString("hex"));
      expect(hexOf(await src.getSignatures())).toEqual(hexOf([readFileSync(join(dir, "signature-1"))]));
      const first = index.manifests[0]?.digest as string;
      expect(hexOf(await src.getSignatures({ instanceDigest: first as `sha256:${string}` }))).toEqual(hexOf([readFileSync(join(dir, `${first.slice(7)}.signature-1`))]));
    } finally {
      await reader.close();
    }

    // Every instance is checked by the policy and restored beside its manifest; skopeo accepts the result.
    const out = fresh("multi-out");
    const i = await runCli(["--policy", trustSigner, "import", "-q", bundle, "--to", `dir:${out}`]);
    expect(i.code, i.stderr).toBe(0);
    const imageDir = join(out, readdirSync(out)[0] as string);
    expect(readdirSync(imageDir).filter((f) => f.includes("signature")).length).toBe(1 + index.manifests.length);
    expect((await skopeo(["--policy", trustSigner, "copy", "-q", "--all", `dir:${imageDir}`, `dir:${fresh("sk")}`])).code).toBe(0);
  });

  it("import --policy accepts the signed bundle into a registry, warning that the registry cannot keep the signature", async () => {
    const r = await runCli(["--policy", trustSigner, "import", signedBundle, "--to", `${reg.host}/ok`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cannot store signatures/);
    expect((await tagsOf("ok/demo/app")).stdout).toContain('"1"');
    // Asked to: the same import fails before pushing anything.
    const req = await runCli(["--policy", trustSigner, "import", "-q", signedBundle, "--to", `${reg.host}/req`, "--require-signatures"]);
    expect(req.code).toBe(1);
    expect(req.stderr).toMatch(/cannot store signatures/);
    expect((await tagsOf("req/demo/app")).code).not.toBe(0);
  });

  it("import restores the signature into a registry's lookaside storage (registries.d), where skopeo finds and accepts it", async () => {
    const digest = (await metadataOf(signedBundle)).images[0]?.digest as string;
    const r = await runCli(["--policy", trustSigner, "--registries.d", registriesD, "import", "-q", signedBundle, "--to", `${reg.host}/la`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`pushed  docker://${reg.host}/la/demo/app:1 ${digest} (1 signature)`);
    expect(r.stderr).toBe("");
    expect(existsSync(join(lookaside, "la/demo", `app@sha256=${digest.slice(7)}`, "signature-1"))).toBe(true);
    const sk = await skopeo(["--policy", trustSigner, "--registries.d", registriesD, "copy", "-q", "--src-tls-verify=false", `docker://${reg.host}/la/demo/app:1`, `dir:${fresh("sk")}`]);
    expect(sk.code, sk.stderr).toBe(0);
  });

  it("import --policy rejects an unsigned bundle and a wrong key, with one line, pushing nothing", async () => {
    const unsigned = await runCli(["--policy", trustSigner, "import", "-q", unsignedBundle, "--to", `${reg.host}/unsigned`]);
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/Source image rejected: /);
    expect(unsigned.stderr.trim().split("\n")).toHaveLength(1);
    expect((await tagsOf("unsigned/demo/app")).code).not.toBe(0);

    const wrongKey = await runCli(["--policy", trustProtected, "import", "-q", signedBundle, "--to", `${reg.host}/wrongkey`]);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/Source image rejected: /);
    expect((await tagsOf("wrongkey/demo/app")).code).not.toBe(0);
  });

  it("export reads a registry image's signature from lookaside storage; the policy scope of an image named by a full Docker reference is its docker scope", async () => {
    const meta = await metadataOf(registryBundle);
    expect(meta.signatures?.map((s) => s.manifest)).toEqual([meta.images[0]?.digest]);
    // Reject everything but HOST/demo, which needs the signer's signature for its own name.
    const scoped = writePolicy(work, "scoped", {
      default: [{ type: "reject" }],
      transports: { docker: { [`${reg.host}/demo`]: [signedBy("signer.pub.asc", { type: "exactReference", dockerReference: registryIdentity })] } },
    });
    const layout = fresh("scoped");
    const ok = await runCli(["--policy", scoped, "import", "-q", registryBundle, "--to", `oci:${layout}`]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readdirSync(join(layout, "signatures", "sha256"))).toHaveLength(1);
    // demo/app:1 is not a full Docker reference: the default scope (reject) applies, though it is signed.
    const no = await runCli(["--policy", scoped, "import", "-q", signedBundle, "--to", `oci:${fresh("scoped")}`]);
    expect(no.code).toBe(1);
    expect(no.stderr).toMatch(/Source image rejected: /);
  });
});
