/**
 * Writes an image into an OCI archive (a tar of an OCI image layout), atomically and streamed: the
 * archive is written from the start into a temporary file beside PATH — `oci-layout`, then each
 * blob and manifest as soon as it has arrived and been verified — and `commit()` adds what the
 * existing archive contributes and `index.json` last, then renames the file onto PATH. Until then
 * nothing at PATH changes; `close()` without a commit removes the temporary file.
 *
 * Blobs arrive concurrently: each is first written (verified, through the layout code) into a
 * small staging layout beside PATH, appended to the archive, and its staged file removed at once,
 * so the extra disk space is that of the blobs in flight, not of the image (skopeo builds the
 * whole layout in a temporary directory, then tars it).
 *
 * Beyond skopeo (which replaces the archive with a one-image archive): when PATH already is an OCI
 * archive, its other images are kept and the named image is added, or replaces the image of the
 * same name (where an `oci:` layout keeps the old image unnamed). Blobs the archive already holds
 * are not copied again from the source, and blobs only the replaced image used are dropped. A PATH
 * that is not an OCI archive (another file, a damaged archive) is replaced, as skopeo does.
 * Commits of several writers to one archive are serialised by a lock file beside it, so none is
 * lost; each commit copies the kept images' blobs from the old archive into the new one.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 */
import { AppendQueue } from "../append-queue.js";
import { promises as fs } from "node:fs";
import { basename, dirname, join } from "node:path";
import { pipeline, type Readable } from "node:stream";
import { type Digest, parseDigest, VerifyingStream } from "../../digest.js";
import { AirlockError, isAirlockError } from "../../errors.js";
import { withFileLock } from "../../fsutil.js";
import { InflightWrites, ioError } from "../../layout/files.js";
import { addIndexEntry, emptyIndex, INDEX_FILE, OCI_LAYOUT_FILE, OCI_LAYOUT_VERSION, OciLayout, refName } from "../../layout/layout.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import { TarWriter } from "../docker-archive/tarfile.js";
import { OCI_DESTINATION_CAPABILITIES } from "../oci/destination.js";
import type { ImageDestination, PutManifestOptions, SystemContext } from "../types.js";
import { layoutBlobPath, OciArchive } from "./archive.js";
import type { OciArchiveReference } from "./reference.js";

/**
 * Where a blob the commit still has to add comes from: the archive as it is at commit, or the
 * archive as it was when the destination was opened (still readable through its open file when
 * another writer has replaced PATH since: a blob reused from it is never lost).
 */
type BlobOrigin = "archive" | "opened";

/** A blob streams straight into the archive when at most this many bytes are queued ahead of it. */
const DIRECT_WAIT_BYTES = 1024 * 1024;

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

/** An {@link ImageDestination} that streams one image into a new OCI archive, made PATH at commit. */
export class OciArchiveImageDestination implements ImageDestination {
  readonly reference: OciArchiveReference;
  readonly capabilities = OCI_DESTINATION_CAPABILITIES;
  private readonly ctx: SystemContext;
  private readonly stageDir: string;
  private readonly stage: OciLayout;
  private readonly writer: TarWriter;
  /** The archive as it was when opened, for reusing its blobs; re-read at commit. */
  private readonly existing: OciArchive | undefined;
  private readonly inflight = new InflightWrites();
  /** Blobs and manifests already in the new archive, with their sizes. */
  private readonly appended = new Map<Digest, number>();
  /** The manifests put, by digest (small; read again at commit to find what they refer to). */
  private readonly manifests = new Map<Digest, Manifest>();
  /** Appends to the tar, run one at a time. */
  private readonly appends = new AppendQueue();
  private topLevel: Manifest | undefined;
  private committed = false;
  private closed = false;

  private constructor(reference: OciArchiveReference, ctx: SystemContext, stageDir: string, stage: OciLayout, writer: TarWriter, existing: OciArchive | undefined) {
    this.reference = reference;
    this.ctx = ctx;
    this.stageDir = stageDir;
    this.stage = stage;
    this.writer = writer;
    this.existing = existing;
  }

