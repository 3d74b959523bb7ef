/**
 * Registry errors in the distribution spec's format: an HTTP status and a JSON body
 * `{"errors":[{"code","message","detail"}]}` whose `code` is one of the spec's error codes.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
import { type AirlockError, isAirlockError } from "@airlock/core";

/** The error codes of the distribution spec (code-1 … code-14), plus `UNKNOWN` for a server fault. */
export type RegistryErrorCode =
  | "BLOB_UNKNOWN"
  | "BLOB_UPLOAD_INVALID"
  | "BLOB_UPLOAD_UNKNOWN"
  | "DIGEST_INVALID"
  | "MANIFEST_BLOB_UNKNOWN"
  | "MANIFEST_INVALID"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "SIZE_INVALID"
  | "UNAUTHORIZED"
  | "DENIED"
  | "UNSUPPORTED"
  | "TOOMANYREQUESTS"
  | "UNKNOWN";

/** An error the registry answers with: the spec's code, the HTTP status, a message and an optional detail. */
export class RegistryError extends Error {
  /** The distribution-spec error code. */
  readonly code: RegistryErrorCode;
  /** The HTTP status of the response. */
  readonly status: number;
  /** Unstructured JSON the client may use (the spec's `detail`). */
  readonly detail: unknown;

  constructor(status: number, code: RegistryErrorCode, message: string, detail?: unknown, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "RegistryError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }

  /** The JSON body of the response. */
  body(): { errors: { code: string; message: string; detail?: unknown }[] } {
    const e: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) e.detail = this.detail;
    return { errors: [e] };
  }
}

/**
 * Turns any error raised while answering a request into a {@link RegistryError}: registry errors
 * pass through, airlock's own codes map to the spec's (an invalid digest → DIGEST_INVALID, a
 * malformed manifest → MANIFEST_INVALID, …), anything else is a 500 UNKNOWN.
 */
export function toRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  if (isAirlockError(err)) return fromAirlockError(err);
  return new RegistryError(500, "UNKNOWN", "internal server error", undefined, { cause: err });
}

function fromAirlockError(err: AirlockError): RegistryError {
  const opts = { cause: err };
  switch (err.code) {
    case "ERR_INVALID_DIGEST":
    case "ERR_DIGEST_MISMATCH":
      return new RegistryError(400, "DIGEST_INVALID", err.message, undefined, opts);
    case "ERR_SIZE_MISMATCH":
      return new RegistryError(400, "SIZE_INVALID", err.message, undefined, opts);
    case "ERR_MANIFEST_INVALID":
    case "ERR_UNSUPPORTED_MEDIA_TYPE":
      return new RegistryError(400, "MANIFEST_INVALID", err.message, undefined, opts);
    case "ERR_BLOB_NOT_FOUND":
      return new RegistryError(404, "BLOB_UNKNOWN", err.message, undefined, opts);
    case "ERR_DENIED":
      return new RegistryError(403, "DENIED", err.message, undefined, opts);
    case "ERR_UNSUPPORTED":
      return new RegistryError(405, "UNSUPPORTED", err.message, undefined, opts);
    default:
      return new RegistryError(500, "UNKNOWN", "internal server error", undefined, opts);
  }
}
