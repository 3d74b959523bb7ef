/**
 * Errors raised by airlock. Every error carries a stable string `code` (like undici's `UND_ERR_*`),
 * a message a user can act on (what failed, for which reference, what to do) and, where there was
 * one, the underlying `cause`. Credentials never appear in a message.
 */

/** Stable error codes. New codes are added at the end; existing ones never change meaning. */
export type ErrorCode =
  | "ERR_INVALID_REFERENCE"
  | "ERR_UNKNOWN_TRANSPORT"
  | "ERR_INVALID_DIGEST"
  | "ERR_DIGEST_MISMATCH"
  | "ERR_SIZE_MISMATCH"
  | "ERR_UNSUPPORTED_MEDIA_TYPE"
  | "ERR_MANIFEST_INVALID"
  | "ERR_IMAGE_NOT_FOUND"
  | "ERR_BLOB_NOT_FOUND"
  | "ERR_AMBIGUOUS_IMAGE"
  | "ERR_NO_MATCHING_PLATFORM"
  | "ERR_INVALID_LAYOUT"
  | "ERR_DESTINATION"
  | "ERR_UNSUPPORTED"
  | "ERR_INVALID_ARGUMENT"
  | "ERR_REGISTRY"
  | "ERR_UNAUTHORIZED"
  | "ERR_DENIED"
  | "ERR_TLS"
  | "ERR_NETWORK"
  | "ERR_TIMEOUT"
  | "ERR_ABORTED"
  | "ERR_IO"
  | "ERR_SIGNATURE"
  | "ERR_POLICY"
  | "ERR_POLICY_REJECTED";

/** Error codes that mean "the image (or repository) does not exist": skopeo exits with 2 for them. */
export const NOT_FOUND_CODES: ReadonlySet<ErrorCode> = new Set(["ERR_IMAGE_NOT_FOUND"]);

/** Options of {@link AirlockError}. */
export interface AirlockErrorOptions {
  /** The error that caused this one. */
  cause?: unknown;
  /** Whether repeating the same operation may succeed (network faults, 429, 5xx). */
  retryable?: boolean;
}

/** An error with a stable `code`, a message for the user, and an optional `cause`. */
export class AirlockError extends Error {
  /** The stable code of this error. */
  readonly code: ErrorCode;
  /** Whether repeating the same operation may succeed. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: AirlockErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AirlockError";
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** Reports whether `err` is an {@link AirlockError}, optionally with the given code. */
export function isAirlockError(err: unknown, code?: ErrorCode): err is AirlockError {
  return err instanceof AirlockError && (code === undefined || err.code === code);
}

/** Reports whether `err` means that an image does not exist (skopeo's exit status 2). */
export function isNotFound(err: unknown): boolean {
  return err instanceof AirlockError && NOT_FOUND_CODES.has(err.code);
}
