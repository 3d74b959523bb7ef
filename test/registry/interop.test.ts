/**
 * Interoperability with skopeo through the real registry: skopeo reads what airlock pushed, and
 * airlock reads what skopeo pushed, with the same digests — in every registry setup.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { digestOf, parseImageName } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RegistryMode, type RunningRegistry, startRegistry } from "../harness/registry.js";
import { contextFor, makeImage, pullImage, pushImage } from "./util.js";

const execFileP = promisify(execFile);

describe.each<RegistryMode>(["plain", "basic", "tls", "token"])("skopeo and airlock through a %s registry", (mode) => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  /** skopeo's flags to reach the registry: credentials, CA or plain HTTP. */
  const flags = (side: "src" | "dest" | "") => {
    const p = side ? `--${side}-` : "--";
    const out: string[] = [];
    if (reg.username) out.push(`${p}creds=${reg.username}:${reg.password}`);
    if (reg.certDir) out.push(`${p}cert-dir=${reg.certDir}`);
    if (!reg.certDir) out.push(`${p}tls-verify=false`);
    return out;
  };
  const skopeo = async (...args: string[]) => (await execFileP("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, REGISTRY_AUTH_FILE: "/nonexistent/auth.json" } })).stdout;

  it("skopeo reads what airlock pushed, and airlock reads what skopeo pushed, with the same digests", async () => {
    const image = makeImage([2000, 50_000]);
    const dest = await parseImageName(`docker://${reg.host}/interop/airlock:v1`).newDestination({ docker: contextFor(reg) });
    await pushImage(dest, image).finally(() => dest.close());

    const raw = await skopeo("inspect", "--raw", ...flags(""), `docker://${reg.host}/interop/airlock:v1`);
    expect(digestOf(raw)).toBe(image.manifest.digest);
    const tags = JSON.parse(await skopeo("list-tags", ...flags(""), `docker://${reg.host}/interop/airlock`));
    expect(tags).toEqual({ Repository: `${reg.host}/interop/airlock`, Tags: ["v1"] });

    await skopeo("copy", "--preserve-digests", ...flags("src"), ...flags("dest"), `docker://${reg.host}/interop/airlock:v1`, `docker://${reg.host}/interop/skopeo:v2`);
    const src = await parseImageName(`docker://${reg.host}/interop/skopeo:v2`).newSource({ docker: contextFor(reg) });
    try {
      const { manifest, blobs } = await pullImage(src);
      expect(manifest.digest).toBe(image.manifest.digest);
      for (const [d, data] of image.blobs) expect(blobs.get(d)?.equals(data)).toBe(true);
    } finally {
      await src.close();
    }
  });
});
