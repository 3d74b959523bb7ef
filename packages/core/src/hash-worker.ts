/**
 * Incremental hashes computed on a worker thread, so that hashing a large stream leaves the main
 * thread free for the I/O that produces it.
 *
 * One {@link HashWorker} is one `node:worker_threads` Worker holding any number of hash states by
 * id. {@link WorkerHash.update} copies the caller's bytes into a batch (the caller's buffer may be
 * reused as soon as it returns) and posts each full batch to the worker. Batches are slots of one
 * SharedArrayBuffer allocated when the worker starts: the bytes in flight can never exceed it, and
 * no memory is allocated or left for a garbage collector per batch (batches transferred as
 * ArrayBuffers are freed only by the worker's garbage collector, which runs rarely in a thread
 * that allocates nothing else: a 64 MiB export grew by 75 MiB that way). Commands (create, update
 * slot k with n bytes, digest) go through a queue in shared memory too, not `postMessage`, whose
 * cost per message would eat much of what the worker saves; the worker blocks on the queue while
 * it is empty. A slot is marked busy when posted and free again by the worker once hashed; when no
 * slot is free, `update` blocks the calling thread (`Atomics.wait`) until the worker frees one — a
 * slow worker slows the producer down instead of letting memory grow. Digests come back by
 * `postMessage`.
 *
 * {@link WorkerHash.updateFromFile} hashes a range of a file that the worker reads itself (with
 * its own descriptor and buffer): data already on disk then costs the calling thread nothing, not
 * even a copy.
 *
 * The worker runs from source text (`eval: true`) that only requires `node:worker_threads`,
 * `node:crypto` and `node:fs`, so it works the same from the TypeScript build, the esbuild bundle and a
 * `bun build --compile` executable, on Node, Bun and Deno. It never keeps the process alive by
 * itself (it is unref'ed except while a digest is awaited); {@link HashWorker.close} stops it.
 *
 * Failure is never silent: if the worker cannot be started, dies, or a hash fails, every digest
 * not yet delivered rejects with an {@link AirlockError}; the caller then computes the sum another
 * way (e.g. by reading the data again).
 */
import type { Worker } from "node:worker_threads";
import { workerThreads } from "./builtins.js";
import { AirlockError } from "./errors.js";

/** The hash algorithms a {@link HashWorker} computes. */
export const WORKER_HASH_ALGORITHMS = ["sha256", "sha384", "sha512"] as const;

/** A hash algorithm a {@link HashWorker} computes. */
export type WorkerHashAlgorithm = (typeof WORKER_HASH_ALGORITHMS)[number];

// The shared state, an Int32Array: counters, one busy flag per batch slot, then the command queue.
/** A counter the worker raises (and notifies) each time it frees a slot. */
const FREED = 0;
/** Commands written by the producer (a counter; notified). */
const HEAD = 1;
/** Commands taken by the worker (a counter; notified). */
const TAIL = 2;
/** Set to 1 to make the worker's loop end. */
const STOP = 3;
/** Slot k's busy flag (1 = posted, not yet hashed) is at SLOTS + k; the queue follows the flags. */
const SLOTS = 4;
/** Commands the queue holds; each is ENTRY Int32: op, hash id, and up to four arguments. */
const QUEUE_LENGTH = 64;
const ENTRY = 6;
const CREATE = 1; // id, algorithm index
const UPDATE = 2; // id, slot, length
const DIGEST = 3; // id
const READ = 4; // id, file index, position (high, low 32 bits), length
/** Most bytes one READ command covers (longer ranges are split, so that a stop is honoured soon). */
const READ_CHUNK = 8 * 1024 * 1024;

/**
 * Runs in the worker thread: a loop over the command queue (it blocks in `Atomics.wait` while the
 * queue is empty, and never returns to its event loop); digests go back with `postMessage`.
 */
