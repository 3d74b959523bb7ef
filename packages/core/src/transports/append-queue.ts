/**
 * The serial writer behind the archive destinations: a tar is written front to back, so appends
 * queue up and run one at a time, while callers keep putting blobs concurrently.
 */

/** Runs appends one after another; after the first failure every later append fails with it. */
export class AppendQueue {
  private tail: Promise<void> = Promise.resolve();
  /** The first failure, if any. */
  failure: unknown;
  /** Bytes of appends queued and not yet done (lets a caller stream straight in when little waits). */
  pendingBytes = 0;

  /** Runs `fn` after every append queued before it; `size` counts toward {@link pendingBytes} until it is done. */
  run(size: number, fn: () => Promise<void>): Promise<void> {
    this.pendingBytes += size;
    const p = this.tail.then(async () => {
      try {
        if (this.failure) throw this.failure;
        await fn();
      } catch (err) {
        this.failure ??= err;
        throw err;
      } finally {
        this.pendingBytes -= size;
      }
    });
    this.tail = p.catch(() => {});
    return p;
  }

  /** Waits for every queued append, then throws the first failure if there was one. */
  async drain(): Promise<void> {
    await this.tail;
    if (this.failure) throw this.failure;
  }

  /** Waits for every queued append, whatever their outcome. */
  settled(): Promise<void> {
    return this.tail;
  }
}
