/**
 * Moving one blob into a destination while verifying it: the single place where a blob stream
 * meets the destination, shared by the copy pipeline and bundle import.
 */
import { pipeline, type Readable } from "node:stream";
import { VerifyingStream } from "../digest.js";
import { AirlockError } from "../errors.js";
import type { Descriptor } from "../manifest.js";
import type { ProgressListener } from "../progress.js";
import type { ImageDestination, PutBlobOptions } from "../transports/types.js";

/** Options of {@link putVerifiedBlob}. */
export interface PutVerifiedBlobOptions {
  /** Names the blob in error messages, e.g. `blob sha256:… of docker://…`. */
  what: string;
  /** The image the blob belongs to, for progress events. */
  image: string;
  signal?: AbortSignal | undefined;
  onProgress?: ProgressListener | undefined;
  /** Interval of blob-progress events in milliseconds (default 500). */
  progressIntervalMs?: number | undefined;
  /** Passed to the destination's putBlob (a seekable source's `reopen`, an upload session store). */
  put?: PutBlobOptions | undefined;
}

/**
 * Streams `source` into `dest.putBlob`, verified against `desc` (digest and size) on the way, with
 * blob-start / blob-progress / blob-done events. A verification failure is reported as itself even
 * when the destination fails differently; a destination that returns without reading the whole
 * stream is an error.
 */
export async function putVerifiedBlob(dest: ImageDestination, desc: Descriptor, source: Readable, options: PutVerifiedBlobOptions): Promise<void> {
  const { image, signal, onProgress } = options;
  onProgress?.({ type: "blob-start", image, digest: desc.digest, size: desc.size, mediaType: desc.mediaType });
  const verifier = new VerifyingStream({ digest: desc.digest, size: desc.size }, options.what);
  const verified = pipeline(source, verifier, () => {});
  const timer = onProgress
    ? setInterval(() => onProgress({ type: "blob-progress", image, digest: desc.digest, bytes: verifier.bytes, size: desc.size }), options.progressIntervalMs ?? 500)
    : undefined;
  try {
    await dest.putBlob(desc, verified, signal, options.put);
  } catch (err) {
    verified.destroy();
    throw verifier.errored ?? err;
  } finally {
    if (timer) clearInterval(timer);
  }
  if (verifier.errored) throw verifier.errored;
  if (!verifier.readableEnded) throw new AirlockError("ERR_DESTINATION", `${dest.reference} accepted ${options.what} without reading all of it`);
  onProgress?.({ type: "blob-done", image, digest: desc.digest, size: desc.size });
}