const WORKER_SOURCE = `"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { algorithms, batchSize, slots, files } = workerData;
const fds = [];
let readBuf;
const state = new Int32Array(workerData.state);
const pool = new Uint8Array(workerData.pool);
const queue = ${SLOTS} + slots;
const hashes = new Map();
const message = (err) => String((err && err.message) || err);
let tail = 0;
for (;;) {
  if (Atomics.load(state, ${STOP}) !== 0) break;
  const head = Atomics.load(state, ${HEAD});
  if (tail === head) {
    Atomics.wait(state, ${HEAD}, head, 1000);
    continue;
  }
  const e = queue + (tail % ${QUEUE_LENGTH}) * ${ENTRY};
  const op = Atomics.load(state, e);
  const id = Atomics.load(state, e + 1);
  const a = Atomics.load(state, e + 2);
  const b = Atomics.load(state, e + 3);
  const c = Atomics.load(state, e + 4);
  const d = Atomics.load(state, e + 5);
  tail++;
  Atomics.store(state, ${TAIL}, tail);
  Atomics.notify(state, ${TAIL});
  if (op === ${CREATE}) {
    try {
      hashes.set(id, { hash: createHash(algorithms[a]) });
    } catch (err) {
      hashes.set(id, { error: message(err) });
    }
  } else if (op === ${UPDATE}) {
    const h = hashes.get(id);
    try {
      if (h && h.hash) h.hash.update(pool.subarray(a * batchSize, a * batchSize + b));
    } catch (err) {
      h.hash = undefined;
      h.error = message(err);
    } finally {
      Atomics.store(state, ${SLOTS} + a, 0);
      Atomics.add(state, ${FREED}, 1);
      Atomics.notify(state, ${FREED});
    }
  } else if (op === ${READ}) {
    const h = hashes.get(id);
    if (h && h.hash) {
      try {
        const fs = require("node:fs");
        if (fds[a] === undefined) fds[a] = fs.openSync(files[a], "r");
        readBuf = readBuf || Buffer.allocUnsafe(batchSize);
        let pos = b * 4294967296 + (c >>> 0);
        for (let left = d; left > 0; ) {
          const n = fs.readSync(fds[a], readBuf, 0, Math.min(readBuf.length, left), pos);
          if (n <= 0) throw new Error("reading " + files[a] + " at offset " + pos + ": the file ends there");
          h.hash.update(readBuf.subarray(0, n));
          pos += n;
          left -= n;
        }
      } catch (err) {
        h.hash = undefined;
        h.error = message(err);
      }
    }
  } else if (op === ${DIGEST}) {
    const h = hashes.get(id);
    hashes.delete(id);
    let hex;
    let error = h ? h.error : "unknown hash " + id;
    if (h && h.hash) {
      try {
        hex = h.hash.digest("hex");
      } catch (err) {
        error = message(err);
      }
    }
    parentPort.postMessage(hex === undefined ? { id, error } : { id, hex });
  }
}
for (const fd of fds) if (fd !== undefined) require("node:fs").closeSync(fd);
`;

/** Options of {@link HashWorker.start}. */
export interface HashWorkerOptions {
  /** Bytes copied into one batch before it is posted (default 1 MiB). */
  batchSize?: number;
  /**
   * Most bytes of batches at once, posted or being filled (default 4 MiB, at least one batch):
   * the size of the shared pool. `update` blocks while every batch is in flight.
   */
  maxInFlight?: number;
  /** How long `update` waits for a worker that makes no progress before it gives the worker up (default 60 s). */
  stallTimeoutMs?: number;
  /** Files that {@link WorkerHash.updateFromFile} reads, by index; the worker opens each (read-only) when first read, and closes them when it stops. */
  files?: readonly string[];
}

interface Pending {
  algorithm: string;
  resolve: (hex: string) => void;
  reject: (err: unknown) => void;
}

