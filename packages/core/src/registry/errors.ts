/**
 * Registry errors: the distribution spec's error codes and HTTP statuses mapped onto airlock's
 * stable codes, with messages a user can act on. Like go-containerregistry's
 * `remote/transport/error.go`, the registry's own codes and the HTTP status are kept.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
import { AirlockError, type ErrorCode } from "../errors.js";
import type { RegistryHints } from "../transports/types.js";

/** One entry of a registry's `{"errors": [...]}` response body. */
export interface RegistryErrorEntry {
  /** The distribution-spec code, e.g. `MANIFEST_UNKNOWN`. */
  code: string;
  message?: string;
  detail?: unknown;
}

/** What kind of object a request was about; it decides what a 404 means. */
export type RequestKind = "ping" | "manifest" | "blob" | "upload" | "tags" | "catalog" | "referrers" | "token" | "delete";

/** Options of {@link RegistryError}. */
export interface RegistryErrorOptions {
  status: number;
  errors?: RegistryErrorEntry[];
  retryable?: boolean;
  cause?: unknown;
}

/** An error answered by a registry: an {@link AirlockError} that keeps the HTTP status and the registry's error entries. */
export class RegistryError extends AirlockError {
  /** The HTTP status of the response. */
  readonly status: number;
  /** The registry's error entries (may be empty). */
  readonly errors: readonly RegistryErrorEntry[];

  constructor(code: ErrorCode, message: string, options: RegistryErrorOptions) {
    super(code, message, { retryable: options.retryable ?? false, cause: options.cause });
    this.name = "RegistryError";
    this.status = options.status;
    this.errors = options.errors ?? [];
  }

  /** The first distribution-spec error code the registry gave, if any. */
  get registryCode(): string | undefined {
    return this.errors[0]?.code;
  }
}

/** Parses a registry error body; returns [] when it is not the spec's `{"errors": [...]}` JSON. */
export function parseRegistryErrors(body: string): RegistryErrorEntry[] {
  if (!body) return [];
  try {
    const json = JSON.parse(body) as unknown;
    const errors = (json as { errors?: unknown })?.errors;
    if (!Array.isArray(errors)) {
      // Some token servers answer {"details": "..."} or {"error": "...", "error_description": "..."}.
      const o = json as Record<string, unknown>;
      const text = [o.details, o.error_description, o.error, o.message].find((v) => typeof v === "string") as string | undefined;
      return text ? [{ code: "UNKNOWN", message: text }] : [];
    }
    return errors
      .filter((e): e is Record<string, unknown> => typeof e === "object" && e !== null)
      .map((e) => {
        const entry: RegistryErrorEntry = { code: typeof e.code === "string" ? e.code : "UNKNOWN" };
        if (typeof e.message === "string") entry.message = e.message;
        if (e.detail !== undefined) entry.detail = e.detail;
        return entry;
      });
  } catch {
    return [];
  }
}

/** Formats registry error entries for a message: `MANIFEST_UNKNOWN: manifest unknown; …`. */
export function describeRegistryErrors(errors: readonly RegistryErrorEntry[], status: number, body = ""): string {
  if (errors.length === 0) {
    const text = body.trim().replace(/\s+/g, " ").slice(0, 200);
    return `HTTP ${status}${text ? `: ${text}` : ""}`;
  }
  return errors
    .slice(0, 5)
    .map((e) => {
      let s = e.message ? `${e.code}: ${e.message}` : e.code;
      if (e.detail !== undefined && e.detail !== null) {
        const d = typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail);
        if (d && d !== "{}" && d !== "null") s += ` (${d.slice(0, 200)})`;
      }
      return s;
    })
    .join("; ");
}

/** What the error mapping needs to know about a failed request. */
export interface FailedRequest {
  /** What was being done, e.g. `reading manifest "latest" of 127.0.0.1:5000/app`. */
  what: string;
  kind: RequestKind;
  /** Registry host (with port). */
  host: string;
  status: number;
  /** The response body (at most a few KiB of it). */
  body: string;
  /** Whether credentials (basic, or a bearer token obtained with credentials) were sent. */
  credentialsSent: boolean;
  /** The value of Retry-After, if any. */
  retryAfter?: string | undefined;
  /** The `error` parameter of a 401's bearer challenge, e.g. `insufficient_scope`. */
  authError?: string | undefined;
  /** How the user gives this registry's credentials (default: the generic `--creds`). */
  hints?: RegistryHints | undefined;
  /**
   * Whether the credentials come from auth files, so that `airlock login` helps (default true);
   * false when they are given directly or anonymous access was asked for.
   */
  authFilesConsulted?: boolean | undefined;
  /** The one auth file consulted, when one was named: `airlock login --authfile PATH HOST` writes there. */
  authFile?: string | undefined;
}

