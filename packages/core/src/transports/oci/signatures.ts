/**
 * Where airlock keeps image signatures in an OCI image layout. The OCI image-layout spec has no
 * place for containers-signature(5) blobs (skopeo 1.9.3 refuses to store signatures in `oci:`), so
 * airlock keeps them as files beside the layout's content, outside `blobs/` and `index.json`,
 * where other tools ignore them:
 *
 *     signatures/<alg>/<hex>/signature-1, signature-2, …
 *
 * keyed by the digest of the manifest they sign (`<alg>:<hex>`), numbered from 1 and read until
 * the first missing number — the same numbering as skopeo's `dir:` layout and lookaside storage.
 * Signatures name their image inside their payload, so one set per manifest digest serves every
 * name in index.json that points at that manifest. See fixtures/README.md.
 */
import { join } from "node:path";
import { digestAlgorithm, digestHex, parseDigest } from "../../digest.js";

/** The directory of an OCI layout that holds signatures. */
export const OCI_SIGNATURES_DIR = "signatures";

/** The path of the `n`-th signature (from 1) of the manifest `digest` in the layout at `layoutDir`. */
export function ociSignaturePath(layoutDir: string, digest: string, n: number): string {
  const d = parseDigest(digest);
  return join(layoutDir, OCI_SIGNATURES_DIR, digestAlgorithm(d), digestHex(d), `signature-${n}`);
}
