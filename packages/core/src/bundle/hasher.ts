/**
 * Volume checksums computed while an export runs, instead of in a second pass at the end.
 *
 * A volume's sha256 must be computed in file order, but blobs are written in parallel and out of
 * order. The hasher keeps a frontier: everything before it is hashed. Entries written in one go
 * (descriptions, index.json, manifests, finished blobs) are read back from the page cache when the
 * frontier reaches them. When the frontier reaches a blob that is still downloading, it catches up
 * with what has been written and then follows the download live: each buffer is hashed as its
 * write completes, before the buffer is reused. A blob's tar header, written only after its data
 * is verified, is hashed from the plan (the exact bytes that will be written).
 *
 * For a large bundle, on a machine with a core to spare, the sha256 runs on a worker thread
 * (hash-worker.ts; on 2 CPUs, measured, the hand-off costs what the worker gives back). The
 * frontier moves as before, but what it would read back it hands to the worker as a file range
 * (the worker reads it itself), and what it follows live it copies into the worker's batches; a
 * volume's sum arrives asynchronously — {@link VolumeHasher.reach} waits for it. If the worker
 * fails, the volumes it was hashing lose their sums (`valid` turns false, the caller checksums the
 * files itself) and later volumes are hashed here.
 */
import { createHash } from "node:crypto";
import * as os from "node:os";
import { AirlockError } from "../errors.js";
import { HashWorker, WorkerHash } from "../hash-worker.js";
import { type BundlePlan, type PlannedEntry, type PlannedVolume, volumeAt } from "./plan.js";
import { END_OF_ARCHIVE_SIZE, paddedSize } from "./tar.js";
import type { VolumeFiles } from "./volumes.js";
import { WRITE_CHUNK_SIZE } from "./writer.js";

interface Span {
  start: number;
  end: number;
  /** The entry (absent for the end-of-archive marker). */
  entry?: PlannedEntry;
  /** Written completely (for a blob: data and header). */
  done: boolean;
  /** For a blob: bytes of data (and padding) written contiguously from its data offset. */
  written: number;
  /** For a blob: its header has been hashed (from the plan). */
  headerHashed: boolean;
  /** For a blob: the frontier follows its writes live. */
  attached: boolean;
}

/** Options of {@link VolumeHasher}. */
export interface VolumeHasherOptions {
  /**
   * Hash on a worker thread when the bundle is at least this many bytes; `Infinity` never does.
   * Starting the worker costs tens of milliseconds, which only a large bundle earns back. Default:
   * {@link VolumeHasher.workerMinSize}, and then only with {@link VolumeHasher.workerMinCpus} CPUs.
   */
  workerMinSize?: number;
}

/** An incremental sha256 whose digest is at hand at once (this thread) or later (a worker). */
interface VolumeHash {
  update(bytes: Uint8Array): unknown;
  digest(): string | Promise<string>;
}

/** A sha256 on this thread. */
function threadHash(): VolumeHash {
  const h = createHash("sha256");
  return { update: (bytes) => h.update(bytes), digest: () => h.digest("hex") };
}

/** Hashes each volume of a planned bundle as its bytes are written. */
export class VolumeHasher {
  /** Default of {@link VolumeHasherOptions.workerMinSize}: 64 MiB. */
  static workerMinSize = 64 * 1024 * 1024;
  /**
   * CPUs the default needs to hash off-thread: 3. On a 2-CPU machine paired export runs of the
   * bench corpus were no faster with the worker (median 2.84 s with, 2.67 s without): the source
   * registry, the main thread and the worker then share two cores.
   */
  static workerMinCpus = 3;
  /** sha256 (hex) of each volume, set once the frontier passed its end (and, off-thread, the digest arrived). */
  readonly sums: (string | undefined)[];
  /**
   * False when a retried blob made the sums untrustworthy (see {@link blobRestart}), or the hash
   * worker failed: the caller must checksum the files itself.
   */
  valid = true;
  /** The worker that hashes the volumes, when the bundle is large enough and one could start. */
  private worker: HashWorker | undefined;
  /** A worker was started: sums arrive asynchronously. */
  private readonly offThread: boolean;
  /** Digests awaited from the worker, by volume. */
  private readonly digests: (Promise<void> | undefined)[];
  private readonly plan: BundlePlan;
  private readonly files: VolumeFiles;
  private readonly spans: Span[];
  private readonly byEntry = new Map<PlannedEntry, Span>();
  private readonly hashes: (VolumeHash | undefined)[];
  private readonly buf = Buffer.allocUnsafe(WRITE_CHUNK_SIZE);
  private frontier = 0;
  private index = 0;
  private running = false;
  private dirty = false;
  private failure: unknown;
  private waiters: { pos: number; resolve: () => void; reject: (err: unknown) => void }[] = [];

