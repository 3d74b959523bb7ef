/**
 * The scheduler of `sync`: runs items at most `parallel` at a time and at most `perKey` at a time
 * for any one key (a registry), starting the first waiting item whose keys all have room — so an
 * item for a busy registry never holds up one for an idle registry, and no item ever waits while
 * holding a slot (no deadlock, whatever the keys).
 */

/** Options of {@link runScheduled}. */
export interface ScheduleOptions<T> {
  /** Items running at once (at least 1). */
  parallel: number;
  /** Items running at once per key (at least 1; default: `parallel`). */
  perKey?: number;
  /** The keys (e.g. registry hosts) an item occupies while it runs; duplicates count once. */
  keysOf?: (item: T) => readonly string[];
  /** Checked before each start: when it returns true, no further item is started. */
  stopped?: () => boolean;
}

/**
 * Runs `run` for every item under the limits of `options`, in the items' order as far as the
 * limits allow. Resolves when every started item has settled. When a `run` rejects, no further
 * item is started and the first rejection is rethrown once the running ones have settled.
 */
export function runScheduled<T>(items: readonly T[], run: (item: T, index: number) => Promise<void>, options: ScheduleOptions<T>): Promise<void> {
  const parallel = Math.max(1, Math.floor(options.parallel));
  const perKey = Math.max(1, Math.floor(options.perKey ?? parallel));
  const pending = items.map((item, index) => ({ item, index, keys: [...new Set(options.keysOf?.(item) ?? [])] }));
  const counts = new Map<string, number>();
  let active = 0;
  let failed = false;
  let firstError: unknown;
  return new Promise<void>((resolve, reject) => {
    const halted = () => failed || (options.stopped?.() ?? false);
    const pump = (): void => {
      if (!halted()) {
        for (let i = 0; i < pending.length && active < parallel; ) {
          const p = pending[i] as (typeof pending)[number];
          if (!p.keys.every((k) => (counts.get(k) ?? 0) < perKey)) {
            i++;
            continue;
          }
          pending.splice(i, 1);
          start(p);
        }
      }
      if (active === 0 && (pending.length === 0 || halted())) {
        if (failed) reject(firstError);
        else resolve();
      }
    };
    const start = (p: (typeof pending)[number]): void => {
      active++;
      for (const k of p.keys) counts.set(k, (counts.get(k) ?? 0) + 1);
      let promise: Promise<void>;
      try {
        promise = run(p.item, p.index);
      } catch (err) {
        promise = Promise.reject(err);
      }
      promise
        .catch((err: unknown) => {
          if (!failed) {
            failed = true;
            firstError = err;
          }
        })
        .finally(() => {
          active--;
          for (const k of p.keys) counts.set(k, (counts.get(k) ?? 1) - 1);
          pump();
        });
    };
    pump();
  });
}
