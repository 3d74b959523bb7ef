/**
 * Reads an image from an OCI archive by random access into the tar: the image is chosen from
 * index.json when the source is opened (by name, by `@N`, or as the only entry); manifests and
 * blobs are byte ranges of the archive, never extracted. A gzip- or zstd-compressed archive is
 * decompressed once into a temporary file under the SystemContext's tmpDir (see TarFile).
 */
import { type Digest, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { selectIndexEntry } from "../../layout/layout.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import { isManifestMediaType } from "../../mediatype.js";
import type { BlobReader, GetBlobOptions, ImageSource, SystemContext } from "../types.js";
import { OciArchive } from "./archive.js";
import type { OciArchiveReference } from "./reference.js";

/** An {@link ImageSource} over one image of an OCI archive. */
export class OciArchiveImageSource implements ImageSource {
  readonly reference: OciArchiveReference;
  /** The archive being read. */
  readonly archive: OciArchive;
  /** The index.json entry the reference resolved to. */
  readonly descriptor: Descriptor;
  /** Descriptors seen in indexes read so far, for the media types of their children. */
  private readonly known = new Map<string, Descriptor>();

  private constructor(reference: OciArchiveReference, archive: OciArchive, descriptor: Descriptor) {
    this.reference = reference;
    this.archive = archive;
    this.descriptor = descriptor;
  }

  /** Opens `ref` for reading: indexes the archive and chooses the image from its index.json. */
  static async open(ref: OciArchiveReference, ctx: SystemContext = {}): Promise<OciArchiveImageSource> {
    const archive = await OciArchive.open(ref.path, { tmpDir: ctx.tmpDir, what: `oci-archive:${ref.path}` });
    try {
      const { descriptor } = selectIndexEntry(archive.index, { name: ref.name, position: ref.position }, `oci-archive:${ref.path}`, `oci-archive:${ref.path}`);
      if (!isManifestMediaType(descriptor.mediaType)) {
        throw new AirlockError("ERR_UNSUPPORTED_MEDIA_TYPE", `${ref} is a ${JSON.stringify(descriptor.mediaType)}, not an image or index; airlock reads OCI and Docker v2 manifests and indexes`);
      }
      return new OciArchiveImageSource(ref, archive, descriptor);
    } catch (err) {
      await archive.close();
      throw err;
    }
  }

  /** The top-level manifest (`digest` undefined) or the manifest with `digest`, checked against its digest. */
  async getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    const d = digest === undefined ? this.descriptor.digest : parseDigest(digest);
    const desc = digest === undefined ? this.descriptor : this.known.get(d);
    const entry = this.archive.requireBlob(d);
    if (desc && entry.size !== desc.size) {
      throw new AirlockError("ERR_SIZE_MISMATCH", `manifest ${d} of ${this.reference}: ${entry.size} bytes in the archive, its descriptor says ${desc.size}; the archive is corrupt`);
    }
    const m = await this.archive.manifest(d, desc?.mediaType, `manifest ${d} of ${this.reference}`);
    if (m.isIndex) for (const child of m.index.manifests) this.known.set(child.digest, child);
    return m;
  }

  /** Opens blob `desc.digest` (from `options.offset`) as a byte range of the archive. */
  async getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    options.signal?.throwIfAborted();
    return this.archive.openBlob(desc.digest, options);
  }

  /** Closes the archive (and removes a decompressed copy of it). */
  close(): Promise<void> {
    return this.archive.close();
  }
}
