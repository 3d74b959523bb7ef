/**
 * Memory stays bounded whatever the blob size: a 64 MiB layer streams from its source into the
 * bundle and out again into a destination without being held in memory or staged on disk.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, describe, expect, it } from "vitest";
import { type Digest, Digester } from "../digest.js";
import { AirlockError } from "../errors.js";
import { type Descriptor, Manifest } from "../manifest.js";
import { MANIFEST_MEDIA_TYPES, MediaType } from "../mediatype.js";
import type { ImageDestination, ImageReference, ImageSource, Transport } from "../transports/types.js";
import type { BundleEvent } from "./events.js";
import { exportBundle } from "./export.js";
import { importBundle } from "./import.js";
import { BundleReader } from "./reader.js";

const MiB = 1024 * 1024;
const CHUNKS = 64;
const RING = 32;

const tmp = mkdtempSync(join(tmpdir(), "airlock-stream-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * A generated 64 MiB layer: chunk i is a fixed random MiB stamped with i. The source hands out
 * buffers from a ring allocated up front, so the test's own memory does not grow while it runs —
 * and a consumer that kept chunks past the ring's size would write wrong bytes (caught by verify).
 */
class GeneratedLayer {
  readonly base = randomBytes(MiB);
  // Filled now, so that their pages are resident before memory is measured.
  readonly ring = Array.from({ length: RING }, () => Buffer.alloc(MiB, 1));
  produced = 0;

  chunk(i: number, into: Buffer): Buffer {
    this.base.copy(into);
    into.writeUInt32BE(i, 0);
    into.writeUInt32BE(i, MiB - 4);
    return into;
  }

  digest(): Digest {
    const d = new Digester();
    const scratch = Buffer.alloc(MiB);
    for (let i = 0; i < CHUNKS; i++) d.update(this.chunk(i, scratch));
    return d.digest();
  }

  stream(): Readable {
    const self = this;
    return Readable.from(
      (function* () {
        for (let i = 0; i < CHUNKS; i++) {
          self.produced += MiB;
          yield self.chunk(i, self.ring[i % RING] as Buffer);
        }
      })(),
      // Object mode hands each chunk over as it is (a byte-mode Readable would concatenate them).
      { highWaterMark: 2 },
    );
  }
}

const transport: Transport = {
  name: "generated",
  parseReference() {
    throw new AirlockError("ERR_UNSUPPORTED", "test transport");
  },
};

function generatedImage(layer: GeneratedLayer, layerDigest: Digest): ImageReference {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
  const configDesc: Descriptor = { mediaType: MediaType.OCIConfig, digest: new Digester().digest(), size: 0 };
  const cd = new Digester();
  cd.update(config);
  configDesc.digest = cd.digest();
  configDesc.size = config.length;
  const layerDesc: Descriptor = { mediaType: MediaType.OCILayer, digest: layerDigest, size: CHUNKS * MiB };
  const manifest = Manifest.fromJSON({ schemaVersion: 2, mediaType: MediaType.OCIManifest, config: configDesc, layers: [layerDesc] }, MediaType.OCIManifest);
  const ref: ImageReference = {
    transport,
    toString: () => "generated:big",
    dockerReference: () => undefined,
    newSource: async (): Promise<ImageSource> => ({
      reference: ref,
      getManifest: async () => manifest,
      getBlob: async (desc) => ({ stream: desc.digest === layerDigest ? layer.stream() : Readable.from([config]), size: desc.size }),
      close: async () => {},
    }),
    newDestination: async () => {
      throw new AirlockError("ERR_UNSUPPORTED", "read only");
    },
  };
  return ref;
}

/** A destination that hashes what it receives and keeps nothing but the digests. */
function hashingDestination(received: Map<string, Digest>): ImageReference {
  const ref: ImageReference = {
    transport,
    toString: () => "generated:sink",
    dockerReference: () => undefined,
    newSource: async () => {
      throw new AirlockError("ERR_UNSUPPORTED", "write only");
    },
    newDestination: async (): Promise<ImageDestination> => ({
      reference: ref,
      capabilities: { manifestMediaTypes: MANIFEST_MEDIA_TYPES, concurrentWrites: true, indexes: true },
      tryReuseBlob: async () => false,
      putBlob: async (desc, stream) => {
        const d = new Digester();
        await pipeline(
          stream,
          new Writable({
            write(chunk: Buffer, _enc, cb) {
              d.update(chunk);
              cb();
            },
          }),
        );
        received.set(desc.digest, d.digest());
      },
      hasManifest: async () => false,
      putManifest: async (m) => {
        received.set(m.digest, m.digest);
      },
      commit: async () => {},
      close: async () => {},
    }),
  };
  return ref;
}

// A full GC on demand, so that sampled RSS shows what is live rather than garbage not yet collected.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/**
 * Runs `fn` while sampling RSS (collecting garbage every few samples); returns the peak growth
 * over the RSS before it started.
 */
async function peakRssGrowth(fn: () => Promise<void>): Promise<number> {
  gc();
  const before = process.memoryUsage().rss;
  let peak = before;
  let n = 0;
  const timer = setInterval(() => {
    if (++n % 4 === 0) gc();
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, process.memoryUsage().rss) - before;
}

describe("streaming a 64 MiB layer", () => {
  it("exports and imports it with memory bounded and the bytes intact", async () => {
    const layer = new GeneratedLayer();
    const layerDigest = layer.digest();
    const out = join(tmp, "big.tar");
    let maxLag = 0;
    const onProgress = (e: BundleEvent) => {
      if (e.type === "blob-progress" && e.digest === layerDigest) maxLag = Math.max(maxLag, layer.produced - e.bytes);
    };
    const exportGrowth = await peakRssGrowth(async () => {
      await exportBundle([{ source: generatedImage(layer, layerDigest), name: "big" }], out, { onProgress, progressIntervalMs: 0 });
    });
    expect(statSync(out).size).toBeGreaterThan(CHUNKS * MiB);
    // Never more than a few MiB between what the source produced and what reached the file.
    expect(maxLag).toBeLessThanOrEqual(8 * MiB);
    // Loose (the pipeline needs a few MiB); holding the layer would cost 64 MiB.
    expect(exportGrowth).toBeLessThan(24 * MiB);

    const reader = await BundleReader.open(out);
    expect(reader.entry(`blobs/sha256/${layerDigest.slice(7)}`)?.size).toBe(CHUNKS * MiB);
    await reader.close();

    const received = new Map<string, Digest>();
    const importGrowth = await peakRssGrowth(async () => {
      await importBundle(out, { destinationFor: () => hashingDestination(received) });
    });
    expect(received.get(layerDigest)).toBe(layerDigest);
    expect(importGrowth).toBeLessThan(24 * MiB);
  });
});
