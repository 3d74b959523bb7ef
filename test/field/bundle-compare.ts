/**
 * Test helper: a bundle described entry by entry, so that two exports of the same images can be
 * compared although their bundle ids and creation times differ by design.
 */
import { createHash } from "node:crypto";
import { BundleReader } from "@airlock/core";

/** Every entry of a bundle: path, size, place and content digest (bundle.json and volume descriptions without the bundle id and time). */
export async function describeBundle(path: string): Promise<string[]> {
  const reader = await BundleReader.open(path);
  const meta = await reader.metadata();
  const id = meta?.bundle as string;
  const out: string[] = [];
  try {
    for (const e of reader.entries()) {
      if (!e.path.startsWith("airlock/")) {
        // Blobs are hashed as they stream (they may be large).
        const h = createHash("sha256");
        for await (const c of reader.openEntry(e)) h.update(c as Buffer);
        out.push(`${e.path} ${e.size} ${e.volume}:${e.headerOffset} ${h.digest("hex")}`);
        continue;
      }
      let data = Buffer.from(await reader.readEntry(e, 64 * 1024 * 1024));
      if (e.path === "airlock/bundle.json") {
        // What differs between two runs by design: the bundle id, the creation time, and when the lock was resolved.
        const m = JSON.parse(data.toString("utf8"));
        m.bundle = "ID";
        m.created = "CREATED";
        if (m.lock) m.lock.generated = "GENERATED";
        data = Buffer.from(JSON.stringify(m));
      } else if (e.path.startsWith("airlock/")) {
        data = Buffer.from(data.toString("utf8").replaceAll(id, "ID"));
      }
      out.push(`${e.path} ${e.size} ${e.volume}:${e.headerOffset} ${createHash("sha256").update(data).digest("hex")}`);
    }
  } finally {
    await reader.close();
  }
  return out;
}
