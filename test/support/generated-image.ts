/**
 * Large test images without large files: a layer of deterministic pseudo-random bytes (AES-CTR
 * of zeros, ~1–2 GiB/s) that is generated again on every read, so a 1 GiB layer costs no disk
 * and no memory in the test process. The digest is computed by one pass when the image is made.
 */
import { createCipheriv, createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  AirlockError,
  type BlobReader,
  type Descriptor,
  type Digest,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  Manifest,
  type Transport,
} from "@airlock/core";

const CHUNK = 1024 * 1024;

/** A stream of `size` pseudo-random bytes determined by `seed`. */
export function randomStream(seed: string, size: number): Readable {
  const key = createHash("sha256").update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  let left = size;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(CHUNK, left);
      left -= n;
      this.push(cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n)));
    },
  });
}

async function digestOfStream(s: Readable): Promise<Digest> {
  const h = createHash("sha256");
  for await (const c of s) h.update(c as Buffer);
  return `sha256:${h.digest("hex")}` as Digest;
}

const transport: Transport = {
  name: "generated",
  parseReference() {
    throw new Error("generated images are made by generatedImage()");
  },
};

/** An image with one generated layer of `size` bytes, readable through the transport contract. */
export async function generatedImage(seed: string, size: number): Promise<ImageReference & { manifest: Manifest }> {
  const layer: Descriptor = { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: await digestOfStream(randomStream(seed, size)), size };
  const configBytes = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [layer.digest] } }));
  const config: Descriptor = { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${createHash("sha256").update(configBytes).digest("hex")}` as Digest, size: configBytes.length };
  const manifest = Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config, layers: [layer] })));
  const ref: ImageReference & { manifest: Manifest } = {
    manifest,
    transport,
    toString: () => `generated:${seed}`,
    dockerReference: () => undefined,
    async newSource(): Promise<ImageSource> {
      return {
        reference: ref,
        async getManifest() {
          return manifest;
        },
        async getBlob(desc: Descriptor): Promise<BlobReader> {
          if (desc.digest === layer.digest) return { stream: randomStream(seed, size), size };
          if (desc.digest === config.digest) return { stream: Readable.from([configBytes]), size: configBytes.length };
          throw new AirlockError("ERR_BLOB_NOT_FOUND", `no blob ${desc.digest}`);
        },
        async close() {},
      };
    },
    async newDestination(): Promise<ImageDestination> {
      throw new AirlockError("ERR_UNSUPPORTED", "generated images are read-only");
    },
  };
  return ref;
}
