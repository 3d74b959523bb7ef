/**
 * Writes an image into an OCI image layout. Manifests of all four supported media types are
 * stored as their exact bytes (airlock preserves digests; skopeo converts Docker manifests to
 * OCI). Blobs and manifests are blobs; only `commit()` touches index.json, under the layout's
 * lock, so several airlock processes can write different names into one layout at once without
 * losing an entry (skopeo loses entries there: containers/skopeo#1018).
 * @see https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
import type { Readable } from "node:stream";
import { type Digest, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { InflightWrites } from "../../layout/files.js";
import { addIndexEntry, OciLayout } from "../../layout/layout.js";
import { type Descriptor, Manifest } from "../../manifest.js";
import { MANIFEST_MEDIA_TYPES } from "../../mediatype.js";
import { writeSignatureFiles } from "../signatures.js";
import type { DestinationCapabilities, ImageDestination, PutManifestOptions, SignatureDestination, SignatureOptions } from "../types.js";
import type { OciReference } from "./reference.js";
import { ociSignaturePath } from "./signatures.js";

/** What an OCI layout destination stores: every supported manifest type, indexes, signatures (see signatures.ts), concurrent blob writes. */
export const OCI_DESTINATION_CAPABILITIES: DestinationCapabilities = {
  manifestMediaTypes: MANIFEST_MEDIA_TYPES,
  concurrentWrites: true,
  indexes: true,
  signatures: true,
};

/** An {@link ImageDestination} that adds one image to an OCI layout, with its signatures. */
export class OciImageDestination implements ImageDestination, SignatureDestination {
  readonly reference: OciReference;
  readonly capabilities = OCI_DESTINATION_CAPABILITIES;
  /** The layout being written. */
  readonly layout: OciLayout;
  private topLevel: Manifest | undefined;
  /** Blobs (and manifests) this destination wrote: removed again if it closes without commit in a layout with no image yet. */
  private readonly written = new Set<Digest>();
  private readonly inflight = new InflightWrites();
  /** Signatures to write at commit, by the digest of the manifest they sign. */
  private readonly signatures = new Map<Digest, readonly Uint8Array[]>();
  private committed = false;

  private constructor(reference: OciReference, layout: OciLayout) {
    this.reference = reference;
    this.layout = layout;
  }

  /**
   * Opens `ref` for writing without changing anything yet: the directory may be missing or empty
   * (it is created by the first write) or must already be an OCI layout.
   */
  static async open(ref: OciReference): Promise<OciImageDestination> {
    if (ref.position !== undefined) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot write to ${ref}: @N selects an existing image for reading; name the image instead, e.g. oci:${ref.path}:NAME`);
    }
    return new OciImageDestination(ref, await OciLayout.open(ref.path, { create: true }));
  }

  /** True when the blob is already in the layout with the expected size. */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return this.layout.hasBlob(desc);
  }

  /** Stores a blob: temporary file, verified against `desc`, renamed; nothing is kept on failure. */
  putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal): Promise<void> {
    return this.inflight.run(async (s) => {
      await this.layout.writeBlob({ digest: desc.digest, size: desc.size }, stream, s);
      this.written.add(desc.digest);
    }, signal);
  }

  /** True when a blob with this digest is stored and has exactly that digest. */
  async hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    if (!(await this.layout.hasBlob({ digest: parseDigest(digest) }))) return false;
    try {
      Manifest.parse(await this.layout.readBlobBytes(digest), { expected: digest });
      return true;
    } catch {
      return false;
    }
  }

  /** Stores the manifest's exact bytes as a blob; the top-level one is named at commit. */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    options.signal?.throwIfAborted();
    await this.inflight.run(() => this.layout.writeBlobBytes(manifest.bytes, manifest.digest));
    this.written.add(manifest.digest);
    if (options.topLevel) this.topLevel = manifest;
  }

  /**
   * Keeps the signatures of the top-level manifest (or of the instance) for commit, which replaces
   * that manifest's `signatures/<alg>/<hex>/signature-N` files with them. An empty list leaves the
   * stored ones alone (other names in the layout may share the manifest).
   */
  async putSignatures(signatures: readonly Uint8Array[], options: SignatureOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const digest = options.instanceDigest === undefined ? this.topLevel?.digest : parseDigest(options.instanceDigest);
    if (digest === undefined) throw new AirlockError("ERR_DESTINATION", `cannot store signatures in ${this.reference} before its manifest`);
    if (signatures.length > 0) this.signatures.set(digest, [...signatures]);
  }

  /**
   * Adds the top-level manifest to index.json — named by the reference's name, which moves from
   * any entry that had it — under the layout's lock, after checking (under the same lock) that
   * every blob and manifest it refers to is in the layout; index.json is replaced atomically. The
   * signatures are written under the same lock, just before index.json.
   */
  async commit(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const top = this.topLevel;
    if (!top) throw new AirlockError("ERR_DESTINATION", `nothing to commit to ${this.reference}: no top-level manifest was written`);
    await this.layout.updateIndex(async (index) => {
      await this.layout.assertComplete(top, String(this.reference));
      for (const [digest, signatures] of this.signatures) {
        await writeSignatureFiles((n) => ociSignaturePath(this.layout.dir, digest, n), signatures, `${digest} in ${this.reference}`);
      }
      return addIndexEntry(index, top.descriptor(), this.reference.name);
    });
    this.committed = true;
  }

  /**
   * Without a commit, index.json was never touched. Writes still running are stopped (their
   * temporary files removed), and if the layout has no image at all (it is new) the blobs this
   * destination wrote are removed too, and the directories it created if empty, so a failed copy
   * into a new layout leaves nothing behind.
   */
  async close(): Promise<void> {
    if (this.committed) return;
    await this.inflight.abortAll();
    await this.layout.abandon(this.written);
  }
}
