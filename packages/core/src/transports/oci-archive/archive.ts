/**
 * Reading an OCI image layout inside a tar archive, by random access into the tar (never
 * extracting it): `oci-layout`, `index.json` and `blobs/<alg>/<hex>` as entries of a {@link TarFile}.
 * skopeo instead extracts the whole archive to a temporary directory first.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
import type { Readable } from "node:stream";
import { type Digest, digestAlgorithm, digestHex, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { INDEX_FILE, OCI_LAYOUT_FILE, parseLayoutIndex } from "../../layout/layout.js";
import { type IndexJSON, MAX_MANIFEST_SIZE, Manifest } from "../../manifest.js";
import { TarFile, type TarFileEntry } from "../docker-archive/tarfile.js";

/** The path of blob `digest` inside a layout: `blobs/<alg>/<hex>` (the digest is validated first). */
export function layoutBlobPath(digest: string): string {
  const d = parseDigest(digest);
  return `blobs/${digestAlgorithm(d)}/${digestHex(d)}`;
}

/** An OCI image layout read from a tar archive. */
export class OciArchive {
  /** The archive being read. */
  readonly tar: TarFile;
  /** The layout's index.json, parsed and validated. */
  readonly index: IndexJSON;

  private constructor(tar: TarFile, index: IndexJSON) {
    this.tar = tar;
    this.index = index;
  }

  /**
   * Reads the layout of an open archive: `oci-layout` must declare a 1.x layout and `index.json`
   * must be valid. Throws ERR_INVALID_LAYOUT naming what is missing or wrong.
   */
  static async read(tar: TarFile): Promise<OciArchive> {
    const marker = tar.resolve(OCI_LAYOUT_FILE);
    const indexEntry = tar.resolve(INDEX_FILE);
    if (!marker || !indexEntry) {
      const docker = tar.resolve("manifest.json") ? ` (it looks like a docker save archive: read it with docker-archive:${tar.path})` : "";
      throw new AirlockError("ERR_INVALID_LAYOUT", `${tar.what} is not an OCI image layout archive: it has no ${marker ? INDEX_FILE : OCI_LAYOUT_FILE}${docker}`);
    }
    let version: unknown;
    try {
      version = (JSON.parse((await tar.read(marker, 64 * 1024)).toString("utf8")) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch (cause) {
      if (cause instanceof AirlockError) throw cause;
      throw new AirlockError("ERR_INVALID_LAYOUT", `${OCI_LAYOUT_FILE} in ${tar.what} is not valid JSON`, { cause });
    }
    if (typeof version !== "string" || !/^1\.\d+\.\d+$/.test(version)) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${OCI_LAYOUT_FILE} in ${tar.what} declares image layout version ${JSON.stringify(version)}; airlock reads layout version 1.x`);
    }
    const index = parseLayoutIndex(await tar.read(indexEntry, MAX_MANIFEST_SIZE), `${INDEX_FILE} in ${tar.what}`);
    return new OciArchive(tar, index);
  }

  /** Opens the archive at `path` and reads its layout; closes the archive if that fails. */
  static async open(path: string, options: Parameters<typeof TarFile.open>[1] = {}): Promise<OciArchive> {
    const tar = await TarFile.open(path, options);
    try {
      return await OciArchive.read(tar);
    } catch (err) {
      await tar.close();
      throw err;
    }
  }

  /** The entry of blob `digest`, or undefined when the archive lacks it. */
  blob(digest: string): TarFileEntry | undefined {
    return this.tar.resolve(layoutBlobPath(digest));
  }

  /** Reports whether the archive holds blob `digest` (with `size`, when given and non-negative). */
  hasBlob(digest: string, size?: number): boolean {
    const e = this.blob(digest);
    return e !== undefined && (size === undefined || size < 0 || e.size === size);
  }

  /** The entry of blob `digest`; throws ERR_BLOB_NOT_FOUND naming the digest and the archive. */
  requireBlob(digest: string): TarFileEntry {
    const e = this.blob(digest);
    if (!e) throw new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${digest} is missing from ${this.tar.what} (no ${layoutBlobPath(digest)} in the archive); the archive is incomplete: write it again`);
    return e;
  }

  /** Reads and checks manifest `digest` (its bytes must hash to it); `mediaType` from its descriptor when known. */
  async manifest(digest: Digest, mediaType?: string, what = `manifest ${digest} in ${this.tar.what}`): Promise<Manifest> {
    const bytes = await this.tar.read(this.requireBlob(digest), MAX_MANIFEST_SIZE);
    return Manifest.parse(bytes, { mediaType, expected: digest, what });
  }

  /** Opens blob `digest` from byte `offset` as a stream straight from the archive. */
  openBlob(digest: string, options: { offset?: number; signal?: AbortSignal | undefined } = {}): { stream: Readable; size: number } {
    const e = this.requireBlob(digest);
    const offset = options.offset ?? 0;
    return { stream: this.tar.open(e, options), size: e.size - offset };
  }

  /** Closes the archive. */
  close(): Promise<void> {
    return this.tar.close();
  }
}
