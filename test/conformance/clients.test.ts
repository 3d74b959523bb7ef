/**
 * Real clients against `airlock serve`: skopeo copies the fixtures in and back out (one image,
 * and a multi-arch index with --all), reads a layout and a split bundle served as they are, and
 * pushes over TLS with basic auth; airlock's own registry client pushes and pulls. Every image
 * comes back with the digest it went in with.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { copyImage, exportBundle, OciLayout, parseImageName } from "@airlock/core";
import { createRegistryServer, LayoutRegistryStore, type RegistryServer, type RunningServer, serve } from "@airlock/registry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFileP = promisify(execFile);
const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures", "oci");

/** Runs skopeo (asynchronously: the registry under test runs in this process). */
async function skopeo(...args: string[]): Promise<string> {
  const { stdout } = await execFileP("skopeo", args, { encoding: "utf8", timeout: 60_000 });
  return stdout;
}

const digestOf = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** The digest of the manifest `ref` names, from its raw bytes. */
async function rawDigest(ref: string, ...flags: string[]): Promise<string> {
  const { stdout } = await execFileP("skopeo", ["inspect", ...flags, "--raw", ref], { encoding: "buffer", timeout: 60_000 });
  return digestOf(stdout);
}

/** The fixtures' digests, from their index.json (by name). */
async function fixtureDigests(): Promise<Map<string, string>> {
  const layout = await OciLayout.open(FIXTURES);
  const index = await layout.readIndex();
  return new Map(index.manifests.map((m) => [m.annotations?.["org.opencontainers.image.ref.name"] ?? "", m.digest]));
}

