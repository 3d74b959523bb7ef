/**
 * The CLI's signing glue on its own: registries.d loading and lookaside resolution, the lookaside
 * URL layout (core's writer against @airlock/sign's), lookaside reads over HTTP, which trust policy
 * applies, passphrase files, and the bundle-signing helpers the bundle verbs call.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { DockerReference, digestOf } from "@airlock/core";
import { lookasideSignatureURL } from "@airlock/sign";
import { beforeAll, describe, expect, it } from "vitest";
import {
  configuredLookasideStaging,
  loadRegistriesD,
  loadTrustPolicy,
  lookasideForReading,
  readPassphraseFile,
  registriesDir,
  signBundleMetadataWithKeyFile,
  verifyBundleMetadataWithKeyFiles,
} from "../../apps/airlock/src/signing/index.js";
import { lookasideURL, readLookasideSignatures, writeLookasideSignatures } from "../../packages/core/src/transports/docker/lookaside.js";
import { key, PASSPHRASE_FILE, workDir, writePolicy } from "./support.js";

let work: string;
let n = 0;
const fresh = (name = "t") => join(work, `${name}-${n++}`);
beforeAll(() => {
  work = workDir("airlock-sign-units-");
});

const DIGEST = digestOf(new TextEncoder().encode("a manifest"));

describe("lookaside URLs", () => {
  it("core writes where @airlock/sign (and containers/image) says signatures are", () => {
    const cases: [string, string][] = [
      ["file:///var/lib/containers/sigstore", "registry.example.com:5000/team/app:1"],
      ["file:///tmp/with%20space/", "busybox"],
      ["https://sigstore.example.com", "quay.io/org/app@" + DIGEST],
      ["https://sigstore.example.com/base/", "localhost/a/b/c:tag"],
      ["http://10.0.0.1:8080/sigs?x=1", "docker.io/library/alpine:3"],
    ];
    for (const [base, ref] of cases) {
      const r = DockerReference.parse(ref);
      for (const i of [1, 2, 17]) expect(lookasideURL(base, r.path, DIGEST, i).href).toBe(lookasideSignatureURL(base, r, DIGEST, i));
    }
  });

  it("reads signature-1.. over HTTP until a 404, and writes only file:// locations", async () => {
    const served = new Map([
      ["/sigs/team/app@sha256=" + DIGEST.slice(7) + "/signature-1", "first"],
      ["/sigs/team/app@sha256=" + DIGEST.slice(7) + "/signature-2", "second"],
    ]);
    const requests: string[] = [];
    const server: Server = createServer((req, res) => {
      requests.push(req.url ?? "");
      const body = served.get(req.url ?? "");
      res.writeHead(body === undefined ? 404 : 200).end(body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sigs`;
      const sigs = await readLookasideSignatures(base, "team/app", DIGEST, "test image");
      expect(sigs.map((s) => Buffer.from(s).toString())).toEqual(["first", "second"]);
      expect(requests).toHaveLength(3);
      await expect(writeLookasideSignatures(base, "team/app", DIGEST, [new Uint8Array([1])], "test image")).rejects.toThrow(/only file:\/\/ lookaside storage can be written/);
    } finally {
      server.close();
    }
  });

  it("replaces a file:// set: fewer new signatures remove the old extra ones", async () => {
    const base = `file://${fresh("store")}`;
    const enc = (s: string) => new TextEncoder().encode(s);
    await writeLookasideSignatures(base, "ns/app", DIGEST, [enc("a"), enc("b"), enc("c")], "x");
    await writeLookasideSignatures(base, "ns/app", DIGEST, [enc("z")], "x");
    expect((await readLookasideSignatures(base, "ns/app", DIGEST, "x")).map((s) => Buffer.from(s).toString())).toEqual(["z"]);
  });
});

describe("registries.d", () => {
  it("merges the directory's *.yaml files and resolves the most specific scope, staging first for writes", async () => {
    const dir = fresh("registries.d");
    mkdirSync(dir);
    writeFileSync(join(dir, "a.yaml"), "default-docker:\n  lookaside: https://sigs.example.com/default\n");
    writeFileSync(join(dir, "b.yaml"), 'docker:\n  "reg.example.com:5000":\n    lookaside: https://sigs.example.com/reg\n    lookaside-staging: file:///srv/staging\n  reg.example.com:5000/team/app:\n    sigstore: file:///srv/app\n');
    writeFileSync(join(dir, "ignored.yml"), "not: [valid");
    const { config } = await loadRegistriesD(dir);
    const ref = (s: string) => DockerReference.parse(s);
    expect(configuredLookasideStaging(config, ref("reg.example.com:5000/other:1"))).toBe("file:///srv/staging");
    expect(lookasideForReading(config, ref("reg.example.com:5000/other:1"))).toBe("https://sigs.example.com/reg");
    expect(configuredLookasideStaging(config, ref("reg.example.com:5000/team/app:2"))).toBe("file:///srv/app");
    expect(lookasideForReading(config, ref("quay.io/x/y:1"))).toBe("https://sigs.example.com/default");
    // default-docker gives a read location; with nothing else, writing uses it too (no staging).
    expect(configuredLookasideStaging(config, ref("quay.io/x/y:1"))).toBe("https://sigs.example.com/default");
  });

  it("nothing configured: nowhere to write, the built-in location to read; a missing directory is empty", async () => {
    const { config } = await loadRegistriesD(fresh("missing"));
    const ref = DockerReference.parse("reg.example.com/app:1");
    expect(configuredLookasideStaging(config, ref)).toBeUndefined();
    expect(lookasideForReading(config, ref)).toMatch(/^file:\/\/.*sigstore$/);
  });

  it("names the file and line of a YAML error, and both files of a conflict", async () => {
    const dir = fresh("bad.d");
    mkdirSync(dir);
    writeFileSync(join(dir, "x.yaml"), "docker:\n  reg.example.com:\n    lookaside: [unclosed\n");
    await expect(loadRegistriesD(dir)).rejects.toThrow(new RegExp(`parsing ${join(dir, "x.yaml")}:\\d+:\\d+: `));
    writeFileSync(join(dir, "x.yaml"), "default-docker:\n  lookaside: file:///a\n");
    writeFileSync(join(dir, "y.yaml"), "default-docker:\n  lookaside: file:///b\n");
    await expect(loadRegistriesD(dir)).rejects.toThrow(/"default-docker" defined both in .*x\.yaml.* and .*y\.yaml/);
  });

  it("reads --registries.d, else the user's directory when it exists, else /etc/containers/registries.d", () => {
    const home = fresh("home");
    expect(registriesDir("/explicit", home)).toBe("/explicit");
    expect(registriesDir(undefined, home)).toBe("/etc/containers/registries.d");
    mkdirSync(join(home, ".config/containers/registries.d"), { recursive: true });
    expect(registriesDir(undefined, home)).toBe(join(home, ".config/containers/registries.d"));
  });
});

describe("which trust policy applies", () => {
  it("--insecure-policy wins; --policy is read; the default file is enforced when one exists", async () => {
    const file = writePolicy(work, "reject", { default: [{ type: "reject" }] });
    expect(await loadTrustPolicy({ policy: file, insecurePolicy: true })).toBeUndefined();
    expect((await loadTrustPolicy({ policy: file }))?.path).toBe(file);
    await expect(loadTrustPolicy({ policy: join(work, "missing.json") })).rejects.toThrow(/cannot read the trust policy/);
    const home = fresh("home");
    const userPolicy = join(home, ".config/containers/policy.json");
    mkdirSync(join(home, ".config/containers"), { recursive: true });
    writeFileSync(userPolicy, readFileSync(file));
    expect((await loadTrustPolicy({}, { env: {}, homeDir: home }))?.path).toBe(userPolicy);
    expect((await loadTrustPolicy({}, { env: { CONTAINERS_POLICY_JSON: file }, homeDir: home }))?.path).toBe(file);
  });

  it("no policy file anywhere: none is enforced (skopeo would fail); a named but missing $CONTAINERS_POLICY_JSON is an error", async () => {
    expect(await loadTrustPolicy({}, { env: {}, homeDir: fresh("home"), exists: () => false })).toBeUndefined();
    await expect(loadTrustPolicy({}, { env: { CONTAINERS_POLICY_JSON: join(work, "nope.json") }, exists: () => false })).rejects.toThrow(/nope\.json/);
  });
});

describe("files and bundle signatures", () => {
  it("takes the first line of a passphrase file, without CR or LF", async () => {
    const f = fresh("pass");
    writeFileSync(f, "secret words\r\nsecond line\n");
    expect(await readPassphraseFile(f, "--passphrase-file")).toBe("secret words");
    await expect(readPassphraseFile(fresh("none"), "--passphrase-file")).rejects.toThrow(/cannot read the passphrase file .* \(--passphrase-file\)/);
  });

  it("signs bundle metadata with a key file and verifies it with public key files; altered metadata or another key is refused", async () => {
    const metadata = new TextEncoder().encode('{"bundle":"metadata","digests":["sha256:aa"]}\n');
    const signature = await signBundleMetadataWithKeyFile(metadata, { keyFile: key("protected.sec.asc"), passphraseFile: PASSPHRASE_FILE });
    const who = await verifyBundleMetadataWithKeyFiles(metadata, signature, [key("signer.pub.asc"), key("protected.pub.asc")]);
    expect(who.keyFingerprint).toMatch(/^[0-9A-F]{40}$/);
    const altered = new TextEncoder().encode('{"bundle":"metadata","digests":["sha256:ab"]}\n');
    await expect(verifyBundleMetadataWithKeyFiles(altered, signature, [key("protected.pub.asc")])).rejects.toMatchObject({ code: "ERR_SIGNATURE" });
    await expect(verifyBundleMetadataWithKeyFiles(metadata, signature, [key("signer.pub.asc")])).rejects.toMatchObject({ code: "ERR_SIGNATURE" });
    await expect(signBundleMetadataWithKeyFile(metadata, { keyFile: key("protected.sec.asc") })).rejects.toThrow(/passphrase/);
    await expect(verifyBundleMetadataWithKeyFiles(metadata, signature, [fresh("missing.asc")], "--key")).rejects.toThrow(/cannot read the key file .* \(--key\)/);
  });
});

