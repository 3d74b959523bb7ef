/**
 * Writing small OCI image layouts on disk for tests: blobs, image manifests over given layers, and
 * the index that names them (what `skopeo copy … oci:DIR:NAME` would leave).
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";

/** A blob written into a layout. */
export interface LayoutBlob {
  digest: string;
  size: number;
}

const LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** Writes `bytes` as a blob of the OCI layout `dir` (creating blobs/sha256/); returns its digest and size. */
export async function putLayoutBlob(dir: string, bytes: Buffer): Promise<LayoutBlob> {
  const hex = createHash("sha256").update(bytes).digest("hex");
  await fs.mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  await fs.writeFile(join(dir, "blobs", "sha256", hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/**
 * Writes an image of `layers` (blobs already in the layout, as tar+gzip layers) with a config for
 * linux/`architecture`; returns its manifest's digest and size, and its config's digest.
 */
export async function putLayoutImage(dir: string, layers: readonly LayoutBlob[], architecture = "amd64"): Promise<LayoutBlob & { config: string }> {
  const config = await putLayoutBlob(dir, Buffer.from(JSON.stringify({ architecture, os: "linux", rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) } })));
  const manifest = {
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: layers.map(({ digest, size }) => ({ mediaType: LAYER, digest, size })),
  };
  return { ...(await putLayoutBlob(dir, Buffer.from(JSON.stringify(manifest)))), config: config.digest };
}

/** Writes `oci-layout` and an `index.json` naming each image manifest (`org.opencontainers.image.ref.name`). */
export async function writeLayoutIndex(dir: string, images: Record<string, LayoutBlob>): Promise<void> {
  await fs.writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const manifests = Object.entries(images).map(([name, m]) => ({ mediaType: MANIFEST, digest: m.digest, size: m.size, annotations: { "org.opencontainers.image.ref.name": name } }));
  await fs.writeFile(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests }));
}
