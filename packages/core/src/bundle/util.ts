/**
 * Small helpers shared by the bundle operations.
 */
import { setMaxListeners } from "node:events";

/** Like Promise.all, but waits for every promise to settle before rejecting with the first error. */
export async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/**
 * An AbortController for the work of one operation, aborted when `outer` is; `release()` removes
 * the link. Its signal takes any number of listeners (one per blob in flight).
 */
export function linkedController(outer: AbortSignal | undefined): { controller: AbortController; release: () => void } {
  const controller = new AbortController();
  try {
    setMaxListeners(0, controller.signal);
  } catch {
    // Runtimes without per-target listener limits have nothing to raise.
  }
  const onAbort = () => controller.abort(outer?.reason);
  if (outer?.aborted) controller.abort(outer.reason);
  else outer?.addEventListener("abort", onAbort, { once: true });
  return { controller, release: () => outer?.removeEventListener("abort", onAbort) };
}
