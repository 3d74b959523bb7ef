/**
 * The base of a delta export: what the other side already holds, read from a receipt
 * (`airlock inventory`) or from an earlier bundle (its airlock/bundle.json lists every manifest and
 * blob it carried, and, for a delta, the base it relied on).
 */
import { promises as fs } from "node:fs";
import { AirlockError } from "../errors.js";
import { BundleReader } from "../bundle/reader.js";
import { type DeltaBase, parseReceipt, RECEIPT_MEDIA_TYPE } from "./receipt.js";

/**
 * Reads a delta base from `path`: a receipt (JSON with the receipt media type) or a bundle (a tar,
 * or the base name of its volumes). A lock, which only the CLI can parse, becomes a base with
 * {@link baseFromManifests}.
 */
export async function loadDeltaBase(path: string, signal?: AbortSignal): Promise<DeltaBase> {
  let head = "";
  try {
    const fh = await fs.open(path, "r");
    try {
      const buf = Buffer.alloc(512);
      const { bytesRead } = await fh.read(buf, 0, 512, 0);
      head = buf.subarray(0, bytesRead).toString("utf8");
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (head.trimStart().startsWith("{")) {
    const r = parseReceipt(await fs.readFile(path, "utf8"), path);
    return { source: `receipt ${path} (${r.registry}${r.prefix ? `/${r.prefix}` : ""}, ${r.created})`, manifests: new Set(r.manifests), blobs: new Set(r.blobs) };
  }
  const reader = await BundleReader.open(path, signal ? { signal } : {});
  try {
    const meta = await reader.metadata();
    if (!meta) throw new AirlockError("ERR_INVALID_ARGUMENT", `${path} is neither a receipt (${RECEIPT_MEDIA_TYPE}) nor a finished airlock bundle (no airlock/bundle.json); give a receipt from airlock inventory, an old lock or an old bundle`);
    const blobs = new Set<string>([...meta.blobs.map((b) => b.digest), ...(meta.base?.blobs ?? [])]);
    return { source: `bundle ${path} (${meta.bundle})`, manifests: new Set(meta.manifests.map((m) => m.digest)), blobs };
  } finally {
    await reader.close();
  }
}

/** A base of manifests only (e.g. from an old lock): the blobs of those manifests count as present. */
export function baseFromManifests(source: string, manifests: Iterable<string>): DeltaBase {
  return { source, manifests: new Set(manifests), blobs: new Set() };
}