/** A worker thread that computes incremental hashes for the calling thread (see the file's header). */
export class HashWorker {
  /** How many times the producer blocked because every batch (or the command queue) was in flight. */
  waits = 0;
  private readonly worker: Worker;
  private readonly state: Int32Array;
  private readonly pool: Uint8Array;
  private readonly batchSize: number;
  private readonly slots: number;
  private readonly queue: number;
  private readonly stallTimeoutMs: number;
  /** Commands written so far (this thread's copy of HEAD). */
  private head = 0;
  /** Slots being filled by a hash (not posted yet), and the hashes filling them. */
  private readonly held = new Set<number>();
  private readonly filling = new Set<WorkerHash>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: AirlockError | undefined;
  private exited = false;

  /**
   * Starts a hash worker; undefined when this runtime cannot start one (the caller hashes on its
   * own thread). A worker that starts but then fails is reported through its digests.
   */
  static start(options: HashWorkerOptions = {}): HashWorker | undefined {
    try {
      return new HashWorker(options);
    } catch {
      return undefined;
    }
  }

  private constructor(options: HashWorkerOptions) {
    this.batchSize = Math.max(1, Math.floor(options.batchSize ?? 1024 * 1024));
    this.slots = Math.max(1, Math.floor((options.maxInFlight ?? 4 * 1024 * 1024) / this.batchSize));
    this.stallTimeoutMs = options.stallTimeoutMs ?? 60_000;
    this.queue = SLOTS + this.slots;
    const state = new SharedArrayBuffer((this.queue + QUEUE_LENGTH * ENTRY) * Int32Array.BYTES_PER_ELEMENT);
    const pool = new SharedArrayBuffer(this.slots * this.batchSize);
    this.state = new Int32Array(state);
    this.pool = new Uint8Array(pool);
    const workerData = { state, pool, batchSize: this.batchSize, slots: this.slots, algorithms: WORKER_HASH_ALGORITHMS, files: [...(options.files ?? [])] };
    this.worker = new (workerThreads().Worker)(WORKER_SOURCE, { eval: true, workerData, execArgv: [] });
    this.worker.unref();
    this.worker.on("message", (m: { id: number; hex?: string; error?: string }) => this.settle(m));
    this.worker.on("error", (err) => this.fail(`the hash worker thread failed: ${err instanceof Error ? err.message : String(err)}`, err));
    this.worker.on("messageerror", (err) => this.fail("the hash worker thread could not read a message", err));
    this.worker.on("exit", (code) => {
      this.exited = true;
      this.fail(`the hash worker thread exited (code ${code})`);
    });
  }

  /** Why the worker is unusable (failed or closed), or undefined while it works. */
  get failed(): AirlockError | undefined {
    return this.failure;
  }

  /** Batches posted to the worker and not yet hashed. */
  get inFlight(): number {
    let n = 0;
    for (let k = 0; k < this.slots; k++) n += Atomics.load(this.state, SLOTS + k);
    return n;
  }

  /** Starts a new incremental hash on the worker (default sha256). */
  hash(algorithm: WorkerHashAlgorithm = "sha256"): WorkerHash {
    const id = this.nextId++;
    this.command(CREATE, id, WORKER_HASH_ALGORITHMS.indexOf(algorithm));
    return new WorkerHash(this, id, algorithm);
  }

  /**
   * Stops the worker. Digests not yet delivered reject; bytes given to hashes from now on are
   * dropped. Safe to call more than once.
   */
  async close(): Promise<void> {
    this.fail("the hash worker was closed before the digest was computed", undefined, "ERR_ABORTED");
    if (this.exited) return;
    // The loop ends after its current command (and closes the files it opened); a worker that does not is terminated.
    this.worker.ref(); // until it has exited: an awaited close() must not leave a promise unsettled
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => void this.worker.terminate().then(() => resolve(), () => resolve()), 2000);
      timer.unref?.();
      this.worker.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** @internal The bytes of `slot`. */
  slot(slot: number): Uint8Array {
    return this.pool.subarray(slot * this.batchSize, (slot + 1) * this.batchSize);
  }

