/**
 * Reads an image from an OCI image layout. The image is chosen from index.json when the source is
 * opened (by name, by `@N`, or as the only entry); manifests are returned as their exact stored
 * bytes, checked against the digest that named them.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
import { type Digest, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { OciLayout, selectIndexEntry } from "../../layout/layout.js";
import { type Descriptor, Manifest } from "../../manifest.js";
import { isManifestMediaType } from "../../mediatype.js";
import { readSignatureFiles } from "../signatures.js";
import type { BlobReader, GetBlobOptions, ImageSource, SignatureOptions, SignatureSource } from "../types.js";
import type { OciReference } from "./reference.js";
import { ociSignaturePath } from "./signatures.js";

/** An {@link ImageSource} over one image of an OCI layout, with the signatures airlock keeps there (see signatures.ts). */
export class OciImageSource implements ImageSource, SignatureSource {
  readonly reference: OciReference;
  /** The layout being read. */
  readonly layout: OciLayout;
  /** The index.json entry the reference resolved to. */
  readonly descriptor: Descriptor;

  private constructor(reference: OciReference, layout: OciLayout, descriptor: Descriptor) {
    this.reference = reference;
    this.layout = layout;
    this.descriptor = descriptor;
  }

  /** Opens `ref` for reading: the layout must exist and index.json must name the image. */
  static async open(ref: OciReference): Promise<OciImageSource> {
    const layout = await OciLayout.open(ref.path);
    const index = await layout.readIndex();
    const { descriptor } = selectIndexEntry(index, { name: ref.name, position: ref.position }, ref.path);
    if (!isManifestMediaType(descriptor.mediaType)) {
      throw new AirlockError("ERR_UNSUPPORTED_MEDIA_TYPE", `${ref} is a ${JSON.stringify(descriptor.mediaType)}, not an image or index; airlock reads OCI and Docker v2 manifests and indexes`);
    }
    return new OciImageSource(ref, layout, descriptor);
  }

  /** The top-level manifest (`digest` undefined) or the manifest blob with `digest`. */
  async getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    const d = digest === undefined ? this.descriptor.digest : parseDigest(digest);
    const bytes = await this.layout.readBlobBytes(d);
    if (digest === undefined && bytes.length !== this.descriptor.size) {
      throw new AirlockError("ERR_SIZE_MISMATCH", `manifest ${d} of ${this.reference}: ${bytes.length} bytes, index.json says ${this.descriptor.size}; the layout is corrupt`);
    }
    return Manifest.parse(bytes, {
      mediaType: digest === undefined ? this.descriptor.mediaType : undefined,
      expected: d,
      what: `manifest ${d} of ${this.reference}`,
    });
  }

  /** Opens the blob `desc.digest` (from `options.offset`). ERR_BLOB_NOT_FOUND names the digest and the path. */
  getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    return this.layout.readBlob(desc.digest, options);
  }

  /** Reads `signatures/<alg>/<hex>/signature-1…` of the image's manifest (or of the instance) until one is missing. */
  getSignatures(options: SignatureOptions = {}): Promise<Uint8Array[]> {
    const digest = options.instanceDigest === undefined ? this.descriptor.digest : parseDigest(options.instanceDigest);
    return readSignatureFiles((n) => ociSignaturePath(this.layout.dir, digest, n), `${digest} of ${this.reference}`, options.signal);
  }

  /** Nothing to release: every read opens and closes its own file. */
  async close(): Promise<void> {}
}