  /**
   * Opens `ref` for writing: PATH's directory must exist, and PATH must not be a directory. Creates
   * only a staging directory and the temporary archive beside PATH.
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
    let writer: TarWriter | undefined;
    try {
      const stage = await OciLayout.open(stageDir, { create: true });
      const existing = st ? await openExisting(ref.path, ctx) : undefined;
      writer = await TarWriter.create(ref.path);
      await writer.addBytes(OCI_LAYOUT_FILE, Buffer.from(JSON.stringify({ imageLayoutVersion: OCI_LAYOUT_VERSION })));
      return new OciArchiveImageDestination(ref, ctx, stageDir, stage, writer, existing);
    } catch (err) {
      await writer?.abort();
      await fs.rm(stageDir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** Runs `fn` after every append queued before it (the archive is written sequentially). */
  private append(size: number, fn: () => Promise<void>): Promise<void> {
    return this.appends.run(size, fn);
  }

  /** True when the blob is in the new archive already, or the existing archive holds it (it is then carried over at commit). */
  async tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    const size = this.appended.get(desc.digest);
    if (size !== undefined && (desc.size < 0 || size === desc.size)) return true;
    return this.existing?.hasBlob(desc.digest, desc.size) ?? false;
  }

  /**
   * Writes a blob. When its size is known and at most {@link DIRECT_WAIT_BYTES} are ahead of it in
   * the archive's queue (nothing, or a config), it streams straight into the archive, verified as it
   * goes (a mismatch fails the archive, and so the copy, and the temporary archive is removed).
   * Otherwise it is staged (verified against `desc`, nothing kept on failure), then appended, then
   * its staged file removed, so concurrent downloads never wait for each other.
   */
  putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal): Promise<void> {
    return this.inflight.run(async (s) => {
      const what = `blob ${desc.digest} for ${this.reference}`;
      if (desc.size >= 0 && this.appends.pendingBytes <= DIRECT_WAIT_BYTES && !this.appended.has(desc.digest)) {
        const verified = () => pipeline(stream, new VerifyingStream({ digest: desc.digest, size: desc.size }, what), () => {});
        const onAbort = () => stream.destroy(new AirlockError("ERR_ABORTED", `writing ${what} was aborted`));
        s.addEventListener("abort", onAbort, { once: true });
        try {
          await this.append(desc.size, async () => {
            if (s.aborted) throw s.reason;
            await this.writer.addFile(layoutBlobPath(desc.digest), desc.size, verified, what);
            this.appended.set(desc.digest, desc.size);
          });
        } catch (err) {
          stream.destroy();
          throw err;
        } finally {
          s.removeEventListener("abort", onAbort);
        }
        return;
      }
      await this.stage.writeBlob({ digest: desc.digest, size: desc.size }, stream, s);
      const path = this.stage.blobPath(desc.digest);
      try {
        const { size } = await fs.stat(path);
        await this.append(size, async () => {
          if (this.appended.has(desc.digest)) return;
          await this.writer.addFile(layoutBlobPath(desc.digest), size, async () => (await this.stage.readBlob(desc.digest, { signal: s })).stream, what);
          this.appended.set(desc.digest, size);
        });
      } finally {
        await fs.rm(path, { force: true }).catch(() => {});
      }
    }, signal);
  }

  /** True when a manifest with this digest was put, or is in the existing archive and hashes to it. */
  async hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    if (this.manifests.has(parseDigest(digest))) return true;
    try {
      if (this.existing?.hasBlob(digest)) {
        await this.existing.manifest(digest);
        return true;
      }
    } catch {
      // A damaged or foreign blob is not the manifest: it is written again.
    }
    return false;
  }

  /** Appends the manifest's exact bytes; the top-level one is named at commit. */
  async putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void> {
    options.signal?.throwIfAborted();
    this.manifests.set(manifest.digest, manifest);
    await this.inflight.run(() =>
      this.append(manifest.bytes.length, async () => {
        if (this.appended.has(manifest.digest)) return;
        await this.writer.addBytes(layoutBlobPath(manifest.digest), manifest.bytes);
        this.appended.set(manifest.digest, manifest.bytes.length);
      }),
    );
    if (options.topLevel) this.topLevel = manifest;
  }

  /**
   * Completes the archive: under the archive's lock, re-reads PATH (another writer may have
   * committed since open), adds the image to its index.json, appends every blob an image of the
   * new index.json refers to that is not in the new archive yet (from the old archive, verified
   * while copied), then index.json, and renames the archive onto PATH.
   */
  async commit(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const top = this.topLevel;
    if (!top) throw new AirlockError("ERR_DESTINATION", `nothing to commit to ${this.reference}: no top-level manifest was written`);
    await this.appends.drain();
    const path = this.reference.path;
    await withFileLock(archiveLockPath(path), async () => {
      const current = await openExisting(path, this.ctx);
      try {
        // The image that had the name is replaced (an oci: layout would keep it unnamed).
        const base = current?.index ?? emptyIndex();
        const name = this.reference.name;
        const others = name === undefined ? base : { ...base, manifests: base.manifests.filter((d) => refName(d) !== name) };
        const index = addIndexEntry(others, top.descriptor(), name);
        for (const [digest, { size, from }] of await this.missing(index.manifests, current)) {
          signal?.throwIfAborted();
          const archive = (from === "archive" ? current : this.existing) as OciArchive;
          const what = `blob ${digest} for ${this.reference}`;
          const open = () => pipeline(archive.openBlob(digest, { signal }).stream, new VerifyingStream({ digest, size }, what), () => {});
          await this.writer.addFile(layoutBlobPath(digest), size, open, what);
          this.appended.set(digest, size);
        }
        await this.writer.addBytes(INDEX_FILE, Buffer.from(JSON.stringify(index)));
        await this.writer.commit();
      } finally {
        await current?.close();
      }
    });
    this.committed = true;
  }

  /**
   * The blobs the entries of `manifests` refer to — manifests, configs, layers, and a subject when
   * present — that the new archive lacks, and where each is in the old archive. Throws
   * ERR_DESTINATION when one is nowhere, ERR_* from parsing a damaged manifest.
   */
  private async missing(entries: Descriptor[], current: OciArchive | undefined): Promise<Map<Digest, { size: number; from: BlobOrigin }>> {
    const out = new Map<Digest, { size: number; from: BlobOrigin }>();
    const seen = new Set<Digest>();
    const locate = (d: Descriptor, kind: string, optional = false): BlobOrigin | "new" | undefined => {
      const size = this.appended.get(d.digest);
      if (size !== undefined && (d.size < 0 || size === d.size)) return "new";
      if (current?.hasBlob(d.digest, d.size)) return "archive";
      if (this.existing?.hasBlob(d.digest, d.size)) return "opened";
      if (optional) return undefined;
      throw new AirlockError("ERR_DESTINATION", `cannot write ${this.reference}: ${kind} ${d.digest} is neither written nor in ${this.reference.path}; the archive is incomplete: run the copy again`);
    };
    const add = (d: Descriptor, kind: string, optional = false) => {
      if (seen.has(d.digest)) return;
      const from = locate(d, kind, optional);
      if (from === undefined) return;
      seen.add(d.digest);
      if (from !== "new") out.set(d.digest, { size: d.size, from });
    };
    const visit = async (d: Descriptor): Promise<void> => {
      if (seen.has(d.digest)) return;
      add(d, "manifest");
      const what = `manifest ${d.digest} for ${this.reference}`;
      const from = out.get(d.digest)?.from;
      const m = from === undefined ? this.manifests.get(d.digest) : await ((from === "archive" ? current : this.existing) as OciArchive).manifest(d.digest, d.mediaType, what);
      if (!m) throw new AirlockError("ERR_DESTINATION", `cannot write ${this.reference}: ${what} was written as a blob, not as a manifest`);
      if (m.isIndex) {
        for (const child of m.index.manifests) await visit(child);
      } else {
        for (const b of m.blobs()) add(b, "blob");
      }
      if (m.json.subject) add(m.json.subject, "subject", true);
    };
    for (const e of entries) await visit(e);
    return out;
  }

  /** Without a commit, PATH was never touched: stops writes, removes the temporary archive and the staging directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.committed) {
      await this.inflight.abortAll();
      await this.appends.settled();
      await this.writer.abort();
    }
    await this.existing?.close();
    await fs.rm(this.stageDir, { recursive: true, force: true }).catch(() => {});
  }
}
