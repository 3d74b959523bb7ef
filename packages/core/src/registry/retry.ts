/**
 * Retry policy of the registry client: which failures may be repeated, and how long to wait —
 * exponential backoff with jitter, or the registry's Retry-After, bounded.
 */
import { AirlockError } from "../errors.js";

/** How often and how patiently a request is repeated. */
export interface RetryPolicy {
  /** Retries after the first attempt (`--retry-times`). */
  retries: number;
  /** Fixed delay between retries in ms (`--retry-delay`); 0 or undefined = exponential backoff. */
  delayMs?: number | undefined;
}

/** Retries of idempotent requests when `--retry-times` is not given. */
export const DEFAULT_RETRIES = 3;

/** First delay of the exponential backoff, in ms (then doubled per attempt, ±25 % jitter). */
export const BACKOFF_BASE_MS = 1000;

/** Longest wait between two attempts, in ms; a Retry-After longer than this fails at once. */
export const MAX_RETRY_WAIT_MS = 120_000;

/** HTTP statuses worth repeating: request timeout, rate limit and server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

const RETRYABLE_ERRNO = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENETDOWN",
  "ENETUNREACH",
  "ENETRESET",
  "EHOSTDOWN",
  "EHOSTUNREACH",
  "EAI_AGAIN",
  "EAGAIN",
  "EBUSY",
  "EINTR",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
]);

/** Reports whether a low-level error (node errno or undici code) is a transient network fault. */
export function isRetryableNetworkError(err: unknown): boolean {
  if (err instanceof AirlockError) return err.retryable;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && RETRYABLE_ERRNO.has(code)) return true;
  const cause = (err as { cause?: unknown })?.cause;
  return cause !== undefined && cause !== err && isRetryableNetworkError(cause);
}

/** Parses a Retry-After header (delta-seconds or an HTTP date) into milliseconds from `now`. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/**
 * The wait before retry number `attempt` (0-based): the registry's Retry-After when given, else
 * the fixed `delayMs`, else BACKOFF_BASE_MS·2^attempt with ±25 % jitter; never more than
 * MAX_RETRY_WAIT_MS.
 */
export function retryDelay(attempt: number, policy: RetryPolicy, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, MAX_RETRY_WAIT_MS);
  if (policy.delayMs !== undefined && policy.delayMs > 0) return Math.min(policy.delayMs, MAX_RETRY_WAIT_MS);
  const base = BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16);
  const jitter = base * (Math.random() * 0.5 - 0.25);
  return Math.min(Math.round(base + jitter), MAX_RETRY_WAIT_MS);
}

/** Waits `ms` milliseconds, or rejects with ERR_ABORTED when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** An ERR_ABORTED error for an aborted signal (its reason is kept as the cause). */
export function abortError(signal: AbortSignal, what = "the operation"): AirlockError {
  const reason: unknown = signal.reason;
  if (reason instanceof AirlockError) return reason;
  return new AirlockError("ERR_ABORTED", `${what} was aborted`, { cause: reason });
}
