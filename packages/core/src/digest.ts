/**
 * Digests as defined by the OCI image spec ("Digests", descriptor.md#digests): `algorithm:encoded`.
 * airlock accepts sha256 and sha512 and validates a digest before it is ever used in a path.
 * @see https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests
 */
import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { AirlockError } from "./errors.js";

/** A validated digest string such as `sha256:e3b0c442…`. */
export type Digest = string & { readonly __digest: unique symbol };

/** The digest algorithms airlock can compute, with the length of their hex encoding. */
export const DIGEST_ALGORITHMS = { sha256: 64, sha512: 128 } as const;

/** A digest algorithm airlock can compute. */
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS;

const DIGEST_RE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/**
 * Parses and validates `s` as a digest of a supported algorithm with a lowercase hex encoding of the
 * right length, so that it is safe to use as a file name. Throws ERR_INVALID_DIGEST otherwise.
 */
export function parseDigest(s: string): Digest {
  const m = DIGEST_RE.exec(s);
  if (!m) throw new AirlockError("ERR_INVALID_DIGEST", `invalid digest ${JSON.stringify(s)}: expected ALGORITHM:HEX, e.g. sha256:<64 hex digits>`);
  const algorithm = m[1] as string;
  const encoded = m[2] as string;
  const length = (DIGEST_ALGORITHMS as Record<string, number>)[algorithm];
  if (length === undefined) {
    throw new AirlockError("ERR_INVALID_DIGEST", `unsupported digest algorithm ${JSON.stringify(algorithm)} in ${JSON.stringify(s)}: airlock supports sha256 and sha512`);
  }
  if (encoded.length !== length || !/^[a-f0-9]+$/.test(encoded)) {
    throw new AirlockError("ERR_INVALID_DIGEST", `invalid ${algorithm} digest ${JSON.stringify(s)}: expected ${length} lowercase hex digits`);
  }
  return s as Digest;
}

/** Reports whether `s` is a valid digest of a supported algorithm. */
export function isDigest(s: string): s is Digest {
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

/** The algorithm part of a digest. */
export function digestAlgorithm(d: Digest): DigestAlgorithm {
  return d.slice(0, d.indexOf(":")) as DigestAlgorithm;
}

/** The encoded (hex) part of a digest. */
export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(":") + 1);
}

/** Computes the digest of `data` with `algorithm` (sha256 by default). */
export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = "sha256"): Digest {
  return `${algorithm}:${createHash(algorithm).update(data).digest("hex")}` as Digest;
}

/** An incremental digester: feed it bytes, then read the digest. */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  private readonly hash: Hash;
  /** Number of bytes fed so far. */
  size = 0;

  constructor(algorithm: DigestAlgorithm = "sha256") {
    this.algorithm = algorithm;
    this.hash = createHash(algorithm);
  }

  /** Adds `chunk` to the digest. */
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }

  /** Returns the digest of everything fed. May be called once. */
  digest(): Digest {
    return `${this.algorithm}:${this.hash.digest("hex")}` as Digest;
  }
}

/** What a {@link VerifyingStream} checks: the expected digest and, when known, the size. */
export interface Expected {
  digest: Digest;
  size?: number;
}

/**
 * A pass-through stream that hashes what flows through it and fails — with ERR_SIZE_MISMATCH as
 * soon as more bytes than expected arrive, or with ERR_DIGEST_MISMATCH / ERR_SIZE_MISMATCH at the
 * end — instead of ending cleanly when the content is not what was asked for. A consumer that
 * writes to a temporary file and renames only after the stream ended cleanly therefore never keeps
 * unverified bytes (go-containerregistry's internal/verify).
 */
export class VerifyingStream extends Transform {
  private readonly digester: Digester;
  private readonly expected: Expected;
  private readonly what: string;

  /** `what` names the content in error messages, e.g. "blob sha256:… of docker://…". */
  constructor(expected: Expected, what = `blob ${expected.digest}`) {
    super();
    this.expected = expected;
    this.digester = new Digester(digestAlgorithm(expected.digest));
    this.what = what;
  }

  /** Number of bytes that have passed so far. */
  get bytes(): number {
    return this.digester.size;
  }

  /**
   * Whether this stream checks at least what `expected` asks for: the same digest, and the same
   * size when `expected` names one. A consumer that would verify the same again (a file written
   * only when the stream ends cleanly) can then leave the hashing to this stream.
   */
  verifies(expected: Expected): boolean {
    if (this.expected.digest !== expected.digest) return false;
    if (expected.size === undefined || expected.size < 0) return true;
    return this.expected.size === expected.size;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.digester.update(chunk);
    const { size } = this.expected;
    if (size !== undefined && size >= 0 && this.digester.size > size) {
      cb(new AirlockError("ERR_SIZE_MISMATCH", `${this.what}: more than the expected ${size} bytes arrived; the source is corrupt or does not match its manifest`));
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const { size, digest } = this.expected;
    if (size !== undefined && size >= 0 && this.digester.size !== size) {
      cb(new AirlockError("ERR_SIZE_MISMATCH", `${this.what}: got ${this.digester.size} bytes, expected ${size}; the source is truncated or does not match its manifest`));
      return;
    }
    const actual = this.digester.digest();
    if (actual !== digest) {
      cb(new AirlockError("ERR_DIGEST_MISMATCH", `${this.what}: content has digest ${actual}, expected ${digest}; the source is corrupt or was tampered with`));
      return;
    }
    cb();
  }
}

/** Checks `data` against `expected` (digest and, when given, size); throws on a mismatch. */
export function verifyBytes(data: Uint8Array, expected: Expected, what = `content ${expected.digest}`): void {
  if (expected.size !== undefined && expected.size >= 0 && data.length !== expected.size) {
    throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: got ${data.length} bytes, expected ${expected.size}`);
  }
  const actual = digestOf(data, digestAlgorithm(expected.digest));
  if (actual !== expected.digest) {
    throw new AirlockError("ERR_DIGEST_MISMATCH", `${what}: content has digest ${actual}, expected ${expected.digest}; the source is corrupt or was tampered with`);
  }
}
