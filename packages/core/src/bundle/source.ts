/**
 * An ImageSource over one image of a bundle, so the copy pipeline can read from a bundle by name,
 * and a `bundle:` transport (`bundle:PATH:NAME`) built on it. Blobs are streamed out of the
 * archive; manifests are checked against their digests as they are read.
 */
import { type Digest, digestOf } from "../digest.js";
import { AirlockError } from "../errors.js";
import type { Descriptor, Manifest } from "../manifest.js";
import { DockerReference } from "../reference/docker.js";
import type { BlobReader, GetBlobOptions, ImageDestination, ImageReference, ImageSource, SignatureOptions, SignatureSource, SystemContext, Transport } from "../transports/types.js";
import { BundleReader } from "./reader.js";

/** The `bundle:` transport: `bundle:PATH:NAME` names image NAME of the bundle at PATH, `bundle:PATH` its only image (read only). */
export const bundleTransport: Transport = {
  name: "bundle",
  parseReference(spec: string): ImageReference {
    return BundleReference.parse(spec);
  },
};

/** A reference to one image of a bundle: `bundle:PATH:NAME`, or `bundle:PATH` for a bundle of one image. */
export class BundleReference implements ImageReference {
  readonly transport = bundleTransport;
  /** The bundle's path (a file, or the base name of its volumes). */
  readonly path: string;
  /** The image's name in the bundle; "" for the bundle's only image. */
  readonly name: string;

  constructor(path: string, name: string) {
    this.path = path;
    this.name = name;
  }

  /** Parses `PATH:NAME` (the name is everything after the first colon) or `PATH`. */
  static parse(spec: string): BundleReference {
    const i = spec.indexOf(":");
    if (i < 0 && spec !== "") return new BundleReference(spec, "");
    if (i <= 0 || i === spec.length - 1) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `invalid bundle reference ${JSON.stringify(spec)}: expected bundle:PATH:NAME, e.g. bundle:/media/usb/bundle.tar:docker.io/library/busybox:1.36`);
    }
    return new BundleReference(spec.slice(0, i), spec.slice(i + 1));
  }

  toString(): string {
    return this.name === "" ? `bundle:${this.path}` : `bundle:${this.path}:${this.name}`;
  }

  dockerReference(): string | undefined {
    if (this.name === "") return undefined;
    try {
      return DockerReference.parse(this.name).toString();
    } catch {
      return undefined;
    }
  }

  async newSource(_ctx?: SystemContext): Promise<ImageSource> {
    const reader = await BundleReader.open(this.path);
    try {
      let name = this.name;
      if (name === "") {
        const names = (await reader.images()).map((i) => i.name);
        if (names.length !== 1 || names[0] === undefined) {
          throw new AirlockError("ERR_AMBIGUOUS_IMAGE", `bundle ${this.path} holds ${names.length} images (${names.filter(Boolean).join(", ") || "none named"}): name one, as bundle:${this.path}:NAME`);
        }
        name = names[0];
      }
      return await bundleImageSource(reader, name, { reference: this, closeReader: true });
    } catch (err) {
      await reader.close();
      throw err;
    }
  }

  async newDestination(_ctx?: SystemContext): Promise<ImageDestination> {
    throw new AirlockError("ERR_UNSUPPORTED", `${this} cannot be written: bundles are written by airlock export (exportBundle), which plans the whole archive`);
  }
}

/** Options of {@link bundleImageSource}. */
export interface BundleSourceOptions {
  /** The reference the source reports (default: `bundle:PATH:NAME`). */
  reference?: ImageReference;
  /** Close the reader when the source is closed (default false: the caller owns it). */
  closeReader?: boolean;
}

/**
 * Returns an ImageSource reading image `name` of an open bundle. Throws ERR_IMAGE_NOT_FOUND when
 * the bundle has no image of that name.
 */
export async function bundleImageSource(reader: BundleReader, name: string, options: BundleSourceOptions = {}): Promise<ImageSource> {
  const top = await reader.image(name);
  return new BundleImageSource(reader, top, options.reference ?? new BundleReference(reader.path, name), options.closeReader ?? false);
}

/** The largest image signature airlock reads (containers/image allows 4 MiB). */
const MAX_SIGNATURE_SIZE = 4 * 1024 * 1024;

/**
 * Reads the signatures a bundle carries for the manifest `digest` (bundle.json `signatures`), in
 * their stored order, each checked against the sha256 bundle.json records for it. They are
 * untrusted bytes: only a trust policy makes them mean anything. [] when there are none.
 */
export async function readBundleSignatures(reader: BundleReader, digest: Digest): Promise<Uint8Array[]> {
  const meta = await reader.metadata();
  const listed = (meta?.signatures ?? []).filter((s) => s.manifest === digest).sort((a, b) => a.index - b.index);
  const out: Uint8Array[] = [];
  for (const s of listed) {
    const e = reader.entry(s.path);
    if (!e) throw new AirlockError("ERR_INVALID_LAYOUT", `signature ${s.path} of ${digest}, listed by airlock/bundle.json, is not in bundle ${reader.path}; run airlock verify`);
    const bytes = await reader.readEntry(e, MAX_SIGNATURE_SIZE);
    const got = digestOf(bytes);
    if (got !== s.digest || bytes.length !== s.size) {
      throw new AirlockError("ERR_DIGEST_MISMATCH", `signature ${s.path} in bundle ${reader.path} has digest ${got} (${bytes.length} bytes), airlock/bundle.json says ${s.digest} (${s.size} bytes): the bundle was altered; run airlock verify`);
    }
    out.push(bytes);
  }
  return out;
}

class BundleImageSource implements ImageSource, SignatureSource {
  readonly reference: ImageReference;
  private readonly reader: BundleReader;
  private readonly top: Descriptor;
  private readonly closeReader: boolean;
  /** Descriptors seen in indexes read so far, for the media types of their children. */
  private readonly known = new Map<string, Descriptor>();

  constructor(reader: BundleReader, top: Descriptor, reference: ImageReference, closeReader: boolean) {
    this.reader = reader;
    this.top = top;
    this.reference = reference;
    this.closeReader = closeReader;
  }

  async getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    const desc = digest === undefined ? this.top : (this.known.get(digest) ?? { digest });
    const m = await this.reader.getManifest(desc);
    if (m.isIndex) for (const d of m.index.manifests) this.known.set(d.digest, d);
    return m;
  }

  async getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    options.signal?.throwIfAborted();
    const offset = options.offset ?? 0;
    const stream = this.reader.openBlob(desc, { offset });
    return { stream, size: desc.size - offset };
  }

  /** The signatures the bundle carries for the top-level manifest, or for `options.instanceDigest`. */
  async getSignatures(options: SignatureOptions = {}): Promise<Uint8Array[]> {
    options.signal?.throwIfAborted();
    return readBundleSignatures(this.reader, options.instanceDigest ?? this.top.digest);
  }

  async close(): Promise<void> {
    if (this.closeReader) await this.reader.close();
  }
}