  constructor(plan: BundlePlan, files: VolumeFiles, options: VolumeHasherOptions = {}) {
    this.plan = plan;
    this.files = files;
    this.hashes = plan.volumes.map(() => undefined);
    this.sums = plan.volumes.map(() => undefined);
    this.digests = plan.volumes.map(() => undefined);
    const cpus = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
    const offThread = options.workerMinSize !== undefined ? plan.size >= options.workerMinSize : plan.size >= VolumeHasher.workerMinSize && cpus >= VolumeHasher.workerMinCpus;
    if (offThread) this.worker = HashWorker.start({ files: files.paths });
    this.offThread = this.worker !== undefined;
    this.spans = plan.entries.map((entry) => {
      const s: Span = { start: entry.headerOffset, end: entry.dataOffset + paddedSize(entry.size), entry, done: false, written: 0, headerHashed: false, attached: false };
      this.byEntry.set(entry, s);
      return s;
    });
    this.spans.push({ start: plan.endOffset, end: plan.endOffset + END_OF_ARCHIVE_SIZE, done: false, written: 0, headerHashed: false, attached: false });
  }

  /** Records that `entry` (header, data and padding) is written. */
  written(entry: PlannedEntry): void {
    const s = this.span(entry);
    s.done = true;
    if (s.attached) {
      // Whatever the live writes did not cover is read back.
      s.attached = false;
      if (this.frontier >= s.end && this.spans[this.index] === s) {
        this.index++;
        this.settle();
      }
    }
    this.kick();
  }

  /** Records that the end-of-archive marker is written. */
  endWritten(): void {
    (this.spans.at(-1) as Span).done = true;
    this.kick();
  }

  /**
   * Records that `n` bytes of blob `entry`'s data region were written at logical position `pos`
   * from `buf` — called when the write completes, in order, before `buf` is reused.
   */
  blobWrite(entry: PlannedEntry, pos: number, buf: Uint8Array, n: number): void {
    const s = this.span(entry);
    s.written = Math.max(s.written, pos + n - entry.dataOffset);
    if (s.attached && pos <= this.frontier && this.frontier < pos + n) {
      this.feed(this.frontier, buf.subarray(this.frontier - pos, n));
      if (this.frontier >= s.end) this.detach(s);
    }
  }

  /**
   * Records that blob `entry` is being written again from its start (a retried download). If the
   * frontier already hashed some of its first attempt's bytes, the sums can no longer be trusted:
   * `valid` turns false and the caller must checksum the files itself.
   */
  blobRestart(entry: PlannedEntry): void {
    const s = this.span(entry);
    // Bytes of the failed attempt may already be hashed, or be being read back right now.
    const current = this.spans[this.index] === s;
    if ((this.frontier > entry.dataOffset && this.frontier <= s.end) || (current && this.running)) this.valid = false;
    s.written = 0;
    s.attached = false;
  }

  /**
   * Records that the first `n` bytes of blob `entry`'s data are on disk already (kept from an
   * earlier run): the frontier reads them back, then follows the writes from there.
   */
  blobResumed(entry: PlannedEntry, n: number): void {
    const s = this.span(entry);
    s.written = n;
    s.attached = false;
    this.kick();
  }

  /**
   * Resolves once everything before logical position `pos` is hashed, and the sums of the volumes
   * that end there or before are known (in `sums`, or `valid` is false).
   */
  reach(pos: number): Promise<void> {
    const reached = this.reachFrontier(pos);
    if (!this.offThread) return reached;
    return reached.then(() => Promise.all(this.plan.volumes.filter((v) => v.offset + v.size <= pos).map((v) => this.digests[v.number]))).then(() => {});
  }

  /** Stops the hash worker, if any (sums still awaited are lost: `valid` turns false). Call it when the export ends, whichever way. */
  close(): void {
    const w = this.worker;
    if (!w) return;
    this.worker = undefined;
    void w.close();
  }

