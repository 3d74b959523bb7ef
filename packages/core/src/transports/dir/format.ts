/**
 * skopeo's `dir:` layout (containers/image `directory/`): one image per directory, with
 * - `version`: `Directory Transport Version: 1.1\n` (1.2 when a non-sha256 digest names a file);
 * - `manifest.json`: the top-level manifest (an image manifest or an index);
 * - `<hex>.manifest.json`: each manifest an index lists (`<alg>-<hex>.manifest.json` for non-sha256);
 * - `<hex>`: each blob, no extension (`<alg>-<hex>` for non-sha256);
 * - `signature-N` (N from 1): signatures of the top-level manifest; `<hex>.signature-N` (or
 *   `<alg>-<hex>.signature-N`): signatures of a manifest the top-level index lists.
 * Every digest is validated (parseDigest) before it becomes a file name.
 * @see https://github.com/containers/image/blob/main/directory/directory_transport.go
 */
import { join } from "node:path";
import { type Digest, digestAlgorithm, digestHex, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";

/** The name of the version file. */
export const DIR_VERSION_FILE = "version";
/** The name of the top-level manifest. */
export const DIR_MANIFEST_FILE = "manifest.json";
/** The version file's content for sha256-only images. */
export const DIR_VERSION_1_1 = "Directory Transport Version: 1.1\n";
/** The version file's content when a non-sha256 digest names a file. */
export const DIR_VERSION_1_2 = "Directory Transport Version: 1.2\n";

/** The file name of a blob: `<hex>` for sha256, `<alg>-<hex>` otherwise. */
export function dirBlobName(digest: string): string {
  const d = parseDigest(digest);
  return digestAlgorithm(d) === "sha256" ? digestHex(d) : `${digestAlgorithm(d)}-${digestHex(d)}`;
}

/** The file name of a manifest listed by the top-level index: `<hex>.manifest.json` (or `<alg>-<hex>.manifest.json`). */
export function dirManifestName(digest: string): string {
  return `${dirBlobName(digest)}.manifest.json`;
}

/**
 * The file name of the `n`-th signature (from 1): `signature-N` for the top-level manifest,
 * `<hex>.signature-N` (or `<alg>-<hex>.signature-N`) for the instance `instanceDigest`.
 */
export function dirSignatureName(n: number, instanceDigest?: string): string {
  return instanceDigest === undefined ? `signature-${n}` : `${dirBlobName(instanceDigest)}.signature-${n}`;
}

/** The path of a blob in the `dir:` layout at `dir`. */
export function dirBlobPath(dir: string, digest: string): string {
  return join(dir, dirBlobName(digest));
}

/** Reports whether `digest` needs the 1.2 naming (a non-sha256 algorithm). */
export function needsVersion1_2(digest: Digest): boolean {
  return digestAlgorithm(digest) !== "sha256";
}

/**
 * Parses a version file's content (`Directory Transport Version: MAJOR.MINOR\n`) and checks that
 * airlock understands it (major version 1). `where` names the file in errors.
 */
export function parseDirVersion(text: string, where: string): { major: number; minor: number } {
  const m = /^Directory Transport Version: (\d+)\.(\d+)\n$/.exec(text);
  if (!m) throw new AirlockError("ERR_INVALID_LAYOUT", `${where} is not a dir: transport version file (expected "Directory Transport Version: 1.1")`);
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major !== 1) throw new AirlockError("ERR_INVALID_LAYOUT", `${where} declares dir: transport version ${major}.${minor}; airlock reads version 1.x`);
  return { major, minor };
}

/**
 * Reports whether `name` is a file the `dir:` layout defines for an image's content (a blob, a
 * child manifest, a signature) or a temporary file airlock leaves while writing one — the only
 * files airlock removes when it updates a directory in place.
 */
export function isDirContentFile(name: string): boolean {
  return (
    /^(?:[a-z0-9]+-)?[a-f0-9]{64,128}(?:\.manifest\.json|\.signature-\d+)?$/.test(name) ||
    /^signature-\d+$/.test(name) ||
    /^\.(?:(?:[a-z0-9]+-)?[a-f0-9]{64,128}(?:\.manifest\.json)?|manifest\.json|version|(?:(?:[a-z0-9]+-)?[a-f0-9]{64,128}\.)?signature-\d+)\.\d+\.[a-f0-9]+\.tmp$/.test(name)
  );
}
