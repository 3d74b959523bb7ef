/**
 * Helpers of the registry tests: a small image built by hand (config blob, layer blobs, manifest)
 * and pushed or read through the transport contract.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import {
  type Descriptor,
  type Digest,
  type DockerContext,
  digestOf,
  type ImageDestination,
  type ImageSource,
  Manifest,
  MediaType,
} from "@airlock/core";
import type { RunningRegistry } from "../harness/registry.js";

/** A generated image: its blobs by digest and its manifest. */
export interface TestImage {
  manifest: Manifest;
  config: Descriptor;
  layers: Descriptor[];
  blobs: Map<string, Buffer>;
}

/** Builds an OCI image with one config and `layerSizes.length` layers of random bytes. */
export function makeImage(layerSizes: number[] = [4096], label = randomBytes(4).toString("hex")): TestImage {
  const blobs = new Map<string, Buffer>();
  const layers: Descriptor[] = layerSizes.map((n) => {
    const data = randomBytes(n);
    const d = digestOf(data);
    blobs.set(d, data);
    return { mediaType: MediaType.OCILayerGzip, digest: d, size: n };
  });
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Labels: { test: label } },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const config: Descriptor = { mediaType: MediaType.OCIConfig, digest: digestOf(configBytes), size: configBytes.length };
  blobs.set(config.digest, configBytes);
  const manifest = Manifest.fromJSON({ schemaVersion: 2, mediaType: MediaType.OCIManifest, config, layers }, MediaType.OCIManifest);
  return { manifest, config, layers, blobs };
}

/** Pushes `image` through a destination in the contract's order; commits unless `commit` is false. */
export async function pushImage(dest: ImageDestination, image: TestImage, commit = true): Promise<{ reused: number }> {
  let reused = 0;
  for (const desc of [image.config, ...image.layers]) {
    if (await dest.tryReuseBlob(desc)) {
      reused++;
      continue;
    }
    await dest.putBlob(desc, Readable.from([image.blobs.get(desc.digest) as Buffer]));
  }
  await dest.putManifest(image.manifest, { topLevel: true });
  if (commit) await dest.commit();
  return { reused };
}

/** Reads a whole stream into memory (tests only: blobs here are small). */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Reads an image back through a source and checks every blob; returns the manifest. */
export async function pullImage(src: ImageSource): Promise<{ manifest: Manifest; blobs: Map<string, Buffer> }> {
  const manifest = await src.getManifest();
  const blobs = new Map<string, Buffer>();
  for (const desc of manifest.blobs()) {
    const { stream } = await src.getBlob(desc);
    const data = await readAll(stream);
    if (digestOf(data) !== desc.digest) throw new Error(`blob ${desc.digest} read back with digest ${digestOf(data)}`);
    blobs.set(desc.digest, data);
  }
  return { manifest, blobs };
}

/** The DockerContext that reaches `reg` with its credentials and CA (fast retries for tests). */
export function contextFor(reg: RunningRegistry, extra: DockerContext = {}): DockerContext {
  const ctx: DockerContext = { retryDelayMs: 10 };
  if (reg.username !== undefined && reg.password !== undefined) ctx.credentials = { username: reg.username, password: reg.password };
  if (reg.certDir) ctx.certDir = reg.certDir;
  return { ...ctx, ...extra };
}

/** A digest that surely is not stored anywhere. */
export function unknownDigest(): Digest {
  return digestOf(randomBytes(16));
}