const NOT_FOUND_REGISTRY_CODES = new Set(["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);

/**
 * Maps a failed response onto an {@link RegistryError} with a stable code and an actionable
 * message: 401/UNAUTHORIZED → ERR_UNAUTHORIZED, 403/DENIED → ERR_DENIED, MANIFEST_UNKNOWN,
 * NAME_UNKNOWN or 404 on a manifest → ERR_IMAGE_NOT_FOUND, BLOB_UNKNOWN or 404 on a blob →
 * ERR_BLOB_NOT_FOUND, 408/429/5xx → ERR_REGISTRY marked retryable.
 */
export function mapRegistryError(f: FailedRequest): RegistryError {
  const errors = parseRegistryErrors(f.body);
  const codes = new Set(errors.map((e) => e.code));
  const detail = describeRegistryErrors(errors, f.status, f.body);
  const opts = { status: f.status, errors };

  if (f.status === 401 && f.authError === "insufficient_scope") {
    // Docker Hub and distribution answer so for a repository that does not exist as well.
    const why = f.credentialsSent
      ? `the repository does not exist, or ${credentialsSent(f)} may not access it; check the name, or use those of a user that may`
      : `the repository does not exist or requires authentication: check the name, or ${howToGiveCredentials(f)}`;
    return new RegistryError(f.credentialsSent ? "ERR_DENIED" : "ERR_UNAUTHORIZED", `${f.what}: requested access to the resource is denied: ${why} (${detail})`, opts);
  }
  if (f.status === 401 || codes.has("UNAUTHORIZED")) {
    const hint = f.credentialsSent
      ? `the registry rejected ${credentialsSent(f)}: ${checkCredentials(f)}`
      : `authentication is required: ${howToGiveCredentials(f)}`;
    return new RegistryError("ERR_UNAUTHORIZED", `${f.what}: ${hint} (${detail})`, opts);
  }
  if (f.status === 403 || codes.has("DENIED")) {
    const who = f.credentialsSent ? "the credentials used do not" : "anonymous access does not";
    return new RegistryError("ERR_DENIED", `${f.what}: access denied by ${f.host}: ${who} allow this operation; log in as a user that may (${detail})`, opts);
  }
  if (f.status === 429 || codes.has("TOOMANYREQUESTS")) {
    const after = f.retryAfter ? ` (the registry asks to retry after ${f.retryAfter})` : "";
    return new RegistryError("ERR_REGISTRY", `${f.what}: ${f.host} is rate-limiting requests${after}; wait and retry, use --retry-times, or log in for a higher limit (${detail})`, { ...opts, retryable: true });
  }
  const notFound = f.status === 404 || [...codes].some((c) => NOT_FOUND_REGISTRY_CODES.has(c) || c === "BLOB_UNKNOWN");
  if (notFound) {
    if (f.kind === "blob" || codes.has("BLOB_UNKNOWN")) {
      return new RegistryError("ERR_BLOB_NOT_FOUND", `${f.what}: blob not found on ${f.host} (${detail})`, opts);
    }
    if (f.kind === "manifest" || f.kind === "delete" || f.kind === "tags" || [...codes].some((c) => NOT_FOUND_REGISTRY_CODES.has(c))) {
      const what = codes.has("NAME_UNKNOWN") || f.kind === "tags" ? "repository not found" : "image not found";
      return new RegistryError("ERR_IMAGE_NOT_FOUND", `${f.what}: ${what} (${detail})`, opts);
    }
    if (f.kind === "upload") {
      return new RegistryError("ERR_REGISTRY", `${f.what}: the upload session is gone (${detail}); retry the copy`, { ...opts, retryable: true });
    }
  }
  if (f.status === 408 || f.status >= 500) {
    return new RegistryError("ERR_REGISTRY", `${f.what}: ${f.host} failed with a server error (${detail}); retry later or use --retry-times`, { ...opts, retryable: true });
  }
  if (codes.has("UNSUPPORTED") || f.status === 405) {
    return new RegistryError("ERR_UNSUPPORTED", `${f.what}: ${f.host} does not support this operation (${detail})`, opts);
  }
  return new RegistryError("ERR_REGISTRY", `${f.what}: ${f.host} refused the request (${detail})`, opts);
}

/** `airlock login [--authfile PATH] HOST`, when the credentials come from auth files. */
function loginCommand(f: FailedRequest): string | undefined {
  if (f.authFilesConsulted === false) return undefined;
  return `airlock login ${f.authFile ? `--authfile ${f.authFile} ` : ""}${f.host}`;
}

/** What to do when a registry wants credentials and none were sent: `run "airlock login HOST" or use …`. */
function howToGiveCredentials(f: FailedRequest): string {
  const login = loginCommand(f);
  const give = f.hints?.credentials !== undefined ? `use ${f.hints.credentials}` : "pass --creds USERNAME:PASSWORD (or --registry-token)";
  return login ? `run "${login}" or ${give}` : give;
}

/** The credentials sent, named by where they came from: `the credentials given with --dest-creds`. */
function credentialsSent(f: FailedRequest): string {
  const login = loginCommand(f);
  return login ? `the credentials stored by "${login}"` : `the credentials given with ${f.hints?.credentials ?? "--creds or --username/--password"}`;
}

/** What to do about credentials a registry refused. */
function checkCredentials(f: FailedRequest): string {
  if (!loginCommand(f)) return "check the username and password";
  return `run it again with the right username and password, or use ${f.hints?.credentials ?? "--creds USERNAME:PASSWORD"}`;
}
