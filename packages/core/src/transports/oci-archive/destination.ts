/**
 * Writes an image into an OCI archive (a tar of an OCI image layout), atomically: blobs and
 * manifests are staged in an OCI layout in a temporary directory beside PATH (the layout code,
 * verified writes); `commit()` writes the whole archive to a temporary file beside PATH and renames
 * it onto PATH. Until then nothing at PATH changes, and `close()` without a commit removes the
 * staging directory.
 *
 * Beyond skopeo (which replaces the archive with a one-image archive): when PATH already is an OCI
 * archive, its other images are kept and the named image is added, or replaces the image of the
 * same name (where an `oci:` layout keeps the old image unnamed). Blobs the archive already
 * holds are not copied again, and blobs only the replaced image used are dropped. A PATH that is
 * not an OCI archive (another file, a damaged archive) is replaced, as skopeo does. Commits of
 * several writers to one archive are serialised by a lock file beside it, so none is lost.
 * The staging costs the new blobs' size once more in disk space, beside PATH, until commit.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
import { promises as fs } from "node:fs";
import { basename, dirname, join } from "node:path";
import { type Readable, pipeline } from "node:stream";
import { type Digest, parseDigest, VerifyingStream } from "../../digest.js";
import { AirlockError, isAirlockError } from "../../errors.js";
import { withFileLock } from "../../fsutil.js";
import { InflightWrites, ioError } from "../../layout/files.js";
import { addIndexEntry, emptyIndex, INDEX_FILE, OCI_LAYOUT_FILE, OCI_LAYOUT_VERSION, OciLayout, refName } from "../../layout/layout.js";
import { type Descriptor, Manifest } from "../../manifest.js";
import { TarWriter } from "../docker-archive/tarfile.js";
import { OCI_DESTINATION_CAPABILITIES } from "../oci/destination.js";
import type { ImageDestination, PutManifestOptions, SystemContext } from "../types.js";
import { layoutBlobPath, OciArchive } from "./archive.js";
import type { OciArchiveReference } from "./reference.js";

/**
 * Where a blob written at commit comes from: the staging layout, the archive as it is at commit,
 * or the archive as it was when the destination was opened (still readable through its open file
 * when another writer has replaced PATH since: a blob reused from it is never lost).
 */
type BlobOrigin = "stage" | "archive" | "opened";

