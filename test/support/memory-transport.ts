/**
 * An in-memory transport for unit tests of the copy pipeline: a fake only in where bytes live,
 * with the destination contract's call order recorded and checked.
 */
import { Readable } from "node:stream";
import {
  AirlockError,
  type BlobReader,
  type Descriptor,
  type DestinationCapabilities,
  type Digest,
  digestOf,
  type GetBlobOptions,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  MANIFEST_MEDIA_TYPES,
  Manifest,
  type Transport,
} from "@airlock/core";

/** A store of blobs and manifests with named tops. */
export class MemoryStore {
  blobs = new Map<string, Buffer>();
  manifests = new Map<string, Manifest>();
  names = new Map<string, Digest>();
  /** Every destination call, in order, e.g. "putBlob sha256:…", "commit". */
  log: string[] = [];
  /** Bytes to hand out instead of the real blob (corruption tests). */
  tamper = new Map<string, Buffer>();
  capabilities: DestinationCapabilities = { manifestMediaTypes: MANIFEST_MEDIA_TYPES, concurrentWrites: true, indexes: true };
  getBlobCalls = 0;

  addBlob(data: Buffer | string, mediaType = "application/vnd.oci.image.layer.v1.tar+gzip"): Descriptor {
    const buf = Buffer.from(data);
    const digest = digestOf(buf);
    this.blobs.set(digest, buf);
    return { mediaType, digest, size: buf.length };
  }

  addManifest(m: Manifest, name?: string): Manifest {
    this.manifests.set(m.digest, m);
    if (name) this.names.set(name, m.digest);
    return m;
  }

  ref(name: string): ImageReference {
    return new MemoryReference(this, name);
  }

  /** `ref(name)`, but serving each blob in one chunk (the memory transport's 7-byte chunks are slow for large blobs). */
  wholeBlobsRef(name: string): ImageReference {
    return withGetBlob(this.ref(name), async (desc) => ({ stream: Readable.from([this.blobs.get(desc.digest) as Buffer]), size: desc.size }));
  }
}

/**
 * `ref`, whose sources read blobs with `getBlob` (given the source's own, to delegate to) and
 * everything else as `ref`'s do: a source that fails, cuts or counts its downloads.
 */
export function withGetBlob(ref: ImageReference, getBlob: (desc: Descriptor, own: ImageSource, options?: GetBlobOptions) => Promise<BlobReader>): ImageReference {
  return {
    transport: ref.transport,
    toString: () => ref.toString(),
    dockerReference: () => undefined,
    newDestination: () => ref.newDestination(),
    newSource: async () => {
      const src = await ref.newSource();
      return { reference: src.reference, getManifest: (d) => src.getManifest(d), close: () => src.close(), getBlob: (desc, options) => getBlob(desc, src, options) };
    },
  };
}

const memoryTransport: Transport = {
  name: "memory",
  parseReference() {
    throw new Error("memory references are created by MemoryStore.ref");
  },
};

class MemoryReference implements ImageReference {
  readonly transport = memoryTransport;
  constructor(
    readonly store: MemoryStore,
    readonly name: string,
  ) {}
  toString() {
    return `memory:${this.name}`;
  }
  dockerReference() {
    return undefined;
  }
  async newSource(): Promise<ImageSource> {
    const { store, name } = this;
    return {
      reference: this,
      async getManifest(digest?: Digest) {
        const d = digest ?? store.names.get(name);
        const m = d && store.manifests.get(d);
        if (!m) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `memory:${name} not found`);
        return m;
      },
      async getBlob(desc: Descriptor): Promise<BlobReader> {
        store.getBlobCalls++;
        const b = store.tamper.get(desc.digest) ?? store.blobs.get(desc.digest);
        if (!b) throw new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${desc.digest} not found`);
        // Small chunks, to exercise streaming.
        const chunks: Buffer[] = [];
        for (let i = 0; i < b.length; i += 7) chunks.push(b.subarray(i, i + 7));
        return { stream: Readable.from(chunks), size: b.length };
      },
      async close() {},
    };
  }
  async newDestination(): Promise<ImageDestination> {
    const { store, name } = this;
    let top: Manifest | undefined;
    let committed = false;
    return {
      reference: this,
      capabilities: store.capabilities,
      async tryReuseBlob(desc) {
        return store.blobs.has(desc.digest);
      },
      async putBlob(desc, stream) {
        const chunks: Buffer[] = [];
        for await (const c of stream) chunks.push(c as Buffer);
        const buf = Buffer.concat(chunks);
        store.log.push(`putBlob ${desc.digest}`);
        store.blobs.set(desc.digest, buf);
      },
      async hasManifest(digest) {
        return store.manifests.has(digest);
      },
      async putManifest(m, { topLevel }) {
        for (const child of m.isIndex ? m.index.manifests : m.blobs()) {
          const present = m.isIndex ? store.manifests.has(child.digest) : store.blobs.has(child.digest);
          if (!present) throw new Error(`contract violated: manifest ${m.digest} put before ${child.digest}`);
        }
        store.log.push(`putManifest ${m.digest}${topLevel ? " top" : ""}`);
        store.manifests.set(m.digest, m);
        if (topLevel) top = m;
      },
      async commit() {
        if (!top) throw new Error("contract violated: commit without a top-level manifest");
        store.log.push("commit");
        store.names.set(name, top.digest);
        committed = true;
      },
      async close() {
        store.log.push(committed ? "close" : "close (no commit)");
      },
    };
  }
}

/** Builds a small image (config + layers) in `store` and returns its manifest. */
export function makeImage(store: MemoryStore, opts: { layers: (string | Buffer)[]; arch?: string; docker?: boolean; name?: string }): Manifest {
  const config = store.addBlob(JSON.stringify({ architecture: opts.arch ?? "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }), opts.docker ? "application/vnd.docker.container.image.v1+json" : "application/vnd.oci.image.config.v1+json");
  const layers = opts.layers.map((l) => store.addBlob(l, opts.docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : "application/vnd.oci.image.layer.v1.tar+gzip"));
  const mediaType = opts.docker ? "application/vnd.docker.distribution.manifest.v2+json" : "application/vnd.oci.image.manifest.v1+json";
  const m = Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config, layers })));
  return store.addManifest(m, opts.name);
}

/** Builds an index over `images` in `store`. */
export function makeIndex(store: MemoryStore, images: { manifest: Manifest; arch: string; variant?: string }[], name?: string): Manifest {
  const manifests = images.map(({ manifest, arch, variant }) => manifest.descriptor({ platform: variant ? { os: "linux", architecture: arch, variant } : { os: "linux", architecture: arch } }));
  const m = Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests })));
  return store.addManifest(m, name);
}
