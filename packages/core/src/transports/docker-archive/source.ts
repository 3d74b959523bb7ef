/**
 * Reads one image of a `docker save` archive. The image is chosen and read (manifest.json item,
 * config, where each layer is) when the source is opened; its manifest is the Docker v2s2 manifest
 * containers/image generates (see reader.ts), with uncompressed layers: a compressed layer in the
 * archive is decompressed as it is read, so the bytes match the diff ID the manifest names.
 */
import { Readable, pipeline } from "node:stream";
import type { Digest } from "../../digest.js";
import { decompressor } from "../../convert/compression.js";
import { AirlockError } from "../../errors.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import type { BlobReader, GetBlobOptions, ImageReference, ImageSource, SystemContext } from "../types.js";
import { type ArchiveImage, archiveImageManifest, DockerArchiveReader, type ImageSelector } from "./reader.js";
import type { DockerArchiveReference } from "./reference.js";

/** An {@link ImageSource} over one image of a `docker save` archive. */
export class DockerArchiveImageSource implements ImageSource {
  readonly reference: ImageReference;
  /** The archive being read. */
  readonly reader: DockerArchiveReader;
  /** The image the reference resolved to. */
  readonly image: ArchiveImage;
  private readonly manifest: Manifest;
  private readonly closeReader: boolean;

  private constructor(reference: ImageReference, reader: DockerArchiveReader, image: ArchiveImage, closeReader: boolean) {
    this.reference = reference;
    this.reader = reader;
    this.image = image;
    this.manifest = archiveImageManifest(image);
    this.closeReader = closeReader;
  }

  /**
   * A source over one image of an archive another transport opened (docker-daemon: reads
   * `docker save` output this way): the image `selector` chooses, reported as `reference`. The
   * reader is closed with the source when `closeReader` (default false: the caller owns it).
   */
  static async fromReader(reference: ImageReference, reader: DockerArchiveReader, selector: ImageSelector, options: { closeReader?: boolean } = {}): Promise<DockerArchiveImageSource> {
    const position = reader.choose(selector, String(reference));
    return new DockerArchiveImageSource(reference, reader, await reader.image(position), options.closeReader ?? false);
  }

  /**
   * Opens `ref` for reading: indexes the archive (decompressing a compressed archive into a
   * temporary file under `ctx.tmpDir` first), chooses the image and reads its config.
   */
  static async open(ref: DockerArchiveReference, ctx: SystemContext = {}): Promise<DockerArchiveImageSource> {
    const reader = await DockerArchiveReader.open(ref.path, { tmpDir: ctx.tmpDir, what: `docker-archive:${ref.path}` });
    try {
      const position = reader.choose({ ref: ref.ref, position: ref.position }, `docker-archive:${ref.path}`);
      return new DockerArchiveImageSource(ref, reader, await reader.image(position), true);
    } catch (err) {
      await reader.close();
      throw err;
    }
  }

  /** The generated v2s2 manifest; an archive holds no other manifest. */
  async getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    signal?.throwIfAborted();
    if (digest !== undefined && digest !== this.manifest.digest) {
      throw new AirlockError("ERR_IMAGE_NOT_FOUND", `${this.reference} has no manifest ${digest}: it holds one image, whose manifest is ${this.manifest.digest}`);
    }
    return this.manifest;
  }

  /** The config's bytes, or a layer as an uncompressed tar (decompressed on the fly when the archive stores it compressed). */
  async getBlob(desc: Descriptor, options: GetBlobOptions = {}): Promise<BlobReader> {
    options.signal?.throwIfAborted();
    const offset = options.offset ?? 0;
    if (desc.digest === this.image.configDigest) {
      const data = this.image.config.subarray(Math.min(offset, this.image.config.length));
      return { stream: Readable.from([data]), size: data.length };
    }
    const layer = this.image.layers.get(desc.digest);
    if (!layer) throw new AirlockError("ERR_BLOB_NOT_FOUND", `${this.reference} has no blob ${desc.digest}: it is neither the config nor a layer's diff ID`);
    if (layer.compression === "none") {
      return { stream: this.reader.tar.open(layer.entry, { offset, signal: options.signal }), size: layer.entry.size - offset };
    }
    if (offset !== 0) {
      throw new AirlockError("ERR_UNSUPPORTED", `${this.reference}: layer ${layer.path} is stored ${layer.compression}-compressed and cannot be read from an offset`);
    }
    const stream = pipeline(this.reader.tar.open(layer.entry, { signal: options.signal }), decompressor(layer.compression), () => {});
    return layer.size >= 0 ? { stream, size: layer.size } : { stream };
  }

  /** Closes the archive (and removes a decompressed copy of it) unless its reader belongs to the caller. */
  async close(): Promise<void> {
    if (this.closeReader) await this.reader.close();
  }
}
