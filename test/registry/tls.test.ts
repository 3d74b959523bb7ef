/**
 * TLS verification, cert dirs and the plain-HTTP fallback against the real registry, and the
 * docker:// reference grammar.
 */
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AirlockError, DockerImageReference, digestOf, parseImageName, RegistryClient } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { makeImage, pushImage } from "./util.js";

describe("TLS verification and plain HTTP", () => {
  let tls: RunningRegistry;
  let plain: RunningRegistry;
  beforeAll(async () => {
    [tls, plain] = await Promise.all([startRegistry({ mode: "tls" }), startRegistry({ mode: "plain" })]);
  });
  afterAll(async () => {
    await Promise.all([tls?.stop(), plain?.stop()]);
  });

  it("fails on an unknown CA with a message naming --tls-verify=false and --cert-dir; works with either", async () => {
    const image = makeImage([10]);
    const r = parseImageName(`docker://${tls.host}/ca/app:v1`);
    const dest = await r.newDestination({ docker: { certDir: tls.certDir! } });
    await pushImage(dest, image).finally(() => dest.close());

    const src = await r.newSource({ docker: { retryDelayMs: 10 } });
    try {
      const err = (await src.getManifest().catch((e: unknown) => e)) as AirlockError;
      expect(err.code).toBe("ERR_TLS");
      expect(err.message).toContain("--tls-verify=false");
      expect(err.message).toContain("--cert-dir");
      expect(err.message).toContain("--src-tls-verify");
    } finally {
      await src.close();
    }
    const insecure = await r.newSource({ docker: { tlsVerify: false } });
    try {
      expect((await insecure.getManifest()).digest).toBe(image.manifest.digest);
    } finally {
      await insecure.close();
    }
  });

  it("trusts a CA from the per-host certs.d directory without flags", async () => {
    const XDG = "XDG_CONFIG_HOME";
    const prev = process.env[XDG];
    const config = await fs.mkdtemp(join(tmpdir(), "airlock-certsd-"));
    const hostDir = join(config, "containers", "certs.d", tls.host);
    await fs.mkdir(hostDir, { recursive: true });
    await fs.copyFile(tls.caFile!, join(hostDir, "ca.crt"));
    process.env[XDG] = config;
    try {
      const client = new RegistryClient(tls.host, {});
      await client.ping().finally(() => client.close());
      expect(client.connection.base).toBe(`https://${tls.host}`);
    } finally {
      if (prev === undefined) delete process.env[XDG];
      else process.env[XDG] = prev;
      await fs.rm(config, { recursive: true, force: true });
    }
  });

  it("uses plain HTTP with --tls-verify=false, and on loopback without flags", async () => {
    for (const docker of [{ tlsVerify: false }, {}]) {
      const client = new RegistryClient(plain.host, docker);
      try {
        await client.ping();
        expect(client.connection.base).toBe(`http://${plain.host}`);
      } finally {
        await client.close();
      }
    }
  });

  it("names --tls-verify=false when a non-loopback registry answers HTTPS with HTTP", async () => {
    const { RegistryConnection } = await import("@airlock/core");
    // The reference names a non-loopback registry; the connection reaches the plain registry.
    const port = plain.host.split(":")[1];
    const conn = new RegistryConnection(`registry.example:${port}`, plain.host, { retryDelayMs: 10 });
    try {
      const err = (await conn.ping().catch((e: unknown) => e)) as AirlockError;
      expect(err.code).toBe("ERR_TLS");
      expect(err.message).toContain("server gave HTTP response to HTTPS client");
      expect(err.message).toContain("--tls-verify=false");
    } finally {
      await conn.close();
    }
    const ok = new RegistryConnection(`registry.example:${port}`, plain.host, { tlsVerify: false });
    try {
      await ok.ping();
      expect(ok.base).toBe(`http://${plain.host}`);
    } finally {
      await ok.close();
    }
  });

  it("parses docker:// references as skopeo does", () => {
    const r = parseImageName("docker://busybox") as DockerImageReference;
    expect(r.toString()).toBe("docker://busybox:latest");
    expect(r.dockerReference()).toBe("docker.io/library/busybox:latest");
    expect(parseImageName(r.toString()).toString()).toBe(r.toString());
    expect(() => parseImageName("docker:busybox")).toThrow(/must begin with "\/\/"/);
    expect(() => parseImageName(`docker://busybox:1@${digestOf("x")}`)).toThrow(/both a tag and digest/);
    expect(parseImageName(`docker://localhost:5000/a/b@${digestOf("x")}`).toString()).toBe(`docker://localhost:5000/a/b@${digestOf("x")}`);
    expect(r).toBeInstanceOf(DockerImageReference);
  });
});
