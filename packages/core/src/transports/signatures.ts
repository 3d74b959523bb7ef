/**
 * Signature files, as every file-based signature store lays them out: one file per signature,
 * numbered `…signature-1`, `…signature-2`, … and read until the first missing number
 * (containers/image `dir:` and lookaside storage, docs/signature-protocols.md). The bytes are
 * opaque here: airlock's core moves signatures, it never interprets them (@airlock/sign does).
 * @see https://github.com/containers/image/blob/main/docs/signature-protocols.md
 */
import { promises as fs } from "node:fs";
import { dirname } from "node:path";
import { AirlockError } from "../errors.js";
import { writeFileAtomic } from "../fsutil.js";
import { ioError, isNotFoundError } from "../layout/files.js";

/** The largest signature airlock reads (containers/image `iolimits.maxSignatureBodySize`, 4 MiB). */
export const MAX_SIGNATURE_SIZE = 4 << 20;

/** containers/image reads at most this many signatures per manifest. */
export const MAX_SIGNATURES = 128;

/**
 * Reads the signature files `pathOf(1)`, `pathOf(2)`, … until one is missing (at most
 * {@link MAX_SIGNATURES}). `what` names the manifest in messages. Throws ERR_IO when a file cannot
 * be read, ERR_SIGNATURE when one is larger than {@link MAX_SIGNATURE_SIZE}.
 */
export async function readSignatureFiles(pathOf: (n: number) => string, what: string, signal?: AbortSignal): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let n = 1; n <= MAX_SIGNATURES; n++) {
    signal?.throwIfAborted();
    const bytes = await readSignatureFile(pathOf(n), what);
    if (bytes === undefined) break;
    out.push(bytes);
  }
  return out;
}

/** Reads one signature file; undefined when it does not exist. */
async function readSignatureFile(path: string, what: string): Promise<Uint8Array | undefined> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, "r");
  } catch (cause) {
    if (isNotFoundError(cause)) return undefined;
    throw ioError(`cannot read signature ${path} of ${what}`, cause);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new AirlockError("ERR_SIGNATURE", `signature ${path} of ${what} is not a regular file`);
    if (st.size > MAX_SIGNATURE_SIZE) {
      throw new AirlockError("ERR_SIGNATURE", `signature ${path} of ${what} is ${st.size} bytes, more than the ${MAX_SIGNATURE_SIZE} airlock reads; check the signature store`);
    }
    return new Uint8Array(await fh.readFile());
  } catch (cause) {
    if (cause instanceof AirlockError) throw cause;
    throw ioError(`cannot read signature ${path} of ${what}`, cause);
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * Replaces the signatures stored at `pathOf(1..)` with `signatures`: each file written atomically
 * (its directory created), then the following numbers removed until one is missing, so that a
 * reader stops after the new ones (containers/image `putSignaturesToLookaside`). `what` names the
 * manifest in messages. Throws ERR_IO.
 */
export async function writeSignatureFiles(pathOf: (n: number) => string, signatures: readonly Uint8Array[], what: string): Promise<void> {
  for (const [i, sig] of signatures.entries()) {
    const path = pathOf(i + 1);
    try {
      await fs.mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, sig);
    } catch (cause) {
      throw ioError(`cannot store signature ${path} of ${what}`, cause);
    }
  }
  for (let n = signatures.length + 1; ; n++) {
    const path = pathOf(n);
    try {
      await fs.rm(path);
    } catch (cause) {
      if (isNotFoundError(cause)) return;
      throw ioError(`cannot remove the old signature ${path} of ${what}`, cause);
    }
  }
}