  /**
   * @internal A free slot for `hash` to fill, waiting (blocking this thread) while every slot is in
   * flight; undefined once the worker failed.
   */
  takeSlot(hash: WorkerHash): number | undefined {
    const watch = this.stallWatch();
    for (;;) {
      if (this.failure) return undefined;
      const freed = Atomics.load(this.state, FREED);
      let busy = 0;
      for (let k = 0; k < this.slots; k++) {
        if (this.held.has(k)) continue;
        if (Atomics.load(this.state, SLOTS + k) === 0) {
          this.held.add(k);
          this.filling.add(hash);
          return k;
        }
        busy++;
      }
      if (busy === 0) {
        // Every slot is held by another hash, partly filled: post those, then wait for one.
        for (const h of [...this.filling]) if (h !== hash) h.flush();
        continue;
      }
      if (!this.block(FREED, freed, watch)) return undefined;
    }
  }

  /** @internal Posts `length` bytes of `slot` (held by `hash`) to be hashed into hash `id`; `length` 0 only frees it. */
  postSlot(hash: WorkerHash, id: number, slot: number, length: number): void {
    this.held.delete(slot);
    this.filling.delete(hash);
    if (length === 0 || this.failure) return;
    Atomics.store(this.state, SLOTS + slot, 1);
    this.command(UPDATE, id, slot, length);
  }

  /** @internal Asks for hash `id`'s digest; its batches were all posted before. */
  requestDigest(id: number, algorithm: string): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<string>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref(); // an awaited digest keeps the process alive
      this.pending.set(id, { algorithm, resolve, reject });
      this.command(DIGEST, id);
    });
  }

  /** @internal Queues reads of `length` bytes of file `file` from `position`, hashed into hash `id`. */
  postRead(id: number, file: number, position: number, length: number): void {
    for (let done = 0; done < length && !this.failure; ) {
      const n = Math.min(READ_CHUNK, length - done);
      const pos = position + done;
      this.command(READ, id, file, Math.floor(pos / 2 ** 32), pos % 2 ** 32 | 0, n);
      done += n;
    }
  }

  /** Appends a command to the queue, waiting (blocking this thread) while the queue is full. */
  private command(op: number, id: number, a = 0, b = 0, c = 0, d = 0): void {
    const watch = this.stallWatch();
    for (;;) {
      if (this.failure) return;
      const tail = Atomics.load(this.state, TAIL);
      if (this.head - tail < QUEUE_LENGTH) break;
      if (!this.block(TAIL, tail, watch)) return;
    }
    const e = this.queue + (this.head % QUEUE_LENGTH) * ENTRY;
    Atomics.store(this.state, e, op);
    Atomics.store(this.state, e + 1, id);
    Atomics.store(this.state, e + 2, a);
    Atomics.store(this.state, e + 3, b);
    Atomics.store(this.state, e + 4, c);
    Atomics.store(this.state, e + 5, d);
    this.head++;
    Atomics.store(this.state, HEAD, this.head);
    Atomics.notify(this.state, HEAD);
  }

  /** What {@link block} compares to see whether the worker progresses: its counters, and since when they stand still. */
  private stallWatch(): { seen: number; since: number } {
    return { seen: Atomics.load(this.state, FREED) + Atomics.load(this.state, TAIL), since: Date.now() };
  }

  /**
   * Waits until `state[index]` is no longer `value` (or a second passed). False, with the worker
   * given up, when it made no progress for the stall timeout or this thread may not block.
   */
  private block(index: number, value: number, watch: { seen: number; since: number }): boolean {
    const now = Atomics.load(this.state, FREED) + Atomics.load(this.state, TAIL);
    if (now !== watch.seen) {
      watch.seen = now;
      watch.since = Date.now();
    } else if (Date.now() - watch.since >= this.stallTimeoutMs) {
      this.fail(`the hash worker thread made no progress for ${Math.round(this.stallTimeoutMs / 1000)} s`);
      void this.worker.terminate().catch(() => {});
      return false;
    }
    this.waits++;
    try {
      Atomics.wait(this.state, index, value, Math.min(1000, this.stallTimeoutMs));
    } catch (err) {
      // A runtime that forbids blocking this thread: the producer cannot be held back, so give the worker up.
      this.fail(`waiting for the hash worker thread is not possible here: ${err instanceof Error ? err.message : String(err)}`, err);
      void this.worker.terminate().catch(() => {});
      return false;
    }
    return true;
  }

  private settle(m: { id: number; hex?: string; error?: string }): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.worker.unref();
    if (m.hex !== undefined) p.resolve(m.hex);
    else p.reject(new AirlockError("ERR_IO", `computing a ${p.algorithm} on the hash worker thread failed: ${m.error ?? "no digest"}`));
  }

  private fail(message: string, cause?: unknown, code: "ERR_IO" | "ERR_ABORTED" = "ERR_IO"): void {
    if (this.failure) return;
    this.failure = new AirlockError(code, code === "ERR_IO" ? `${message}; the hashes it held are lost and must be computed again` : message, { cause });
    Atomics.store(this.state, STOP, 1);
    Atomics.notify(this.state, HEAD);
    this.worker.unref();
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(this.failure);
  }
}