/** The lock file that serialises commits to the archive at `path` (hidden, beside it). */
export function archiveLockPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.lock`);
}

/**
 * Opens the archive at `path` if it is a readable OCI archive; undefined when there is no file or
 * it is not an OCI archive (it will be replaced). Other errors (permissions, I/O) are thrown.
 */
async function openExisting(path: string, ctx: SystemContext): Promise<OciArchive | undefined> {
  try {
    return await OciArchive.open(path, { tmpDir: ctx.tmpDir, what: `oci-archive:${path}` });
  } catch (err) {
    if (isAirlockError(err, "ERR_IMAGE_NOT_FOUND") || isAirlockError(err, "ERR_INVALID_LAYOUT") || isAirlockError(err, "ERR_MANIFEST_INVALID")) return undefined;
    throw err;
  }
}

/** An {@link ImageDestination} that adds one image to an OCI archive at commit. */
export class OciArchiveImageDestination implements ImageDestination {
  readonly reference: OciArchiveReference;
  readonly capabilities = OCI_DESTINATION_CAPABILITIES;
  private readonly ctx: SystemContext;
  private readonly stageDir: string;
  private readonly stage: OciLayout;
  /** The archive as it was when opened, for reusing its blobs; re-read at commit. */
  private readonly existing: OciArchive | undefined;
  private readonly inflight = new InflightWrites();
  private topLevel: Manifest | undefined;
  private committed = false;
  private closed = false;

  private constructor(reference: OciArchiveReference, ctx: SystemContext, stageDir: string, stage: OciLayout, existing: OciArchive | undefined) {
    this.reference = reference;
    this.ctx = ctx;
    this.stageDir = stageDir;
    this.stage = stage;
    this.existing = existing;
  }

  /**
   * Opens `ref` for writing: PATH's directory must exist, and PATH must not be a directory. Creates
   * only the staging directory beside PATH.
   */
  static async open(ref: OciArchiveReference, ctx: SystemContext = {}): Promise<OciArchiveImageDestination> {
    if (ref.position !== undefined) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot write to ${ref}: @N selects an existing image for reading; name the image instead, e.g. oci-archive:${ref.path}:NAME`);
    }
    const st = await fs.stat(ref.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw ioError(`cannot write ${ref}`, err);
    });
    if (st?.isDirectory()) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot write ${ref}: ${ref.path} is a directory; oci-archive: writes a tar file (use oci:${ref.path} for a layout directory)`);
    }
    const dir = dirname(ref.path);
    let stageDir: string;
    try {
      stageDir = await fs.mkdtemp(join(dir, `.${basename(ref.path)}.airlock-`));
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === "ENOENT") {
        throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot write ${ref}: the directory ${dir} does not exist; create it first`, { cause });
      }
      throw ioError(`cannot write ${ref}: cannot create a staging directory in ${dir}`, cause);
    }
    try {
      const stage = await OciLayout.open(stageDir, { create: true });
      const existing = st ? await openExisting(ref.path, ctx) : undefined;
      return new OciArchiveImageDestination(ref, ctx, stageDir, stage, existing);
    } catch (err) {
      await fs.rm(stageDir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** True when the blob is staged already or the existing archive holds it (it is then carried over at commit). */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    if (await this.stage.hasBlob(desc)) return true;
    return this.existing?.hasBlob(desc.digest, desc.size) ?? false;
  }

  /** Stages a blob: temporary file, verified against `desc`, renamed; nothing is kept on failure. */
  putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal): Promise<void> {
    return this.inflight.run((s) => this.stage.writeBlob({ digest: desc.digest, size: desc.size }, stream, s), signal);
  }

  /** True when a manifest with this digest is staged or in the existing archive, and hashes to it. */
  async hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    try {
      if (await this.stage.hasBlob({ digest: parseDigest(digest) })) {
        Manifest.parse(await this.stage.readBlobBytes(digest), { expected: digest });
        return true;
      }
      if (this.existing?.hasBlob(digest)) {
        await this.existing.manifest(digest);
        return true;
      }
    } catch {
      // A damaged or foreign blob is not the manifest: it is written again.
    }
    return false;
  }

  /** Stages the manifest's exact bytes; the top-level one is named at commit. */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    options.signal?.throwIfAborted();
    await this.inflight.run(() => this.stage.writeBlobBytes(manifest.bytes, manifest.digest));
    if (options.topLevel) this.topLevel = manifest;
  }

  /**
   * Writes the archive: under the archive's lock, re-reads PATH (another writer may have committed
   * since open), adds the image to its index.json, and writes `oci-layout`, every blob an image of
   * the new index.json refers to (verified while copied), and index.json last, to a temporary file
   * that is renamed onto PATH.
   */
  async commit(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const top = this.topLevel;
    if (!top) throw new AirlockError("ERR_DESTINATION", `nothing to commit to ${this.reference}: no top-level manifest was written`);
    const path = this.reference.path;
    await withFileLock(archiveLockPath(path), async () => {
      const current = await openExisting(path, this.ctx);
      try {
        // The image that had the name is replaced (an oci: layout would keep it unnamed).
        const base = current?.index ?? emptyIndex();
        const name = this.reference.name;
        const others = name === undefined ? base : { ...base, manifests: base.manifests.filter((d) => refName(d) !== name) };
        const index = addIndexEntry(others, top.descriptor(), name);
        const blobs = await this.collect(index.manifests, current);
        const writer = await TarWriter.create(path);
        try {
          await writer.addBytes(OCI_LAYOUT_FILE, Buffer.from(JSON.stringify({ imageLayoutVersion: OCI_LAYOUT_VERSION })));
          for (const [digest, { size, from }] of blobs) {
            signal?.throwIfAborted();
            const what = `blob ${digest} for ${this.reference}`;
            await writer.addFile(layoutBlobPath(digest), size, () => this.openVerified(digest, size, from, current, what, signal), what);
          }
          await writer.addBytes(INDEX_FILE, Buffer.from(JSON.stringify(index)));
          await writer.commit();
        } catch (err) {
          await writer.abort();
          throw err;
        }
      } finally {
        await current?.close();
      }
    });
    this.committed = true;
  }

  /** Opens a staged or archived blob, verified against its digest and size while it is read. */
  private async openVerified(digest: Digest, size: number, from: BlobOrigin, current: OciArchive | undefined, what: string, signal?: AbortSignal): Promise<Readable> {
    const { stream } =
      from === "stage" ? await this.stage.readBlob(digest, { signal }) : from === "archive" ? (current as OciArchive).openBlob(digest, { signal }) : (this.existing as OciArchive).openBlob(digest, { signal });
    return pipeline(stream, new VerifyingStream({ digest, size }, what), () => {});
  }

  /**
   * Every blob the entries of `manifests` refer to — manifests, configs, layers, and a subject when
   * present — located in the staging layout or in the current archive. Throws ERR_DESTINATION when
   * one is in neither (the archive changed under a reused blob), ERR_* from parsing a damaged one.
   */
  private async collect(entries: Descriptor[], current: OciArchive | undefined): Promise<Map<Digest, { size: number; from: BlobOrigin }>> {
    const out = new Map<Digest, { size: number; from: BlobOrigin }>();
    const locate = async (d: Descriptor, kind: string, optional = false): Promise<BlobOrigin | undefined> => {
      if (await this.stage.hasBlob({ digest: d.digest, size: d.size })) return "stage";
      if (current?.hasBlob(d.digest, d.size)) return "archive";
      if (this.existing?.hasBlob(d.digest, d.size)) return "opened";
      if (optional) return undefined;
      throw new AirlockError("ERR_DESTINATION", `cannot write ${this.reference}: ${kind} ${d.digest} is neither staged nor in ${this.reference.path}; the archive is incomplete: run the copy again`);
    };
    const visit = async (d: Descriptor): Promise<void> => {
      if (out.has(d.digest)) return;
      const from = (await locate(d, "manifest")) as BlobOrigin;
      const what = `manifest ${d.digest} for ${this.reference}`;
      const m =
        from === "stage"
          ? Manifest.parse(await this.stage.readBlobBytes(d.digest), { mediaType: d.mediaType, expected: d.digest, what })
          : await ((from === "archive" ? current : this.existing) as OciArchive).manifest(d.digest, d.mediaType, what);
      out.set(d.digest, { size: m.bytes.length, from });
      if (m.isIndex) {
        for (const child of m.index.manifests) await visit(child);
      } else {
        for (const b of m.blobs()) {
          if (out.has(b.digest)) continue;
          out.set(b.digest, { size: b.size, from: (await locate(b, "blob")) as BlobOrigin });
        }
      }
      const subject = m.json.subject;
      if (subject && !out.has(subject.digest)) {
        const sfrom = await locate(subject, "subject", true);
        if (sfrom) out.set(subject.digest, { size: subject.size, from: sfrom });
      }
    };
    for (const e of entries) await visit(e);
    return out;
  }

  /** Without a commit, PATH was never touched: stops staged writes and removes the staging directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.committed) await this.inflight.abortAll();
    await this.existing?.close();
    await fs.rm(this.stageDir, { recursive: true, force: true }).catch(() => {});
  }
}

