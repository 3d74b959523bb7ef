// bench.mjs helper ("delta"): a changed version of some corpus images — each gets one more layer
// of incompressible data — written as an OCI layout, to push under a new tag.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const sha256 = (buf) => `sha256:${createHash("sha256").update(buf).digest("hex")}`;

/**
 * Writes to `out` an OCI layout holding, for each name of `names` (an image manifest of the
 * corpus layout `corpusDir`), the same image plus one layer made by `layer(seed)` (a tar Buffer).
 */
export function writeChangedImages(corpusDir, out, names, layer) {
  mkdirSync(join(out, "blobs/sha256"), { recursive: true });
  const blob = (d) => readFileSync(join(corpusDir, "blobs/sha256", d.slice(7)));
  const put = (buf) => {
    const d = sha256(buf);
    writeFileSync(join(out, "blobs/sha256", d.slice(7)), buf);
    return d;
  };
  const index = JSON.parse(readFileSync(join(corpusDir, "index.json"), "utf8"));
  const entries = names.map((name) => {
    const entry = index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === name);
    const manifest = JSON.parse(blob(entry.digest));
    for (const l of manifest.layers) put(blob(l.digest));
    const added = layer(`${name}-changed`);
    const config = JSON.parse(blob(manifest.config.digest));
    config.rootfs.diff_ids.push(sha256(added));
    const configBytes = Buffer.from(JSON.stringify(config));
    manifest.config = { ...manifest.config, digest: put(configBytes), size: configBytes.length };
    manifest.layers.push({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: put(added), size: added.length });
    const bytes = Buffer.from(JSON.stringify(manifest));
    return { mediaType: manifest.mediaType, digest: put(bytes), size: bytes.length, annotations: { "org.opencontainers.image.ref.name": name } };
  });
  writeFileSync(join(out, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(out, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: entries }));
}