describe("real clients against airlock serve", () => {
  const dir = mkdtempSync(join(tmpdir(), "airlock-clients-"));
  let server: RegistryServer;
  let host: string;
  let fixtures: Map<string, string>;

  beforeAll(async () => {
    fixtures = await fixtureDigests();
    server = createRegistryServer({ store: await LayoutRegistryStore.open(join(dir, "store")) });
    ({ host } = await server.listen("127.0.0.1:0"));
  });
  afterAll(async () => {
    await server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("skopeo copies an image in and back out with the same digest", async () => {
    await skopeo("copy", "-q", "--dest-tls-verify=false", `oci:${FIXTURES}:single`, `docker://${host}/fixtures/single:v1`);
    expect(await rawDigest(`docker://${host}/fixtures/single:v1`, "--tls-verify=false")).toBe(fixtures.get("single"));
    const out = join(dir, "out-single");
    await skopeo("copy", "-q", "--src-tls-verify=false", `docker://${host}/fixtures/single:v1`, `oci:${out}:single`);
    expect(await rawDigest(`oci:${out}:single`)).toBe(fixtures.get("single"));
    const tags = JSON.parse(await skopeo("list-tags", "--tls-verify=false", `docker://${host}/fixtures/single`)) as { Tags: string[] };
    expect(tags.Tags).toEqual(["v1"]);
  });

  it("skopeo copies a multi-arch index with --all in and back out with the same digests", async () => {
    await skopeo("copy", "-q", "--all", "--dest-tls-verify=false", `oci:${FIXTURES}:multi`, `docker://${host}/fixtures/multi:v1`);
    expect(await rawDigest(`docker://${host}/fixtures/multi:v1`, "--tls-verify=false")).toBe(fixtures.get("multi"));
    const out = join(dir, "out-multi");
    await skopeo("copy", "-q", "--all", "--src-tls-verify=false", `docker://${host}/fixtures/multi:v1`, `oci:${out}:multi`);
    expect(await rawDigest(`oci:${out}:multi`)).toBe(fixtures.get("multi"));
    // Every child came along: skopeo can read the arm64 image from the copy.
    const arm = JSON.parse(await skopeo("--override-arch", "arm64", "inspect", `oci:${out}:multi`)) as { Architecture: string };
    expect(arm.Architecture).toBe("arm64");
  });

  it("airlock's own registry client pushes and pulls with the same digests", async () => {
    const ctx = { docker: { tlsVerify: false } };
    const pushed = await copyImage(parseImageName(`oci:${FIXTURES}:base-a`), parseImageName(`docker://${host}/airlock/base-a:1`), { destinationContext: ctx });
    expect(pushed.digest).toBe(fixtures.get("base-a"));
    const out = join(dir, "out-airlock");
    const pulled = await copyImage(parseImageName(`docker://${host}/airlock/base-a:1`), parseImageName(`oci:${out}:base-a`), { sourceContext: ctx });
    expect(pulled.digest).toBe(fixtures.get("base-a"));
    expect(await rawDigest(`oci:${out}:base-a`)).toBe(fixtures.get("base-a"));
  });

  it("serves an existing OCI layout read-only as it is: NAME as NAME:latest", async () => {
    const ro = await serve({ root: FIXTURES, listen: "127.0.0.1:0", readOnly: true });
    try {
      expect(await rawDigest(`docker://${ro.host}/single:latest`, "--tls-verify=false")).toBe(fixtures.get("single"));
      const out = join(dir, "out-layout");
      await skopeo("copy", "-q", "--all", "--src-tls-verify=false", `docker://${ro.host}/multi`, `oci:${out}:multi`);
      expect(await rawDigest(`oci:${out}:multi`)).toBe(fixtures.get("multi"));
      await expect(skopeo("copy", "-q", "--dest-tls-verify=false", `oci:${FIXTURES}:single`, `docker://${ro.host}/pushed:v1`)).rejects.toThrow();
    } finally {
      await ro.close();
    }
    // Nothing was written into the fixtures.
    expect((await fs.readdir(FIXTURES)).sort()).toEqual(["blobs", "index.json", "oci-layout"]);
  });
});

describe("serving a split bundle straight from its volumes", () => {
  const dir = mkdtempSync(join(tmpdir(), "airlock-bundle-serve-"));
  let ro: RunningServer;
  let bigDigest: string;

  beforeAll(async () => {
    // An image with a layer larger than a volume, so its blob crosses volume boundaries.
    const layout = await OciLayout.open(join(dir, "src"), { create: true });
    // Real gzip, or skopeo would compress it on the way and change the manifest.
    const tar = randomBytes(200_000);
    const layer = gzipSync(tar, { level: 1 });
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [digestOf(tar)] } }));
    await layout.writeBlobBytes(layer);
    await layout.writeBlobBytes(config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestOf(config), size: config.length },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: digestOf(layer), size: layer.length }],
      }),
    );
    const { digest, size } = await layout.writeBlobBytes(manifest);
    bigDigest = digest;
    await layout.updateIndex((i) => ({ ...i, manifests: [...i.manifests, { mediaType: "application/vnd.oci.image.manifest.v1+json", digest, size, annotations: { "org.opencontainers.image.ref.name": "big/app:v1" } }] }));
    const result = await exportBundle(
      [
        { source: parseImageName(`oci:${join(dir, "src")}:big/app:v1`), name: "big/app:v1" },
        { source: parseImageName(`oci:${FIXTURES}:multi`), name: "docker.io/fixtures/multi:2.0" },
      ],
      join(dir, "bundle.tar"),
      { splitSize: 64 * 1024 },
    );
    expect(result.volumes.length).toBeGreaterThan(2);
    ro = await serve({ bundle: result.volumes.map((v) => v.path), listen: "127.0.0.1:0" });
  });
  afterAll(async () => {
    await ro?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("skopeo pulls every image with the digest it was exported with", async () => {
    expect(ro.readOnly).toBe(true);
    const out = join(dir, "out");
    await skopeo("copy", "-q", "--src-tls-verify=false", `docker://${ro.host}/big/app:v1`, `oci:${out}:big`);
    expect(await rawDigest(`oci:${out}:big`)).toBe(bigDigest);
    await skopeo("copy", "-q", "--all", "--src-tls-verify=false", `docker://${ro.host}/docker.io/fixtures/multi:2.0`, `oci:${out}:multi`);
    expect(await rawDigest(`oci:${out}:multi`)).toBe((await fixtureDigests()).get("multi"));
  });

  it("answers ranges of a blob that spans volumes, and refuses pushes", async () => {
    const manifest = (await (await fetch(`${ro.url}/v2/big/app/manifests/v1`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } })).json()) as { layers: { digest: string; size: number }[] };
    const layer = manifest.layers[0]!;
    const whole = Buffer.from(await (await fetch(`${ro.url}/v2/big/app/blobs/${layer.digest}`)).arrayBuffer());
    expect(digestOf(whole)).toBe(layer.digest);
    const part = await fetch(`${ro.url}/v2/big/app/blobs/${layer.digest}`, { headers: { Range: "bytes=60000-140000" } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(whole.subarray(60000, 140001))).toBe(true);
    const post = await fetch(`${ro.url}/v2/big/app/blobs/uploads/`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(((await post.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe("DENIED");
  });
});

describe("TLS and basic auth with a real client", () => {
  const dir = mkdtempSync(join(tmpdir(), "airlock-tls-"));
  let srv: RunningServer;
  const password = `pw-${randomBytes(6).toString("hex")}`;

  beforeAll(async () => {
    await execFileP("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
    await fs.mkdir(join(dir, "certs"));
    await fs.copyFile(join(dir, "cert.pem"), join(dir, "certs", "ca.crt"));
    const { stdout } = await execFileP("htpasswd", ["-Bbn", "alice", password]);
    await fs.writeFile(join(dir, "htpasswd"), stdout);
    srv = await serve({ root: join(dir, "store"), listen: "127.0.0.1:0", tlsCert: join(dir, "cert.pem"), tlsKey: join(dir, "key.pem"), htpasswd: join(dir, "htpasswd") });
  });
  afterAll(async () => {
    await srv?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("skopeo pushes and pulls over verified TLS with credentials; wrong credentials fail", async () => {
    expect(srv.url).toMatch(/^https:\/\//);
    const certs = join(dir, "certs");
    await skopeo("copy", "-q", "--dest-cert-dir", certs, "--dest-creds", `alice:${password}`, `oci:${FIXTURES}:single`, `docker://${srv.host}/secure/single:v1`);
    expect(await rawDigest(`docker://${srv.host}/secure/single:v1`, "--cert-dir", certs, "--creds", `alice:${password}`)).toBe((await fixtureDigests()).get("single"));
    await expect(rawDigest(`docker://${srv.host}/secure/single:v1`, "--cert-dir", certs, "--creds", "alice:wrong")).rejects.toThrow(/unauthorized|authentication required|401/i);
    // Without the CA, the certificate is not trusted.
    await expect(rawDigest(`docker://${srv.host}/secure/single:v1`, "--creds", `alice:${password}`)).rejects.toThrow(/certificate/i);
  });
});
