/**
 * The registry client of @airlock/core: a distribution-spec client on undici with
 * authentication, auth files, TLS settings, retries and error mapping.
 */
export * from "./auth.js";
export * from "./authfile.js";
export * from "./client.js";
export * from "./errors.js";
export { type ConnectionOptions, type HttpMethod, RegistryConnection, type RegistryRequest, type RegistryResponse, setRegistryDebugLogger, type Timeouts } from "./http.js";
export * from "./login.js";
export { BACKOFF_BASE_MS, DEFAULT_RETRIES, isRetryableNetworkError, isRetryableStatus, MAX_RETRY_WAIT_MS, parseRetryAfter, type RetryPolicy, retryDelay } from "./retry.js";
export * from "./tls.js";