/** One incremental hash computed by a {@link HashWorker}: like `crypto.Hash`, with an asynchronous digest. */
export class WorkerHash {
  private readonly owner: HashWorker;
  private readonly id: number;
  private readonly algorithm: WorkerHashAlgorithm;
  /** The slot being filled, and its bytes. */
  private slot: number | undefined;
  private batch: Uint8Array | undefined;
  private fill = 0;
  private finished = false;

  /** @internal Use {@link HashWorker.hash}. */
  constructor(owner: HashWorker, id: number, algorithm: WorkerHashAlgorithm) {
    this.owner = owner;
    this.id = id;
    this.algorithm = algorithm;
  }

  /**
   * Adds `bytes` to the hash. They are copied: the caller may reuse its buffer at once. May block
   * the calling thread while every batch of the worker is in flight.
   */
  update(bytes: Uint8Array): this {
    if (this.finished) throw new AirlockError("ERR_INVALID_ARGUMENT", "internal error: update() after digest() of a worker hash");
    for (let off = 0; off < bytes.length; ) {
      if (this.batch === undefined) {
        const slot = this.owner.takeSlot(this);
        if (slot === undefined) return this; // the worker failed: the digest rejects
        this.slot = slot;
        this.batch = this.owner.slot(slot);
      }
      const n = Math.min(bytes.length - off, this.batch.length - this.fill);
      this.batch.set(bytes.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      if (this.fill === this.batch.length) this.flush();
    }
    return this;
  }

  /**
   * Adds `length` bytes of file `file` (an index into {@link HashWorkerOptions.files}) from
   * `position`: the worker reads them itself, so they cost this thread nothing. The bytes must be
   * in the file already and stay as they are until the digest is taken.
   */
  updateFromFile(file: number, position: number, length: number): this {
    if (this.finished) throw new AirlockError("ERR_INVALID_ARGUMENT", "internal error: update() after digest() of a worker hash");
    if (length <= 0) return this;
    this.flush(); // bytes given before come first
    this.owner.postRead(this.id, file, position, length);
    return this;
  }

  /** Resolves to the hex digest of everything updated; rejects with an AirlockError if the worker failed. */
  digest(): Promise<string> {
    if (this.finished) return Promise.reject(new AirlockError("ERR_INVALID_ARGUMENT", "internal error: digest() called twice on a worker hash"));
    this.finished = true;
    this.flush();
    return this.owner.requestDigest(this.id, this.algorithm);
  }

  /** @internal Posts the batch being filled, if any. */
  flush(): void {
    if (this.slot === undefined) return;
    const slot = this.slot;
    const n = this.fill;
    this.slot = undefined;
    this.batch = undefined;
    this.fill = 0;
    this.owner.postSlot(this, this.id, slot, n);
  }
}
