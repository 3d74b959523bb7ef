/**
 * `--tls-details FILE` (containers-tls-details.yaml(5)) against the real docker-registry over TLS:
 * a TLS 1.3 minimum works, a group the registry does not offer fails with a TLS error naming the
 * registry and the file, and a bad file is refused naming the file and the value.
 */
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTlsDetails } from "../../apps/airlock/src/tls-details.js";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { makeImage, pushImage } from "../registry/util.js";
import { runCli } from "../support/cli.js";

describe("parseTlsDetails", () => {
  it("reads the three fields and refuses anything else, naming the file", () => {
    expect(parseTlsDetails('minVersion: "1.3"\ncipherSuites: [TLS_AES_128_GCM_SHA256]\nnamedGroups:\n  - x25519\n', "t.yaml")).toEqual({
      minVersion: "1.3",
      cipherSuites: ["TLS_AES_128_GCM_SHA256"],
      namedGroups: ["x25519"],
    });
    expect(parseTlsDetails("", "t.yaml")).toEqual({});
    expect(() => parseTlsDetails("minVersion: 1.3\n", "t.yaml")).toThrow(/t\.yaml: minVersion must be a quoted string/);
    expect(() => parseTlsDetails("maxVersion: '1.3'\n", "t.yaml")).toThrow(/t\.yaml: unknown field "maxVersion"/);
    expect(() => parseTlsDetails("namedGroups: x25519\n", "t.yaml")).toThrow(/t\.yaml: namedGroups must be a list/);
    expect(() => parseTlsDetails("- a\n", "t.yaml")).toThrow(/t\.yaml: the file must be a YAML mapping/);
    expect(() => parseTlsDetails("minVersion: [\n", "t.yaml")).toThrow(/t\.yaml: not valid YAML/);
  });
});

describe("--tls-details against docker-registry over TLS", () => {
  let reg: RunningRegistry;
  let dir: string;
  let image: string;
  beforeAll(async () => {
    [reg, dir] = await Promise.all([startRegistry({ mode: "tls" }), fs.mkdtemp(join(tmpdir(), "airlock-tls-details-"))]);
    image = `docker://${reg.host}/details/app:v1`;
    const dest = await parseImageName(image).newDestination({ docker: { certDir: reg.certDir! } });
    await pushImage(dest, makeImage([64])).finally(() => dest.close());
  });
  afterAll(async () => {
    await reg?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  async function details(name: string, text: string): Promise<string> {
    const f = join(dir, name);
    await fs.writeFile(f, text);
    return f;
  }

  it("works with minVersion 1.3 and a TLS 1.2 suite list (TLS 1.3 suites cannot be restricted)", async () => {
    const f = await details("min13.yaml", 'minVersion: "1.3"\ncipherSuites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\nnamedGroups: [x25519, secp256r1]\n');
    const r = await runCli(["--tls-details", f, "inspect", "--cert-dir", reg.certDir!, image]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).Name).toBe(`${reg.host}/details/app`);
  });

  it("fails with a TLS error naming the registry and the file when the registry offers none of the groups", async () => {
    // Go's crypto/tls (docker-registry) has no X448.
    const f = await details("x448.yaml", "namedGroups: [x448]\n");
    const r = await runCli(["--tls-details", f, "inspect", "--cert-dir", reg.certDir!, "--retry-times", "0", image]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`TLS with ${reg.host} failed`);
    expect(r.stderr).toMatch(/handshake failure/i);
    expect(r.stderr).toContain(`allowed by ${f} (--tls-details)`);
  });

  it("applies to the registries of images.yaml too (lock and export)", async () => {
    const yaml = join(dir, "images.yaml");
    await fs.writeFile(yaml, `version: 1\nregistries:\n  "${reg.host}": { certDir: ${JSON.stringify(reg.certDir)} }\nimages:\n  - name: ${reg.host}/details/app\n    tags: [v1]\n`);
    const ok = await runCli(["--tls-details", await details("min13b.yaml", 'minVersion: "1.3"\n'), "export", "-q", "-f", yaml, "-o", join(dir, "b.tar")]);
    expect(ok.code).toBe(0);
    const f = await details("x448b.yaml", "namedGroups: [x448]\n");
    const r = await runCli(["--tls-details", f, "export", "-q", "--retry-times", "0", "-f", yaml, "-o", join(dir, "c.tar")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`allowed by ${f} (--tls-details)`);
  });

  it("refuses an unknown name, naming the file and the value", async () => {
    const f = await details("bad.yaml", "cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA255]\n");
    const r = await runCli(["--tls-details", f, "inspect", "--cert-dir", reg.certDir!, image]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${f}: unknown cipher suite "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA255"`);
  });
});
