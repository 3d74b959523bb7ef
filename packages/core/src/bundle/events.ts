/**
 * Progress events of bundle operations: the shared {@link ProgressEvent}s (blob-start, blob-progress,
 * blob-done, blob-skipped, manifest, image-start, image-done, warning) plus a few that only a
 * bundle has. The engine only emits them; the CLI draws them.
 */
import type { Digest } from "../digest.js";
import type { ProgressEvent } from "../progress.js";

/** An event only bundle operations emit. */
export type BundleOnlyEvent =
  /**
   * The export's archive is planned: what it will hold and how large it will be. An import emits
   * it too (`operation: "import"`), once the bundle is checked and before anything is pushed: the
   * images, manifests and distinct blobs it carries (`bytes` counts a blob shared by several
   * images once), the bundle's volumes and their size; `resumed` is false.
   */
  | {
      type: "bundle-plan";
      images: number;
      manifests: number;
      blobs: number;
      bytes: number;
      duplicateBlobs: number;
      duplicateBytes: number;
      volumes: number;
      size: number;
      resumed: boolean;
      /** Set by an import; absent for an export. */
      operation?: "import";
    }
  /** A platform list subset an index: the bundle holds a new index whose digest differs from the source's. */
  | { type: "index-rewritten"; image: string; sourceDigest: Digest; digest: Digest; platforms: string[]; converted?: true }
  /** A volume file is complete. */
  | { type: "volume-done"; volume: number; path: string; size: number; sha256: string }
  /** verifyBundle read `bytes` of `total`. */
  | { type: "verify-progress"; bytes: number; total: number };

/** One progress event of a bundle operation. */
export type BundleEvent = ProgressEvent | BundleOnlyEvent;

/** A function that receives bundle progress events. It must not throw and must return quickly. */
export type BundleListener = (event: BundleEvent) => void;
