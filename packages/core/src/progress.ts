/**
 * Progress events: what long-running operations (copy, export, import, verify) report while they
 * run. The engine only emits them; the CLI decides how to draw them (bars, plain lines, NDJSON).
 */
import type { Digest } from "./digest.js";

/** One progress event. `image` names the image being worked on, as the user knows it. */
export type ProgressEvent =
  | { type: "image-start"; image: string; digest?: Digest; blobs?: number; bytes?: number }
  | { type: "blob-start"; image?: string; digest: Digest; size: number; mediaType?: string }
  | { type: "blob-progress"; image?: string; digest: Digest; bytes: number; size: number }
  | { type: "blob-done"; image?: string; digest: Digest; size: number }
  | { type: "blob-skipped"; image?: string; digest: Digest; size: number; reason: string }
  | { type: "manifest"; image?: string; digest: Digest; mediaType: string; topLevel: boolean }
  | { type: "image-done"; image: string; digest: Digest }
  | { type: "image-failed"; image: string; error: string }
  | { type: "warning"; image?: string; message: string };

/** A function that receives progress events. It must not throw and must return quickly. */
export type ProgressListener = (event: ProgressEvent) => void;

/** Runs at most `limit` of the functions given to the returned scheduler at once. */
export function limiter(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  const next = () => {
    if (active >= limit) return;
    const run = queue.shift();
    if (run) {
      active++;
      run();
    }
  };
  return <T>(fn: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        fn()
          .then(resolve, reject)
          .finally(() => {
            active--;
            next();
          });
      });
      next();
    });
}
