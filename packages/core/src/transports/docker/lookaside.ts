/**
 * Lookaside signature storage for registry images (containers-registries.d(5), formerly
 * "sigstore"): signatures live beside the registry, at `BASE/REPOSITORY-PATH@ALG=HEX/signature-N`
 * (N from 1, read until one is missing). The base URL comes from registries.d — the CLI resolves it
 * for each image and passes it as `DockerContext.lookaside` / `lookasideStaging`. Reading supports
 * `file://`, `http://` and `https://`; writing only `file://` (as containers/image).
 * @see https://github.com/containers/image/blob/main/docs/containers-registries.d.5.md
 * @see https://github.com/containers/image/blob/main/docker/docker_image_src.go
 */
import { fileURLToPath } from "node:url";
import { type Digest, digestAlgorithm, digestHex, parseDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { MAX_SIGNATURE_SIZE, MAX_SIGNATURES, readSignatureFiles, writeSignatureFiles } from "../signatures.js";

/**
 * The URL of the `n`-th signature (from 1) of manifest `digest` in repository `repositoryPath`
 * (without the registry host, e.g. `library/busybox`) under the lookaside `base`. Joined as
 * containers/image does (`base.Path + "/" + path`), so a base ending in "/" gives "//". Throws
 * ERR_INVALID_ARGUMENT for a base that is not a URL.
 */
export function lookasideURL(base: string, repositoryPath: string, digest: Digest | string, n: number): URL {
  const d = parseDigest(digest);
  let url: URL;
  try {
    url = new URL(base);
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid signature storage URL ${JSON.stringify(base)}: ${(cause as Error).message}; check lookaside in registries.d`, { cause });
  }
  // Go's url.Parse gives "" as the path of "https://host", where WHATWG URL gives "/".
  const basePath = url.pathname === "/" && !(base.split(/[?#]/)[0] as string).endsWith("/") ? "" : url.pathname;
  url.pathname = `${basePath}/${repositoryPath}@${digestAlgorithm(d)}=${digestHex(d)}/signature-${n}`;
  return url;
}

/** Reports whether signatures can be written under the lookaside `base` (a `file://` URL). */
export function isWritableLookaside(base: string | undefined): base is string {
  if (base === undefined) return false;
  try {
    return new URL(base).protocol === "file:";
  } catch {
    return false;
  }
}

/**
 * Reads the signatures of `digest` in `repositoryPath` from the lookaside `base`: `signature-1`,
 * `signature-2`, … until one is missing (a missing file, or HTTP 404). `what` names the image in
 * messages. Throws ERR_IO / ERR_NETWORK / ERR_SIGNATURE.
 */
export async function readLookasideSignatures(base: string, repositoryPath: string, digest: Digest, what: string, signal?: AbortSignal): Promise<Uint8Array[]> {
  const first = lookasideURL(base, repositoryPath, digest, 1);
  if (first.protocol === "file:") {
    return readSignatureFiles((n) => fileURLToPath(lookasideURL(base, repositoryPath, digest, n)), what, signal);
  }
  if (first.protocol !== "http:" && first.protocol !== "https:") {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read signatures of ${what} from ${first.href}: lookaside URLs must be file://, http:// or https://`);
  }
  const out: Uint8Array[] = [];
  for (let n = 1; n <= MAX_SIGNATURES; n++) {
    const sig = await fetchSignature(lookasideURL(base, repositoryPath, digest, n), what, signal);
    if (sig === undefined) break;
    out.push(sig);
  }
  return out;
}

/** GETs one signature; undefined on 404. The body is limited to MAX_SIGNATURE_SIZE. */
async function fetchSignature(url: URL, what: string, signal?: AbortSignal): Promise<Uint8Array | undefined> {
  let res: Response;
  try {
    res = await fetch(url, signal ? { signal } : {});
  } catch (cause) {
    throw new AirlockError("ERR_NETWORK", `cannot read signature ${url.href} of ${what}: ${(cause as Error).message}`, { cause });
  }
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new AirlockError("ERR_NETWORK", `cannot read signature ${url.href} of ${what}: HTTP ${res.status} ${res.statusText}`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      if (size > MAX_SIGNATURE_SIZE) {
        await res.body.cancel().catch(() => {});
        throw new AirlockError("ERR_SIGNATURE", `signature ${url.href} of ${what} is larger than the ${MAX_SIGNATURE_SIZE} bytes airlock reads`);
      }
      chunks.push(chunk);
    }
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/**
 * Replaces the signatures of `digest` in `repositoryPath` under the `file://` lookaside `base`:
 * writes `signature-1..k`, then removes the following ones until one is missing. Throws
 * ERR_UNSUPPORTED for a base that is not `file://`, ERR_IO when a file cannot be written.
 */
export async function writeLookasideSignatures(base: string, repositoryPath: string, digest: Digest, signatures: readonly Uint8Array[], what: string): Promise<void> {
  if (!isWritableLookaside(base)) {
    throw new AirlockError(
      "ERR_UNSUPPORTED",
      `cannot store signatures of ${what} at ${base}: only file:// lookaside storage can be written; configure a lookaside-staging: file:///… location in registries.d`,
    );
  }
  await writeSignatureFiles((n) => fileURLToPath(lookasideURL(base, repositoryPath, digest, n)), signatures, what);
}