  private reachFrontier(pos: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.frontier >= pos) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ pos, resolve, reject });
      this.kick();
    });
  }

  /** Volume `v`'s hash, started when the frontier first reaches it: on the worker while it works. */
  private hashOf(v: number): VolumeHash {
    let h = this.hashes[v];
    if (!h) {
      h = this.worker && !this.worker.failed ? this.worker.hash("sha256") : threadHash();
      this.hashes[v] = h;
    }
    return h;
  }

  /** Takes volume `v`'s digest: at once, or (from the worker) when it arrives. */
  private finish(v: number): void {
    const d = this.hashOf(v).digest();
    this.hashes[v] = undefined;
    if (typeof d === "string") {
      this.sums[v] = d;
      return;
    }
    this.digests[v] = d.then(
      (hex) => {
        this.sums[v] = hex;
      },
      () => {
        // The worker failed (or was closed): this volume must be checksummed from its file.
        this.valid = false;
      },
    );
    if (v === this.plan.volumes.length - 1) {
      // The last volume: the worker has nothing more to do once this digest is in.
      const w = this.worker;
      void this.digests[v]?.then(() => {
        if (this.worker === w) this.close();
      });
    }
  }

  private span(entry: PlannedEntry): Span {
    const s = this.byEntry.get(entry);
    if (!s) throw new AirlockError("ERR_INVALID_ARGUMENT", `internal error: ${entry.path} is not in the plan`);
    return s;
  }

  private detach(s: Span): void {
    s.attached = false;
    if (this.spans[this.index] === s) this.index++;
    this.settle();
    this.kick();
  }

  /**
   * Runs the frontier forward, once at a time. A change that arrives while a run is finishing sets
   * `dirty`, and the runner loops again before it stops — no change is ever left unprocessed.
   */
  private kick(): void {
    this.dirty = true;
    if (this.running || this.failure !== undefined) return;
    this.running = true;
    void (async () => {
      try {
        while (this.dirty) {
          this.dirty = false;
          await this.run();
        }
      } catch (err) {
        this.failure = err;
        for (const w of this.waiters.splice(0)) w.reject(err);
      } finally {
        this.running = false;
      }
    })();
  }

  private async run(): Promise<void> {
    while (this.index < this.spans.length) {
      const s = this.spans[this.index] as Span;
      if (s.attached) return;
      const e = s.entry;
      if (e?.kind === "blob" && !s.done) {
        // A blob still being written: hash its header from the plan, catch up, then follow it.
        if (!s.headerHashed) {
          this.feed(s.start, e.header);
          s.headerHashed = true;
        }
        const avail = e.dataOffset + s.written;
        if (this.frontier < avail) {
          await this.readBack(avail);
          continue;
        }
        if (this.frontier >= s.end) {
          this.index++;
          this.settle();
          continue;
        }
        s.attached = true;
        return;
      }
      if (!s.done) return;
      await this.readBack(s.end);
      this.index++;
      this.settle();
    }
  }

  /** Reads the file from the frontier to `to` and hashes it (on the worker, which reads it itself). */
  private async readBack(to: number): Promise<void> {
    while (this.frontier < to) {
      const v = volumeAt(this.plan.volumes, this.frontier);
      const h = this.hashOf(v);
      if (h instanceof WorkerHash) {
        const vol = this.plan.volumes[v] as PlannedVolume;
        const n = Math.min(to, vol.offset + vol.size) - this.frontier;
        h.updateFromFile(v, this.frontier - vol.offset, n);
        this.advance(v, n);
        continue;
      }
      const n = Math.min(this.buf.length, to - this.frontier);
      const got = await this.files.read(this.buf, 0, n, this.frontier);
      if (got !== n) throw new AirlockError("ERR_IO", `reading back the bundle at offset ${this.frontier}: got ${got} of ${n} bytes`);
      this.feed(this.frontier, this.buf.subarray(0, n));
    }
  }

  /** Hashes bytes at logical position `pos` (= the frontier) into the volumes they belong to. */
  private feed(pos: number, bytes: Uint8Array): void {
    if (pos !== this.frontier) throw new AirlockError("ERR_IO", `internal error: hashing at ${pos}, the frontier is at ${this.frontier}`);
    let off = 0;
    let v = volumeAt(this.plan.volumes, pos);
    while (off < bytes.length) {
      const vol = this.plan.volumes[v];
      if (!vol) throw new AirlockError("ERR_IO", `internal error: offset ${pos + off} is past the bundle's end`);
      const n = Math.min(bytes.length - off, vol.offset + vol.size - (pos + off));
      this.hashOf(v).update(bytes.subarray(off, off + n));
      off += n;
      if (pos + off === vol.offset + vol.size) {
        this.finish(v);
        v++;
      }
    }
    this.frontier = pos + bytes.length;
  }

  /** Moves the frontier `n` bytes on inside volume `v` (hashed by other means), finishing the volume at its end. */
  private advance(v: number, n: number): void {
    const vol = this.plan.volumes[v] as PlannedVolume;
    this.frontier += n;
    if (this.frontier === vol.offset + vol.size) this.finish(v);
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const left: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (this.frontier >= w.pos) w.resolve();
      else left.push(w);
    }
    this.waiters = left;
  }
}
