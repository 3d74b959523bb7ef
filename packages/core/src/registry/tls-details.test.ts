/**
 * `--tls-details` base options: the mapping of containers-tls-details.yaml(5) names onto OpenSSL
 * names, and that the secure context really applies them (against a Node TLS server limited to
 * TLS 1.2, which docker-registry cannot be configured to be).
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer, type Server } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseTlsOptions, loadTlsSettings, secureContextFor } from "./tls.js";

describe("baseTlsOptions (containers-tls-details.yaml(5) → Node TLS options)", () => {
  it("maps versions, TLS 1.2 suites and groups onto OpenSSL names, keeping every TLS 1.3 suite", () => {
    const o = baseTlsOptions(
      {
        minVersion: "1.2",
        cipherSuites: ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"],
        namedGroups: ["secp256r1", "X25519", "secp384r1"],
      },
      "/etc/tls.yaml",
    );
    expect(o).toEqual({
      source: "/etc/tls.yaml",
      minVersion: "TLSv1.2",
      ciphers: "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
      ecdhCurve: "P-256:X25519:P-384",
    });
    expect(baseTlsOptions({ minVersion: "1.3" }, "f")).toEqual({ source: "f", minVersion: "TLSv1.3" });
    expect(baseTlsOptions({}, "f")).toEqual({ source: "f" });
    // An empty list allows no TLS 1.2 suite: only TLS 1.3 remains.
    expect(baseTlsOptions({ cipherSuites: [] }, "f").ciphers).toBe("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  });

  it("refuses unknown versions, suites and groups, naming the file and the value", () => {
    expect(() => baseTlsOptions({ minVersion: "1.1" }, "/etc/tls.yaml")).toThrow(/\/etc\/tls\.yaml: unknown minVersion "1\.1"; known values: 1\.2, 1\.3/);
    expect(() => baseTlsOptions({ cipherSuites: ["ECDHE-RSA-AES128-GCM-SHA256"] }, "/etc/tls.yaml")).toThrow(/\/etc\/tls\.yaml: unknown cipher suite "ECDHE-RSA-AES128-GCM-SHA256"/);
    expect(() => baseTlsOptions({ cipherSuites: ["TLS_RSA_WITH_RC4_128_SHA"] }, "f")).toThrow(/f: cipher suite TLS_RSA_WITH_RC4_128_SHA is not available/);
    expect(() => baseTlsOptions({ namedGroups: ["prime256v1"] }, "/etc/tls.yaml")).toThrow(/\/etc\/tls\.yaml: unknown named group "prime256v1"/);
    expect(() => baseTlsOptions({ namedGroups: [] }, "f")).toThrow(/namedGroups is empty/);
  });
});

describe("the secure context applies the base options", () => {
  let dir: string;
  let server: Server;
  let port: number;
  beforeAll(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), "airlock-tls-details-"));
    await promisify(execFile)("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
    ]); // biome-ignore format: one command line
    server = createServer({ key: await fs.readFile(join(dir, "key.pem")), cert: await fs.readFile(join(dir, "cert.pem")), maxVersion: "TLSv1.2" }, (s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Connects with the settings' secure context: resolves to the negotiated cipher and group, or rejects. */
  async function handshake(details: Parameters<typeof baseTlsOptions>[0]): Promise<string> {
    const settings = await loadTlsSettings("localhost", { tlsVerify: false, certDir: dir, base: baseTlsOptions(details, "t.yaml") });
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false, secureContext: secureContextFor(settings) }, () => {
        const name = `${socket.getCipher().name} ${socket.getEphemeralKeyInfo()?.name ?? ""}`;
        socket.destroy();
        resolve(name);
      });
      socket.on("error", reject);
    });
  }

  it("negotiates the one TLS 1.2 suite allowed", async () => {
    expect(await handshake({ cipherSuites: ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"] })).toMatch(/^ECDHE-ECDSA-AES256-GCM-SHA384 /);
    expect(await handshake({ cipherSuites: ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"] })).toMatch(/^ECDHE-ECDSA-CHACHA20-POLY1305 /);
  });

  it("offers only the groups allowed", async () => {
    // The server prefers X25519, then P-256 (OpenSSL's order): without the restriction it picks X25519.
    expect(await handshake({})).toMatch(/ X25519$/);
    expect(await handshake({ namedGroups: ["secp384r1", "secp256r1"] })).toMatch(/ prime256v1$/);
  });

  it("fails against a TLS 1.2 server with minVersion 1.3, and with no common suite", async () => {
    await expect(handshake({ minVersion: "1.3" })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_SSL_/) });
    await expect(handshake({ cipherSuites: ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"] })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_SSL_/) });
  });
});
