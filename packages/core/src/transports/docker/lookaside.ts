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

/** A GET of an http(s) URL: its status, its body, and how to discard the body unread. */
export type LookasideGet = (url: URL, signal?: AbortSignal) => Promise<{ status: number; body: AsyncIterable<Uint8Array>; discard(): Promise<void> }>;

/** The default {@link LookasideGet}: the runtime's fetch (system CAs, TLS verified). */
const fetchGet: LookasideGet = async (url, signal) => {
  const res = await fetch(url, signal ? { signal } : {});
  const body = res.body ?? new ReadableStream<Uint8Array>();
  return { status: res.status, body: body as unknown as AsyncIterable<Uint8Array>, discard: () => body.cancel().catch(() => {}) };
};

/**
 * Reads the signatures of `digest` in `repositoryPath` from the lookaside `base`: `signature-1`,
 * `signature-2`, … until one is missing (a missing file, or HTTP 404). `what` names the image in
 * messages. http(s) URLs are read with `get` (default: fetch; the docker source passes its
 * registry connection's, so that the registry's TLS settings apply). Throws ERR_IO / ERR_NETWORK /
 * ERR_SIGNATURE.
 */
export async function readLookasideSignatures(base: string, repositoryPath: string, digest: Digest, what: string, signal?: AbortSignal, get: LookasideGet = fetchGet): Promise<Uint8Array[]> {
  const first = lookasideURL(base, repositoryPath, digest, 1);
  if (first.protocol === "file:") {
    return readSignatureFiles((n) => fileURLToPath(lookasideURL(base, repositoryPath, digest, n)), what, signal);
  }
  if (first.protocol !== "http:" && first.protocol !== "https:") {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read signatures of ${what} from ${first.href}: lookaside URLs must be file://, http:// or https://`);
  }
  const out: Uint8Array[] = [];
  for (let n = 1; n <= MAX_SIGNATURES; n++) {
    const sig = await fetchSignature(lookasideURL(base, repositoryPath, digest, n), what, signal, get);
    if (sig === undefined) break;
    out.push(sig);
  }
  return out;
}

/** GETs one signature; undefined on 404. The body is limited to MAX_SIGNATURE_SIZE. */
async function fetchSignature(url: URL, what: string, signal: AbortSignal | undefined, get: LookasideGet): Promise<Uint8Array | undefined> {
  const failed = (cause: unknown) => {
    if (signal?.aborted) return new AirlockError("ERR_ABORTED", `reading signature ${url.href} of ${what} was aborted`, { cause });
    const e = cause as { code?: string; message?: string };
    const tls = typeof e?.code === "string" && /CERT|SELF_SIGNED|ERR_TLS|ERR_SSL/.test(e.code) ? "; the lookaside storage's TLS certificate is checked with the registry's settings (its cert dir, --tls-verify, --tls-details)" : "";
    return new AirlockError("ERR_NETWORK", `cannot read signature ${url.href} of ${what}: ${e?.message ?? String(cause)}${e?.code && !e.message?.includes(e.code) ? ` (${e.code})` : ""}${tls}`, { cause });
  };
  let res: Awaited<ReturnType<LookasideGet>>;
  try {
    res = await get(url, signal);
  } catch (cause) {
    throw failed(cause);
  }
  if (res.status === 404) {
    await res.discard();
    return undefined;
  }
  if (res.status < 200 || res.status > 299) {
    await res.discard();
    throw new AirlockError("ERR_NETWORK", `cannot read signature ${url.href} of ${what}: HTTP ${res.status}`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += chunk.length;
      if (size > MAX_SIGNATURE_SIZE) {
        await res.discard();
        throw new AirlockError("ERR_SIGNATURE", `signature ${url.href} of ${what} is larger than the ${MAX_SIGNATURE_SIZE} bytes airlock reads`);
      }
      chunks.push(chunk);
    }
  } catch (cause) {
    if (cause instanceof AirlockError) throw cause;
    throw failed(cause);
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
