import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultCertDirs, isCertificateError, isPlainHttpResponse, loadTlsSettings } from "./tls.js";

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-tls-"));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe("cert dirs (containers-certs.d(5))", () => {
  it("adds every *.crt to the system roots and loads a .cert/.key pair", async () => {
    const d = join(dir, "full");
    await fs.mkdir(d);
    await fs.writeFile(join(d, "ca.crt"), "CA-1");
    await fs.writeFile(join(d, "other.crt"), "CA-2");
    await fs.writeFile(join(d, "client.cert"), "CERT");
    await fs.writeFile(join(d, "client.key"), "KEY");
    await fs.writeFile(join(d, "README"), "ignored");
    const s = await loadTlsSettings("r.example", { certDir: d });
    expect(s.verify).toBe(true);
    expect(s.ca?.length).toBe(rootCertificates.length + 2);
    expect(s.ca?.slice(-2)).toEqual(["CA-1", "CA-2"]);
    expect(s.cert).toBe("CERT");
    expect(s.key).toBe("KEY");
    expect(s.certDir).toBe(d);
  });

  it("refuses a client certificate without its key, and a key without its certificate", async () => {
    const a = join(dir, "nokey");
    await fs.mkdir(a);
    await fs.writeFile(join(a, "client.cert"), "CERT");
    await expect(loadTlsSettings("r.example", { certDir: a })).rejects.toThrow(/no matching key/);
    const b = join(dir, "nocert");
    await fs.mkdir(b);
    await fs.writeFile(join(b, "client.key"), "KEY");
    await expect(loadTlsSettings("r.example", { certDir: b })).rejects.toThrow(/no matching certificate/);
    await expect(loadTlsSettings("r.example", { certDir: join(dir, "missing") })).rejects.toThrow(/cannot read cert dir/);
  });

  it("uses the per-host default dirs, the user's first", async () => {
    const prev = process.env.XDG_CONFIG_HOME;
    process.env.XDG_CONFIG_HOME = join(dir, "config");
    try {
      expect(defaultCertDirs("r.example:5000")).toEqual([
        join(dir, "config", "containers", "certs.d", "r.example:5000"),
        "/etc/containers/certs.d/r.example:5000",
        "/etc/docker/certs.d/r.example:5000",
      ]);
      const hostDir = join(dir, "config", "containers", "certs.d", "r.example:5000");
      await fs.mkdir(hostDir, { recursive: true });
      await fs.writeFile(join(hostDir, "ca.crt"), "HOST-CA");
      expect((await loadTlsSettings("r.example:5000", {})).ca?.at(-1)).toBe("HOST-CA");
      expect((await loadTlsSettings("other.example", { tlsVerify: false })).ca).toBeUndefined();
      expect((await loadTlsSettings("other.example", { tlsVerify: false })).verify).toBe(false);
    } finally {
      if (prev === undefined) delete process.env.XDG_CONFIG_HOME;
      else process.env.XDG_CONFIG_HOME = prev;
    }
  });

  it("classifies TLS failures", () => {
    expect(isCertificateError({ code: "DEPTH_ZERO_SELF_SIGNED_CERT" })).toBe(true);
    expect(isCertificateError({ code: "ERR_TLS_CERT_ALTNAME_INVALID" })).toBe(true);
    expect(isCertificateError({ code: "ECONNRESET" })).toBe(false);
    expect(isPlainHttpResponse({ code: "ERR_SSL_WRONG_VERSION_NUMBER" })).toBe(true);
    expect(isPlainHttpResponse({ code: "EPROTO", message: "…:wrong version number:…" })).toBe(true);
    expect(isPlainHttpResponse({ code: "ECONNREFUSED" })).toBe(false);
  });
});
