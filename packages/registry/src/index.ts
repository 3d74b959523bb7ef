/**
 * @airlock/registry — an OCI distribution-spec registry server, serving an OCI image layout
 * directory (read-write) or a bundle (read-only): what `airlock serve` runs.
 */
export { Htpasswd, parseBasicAuth } from "./auth.js";
export { RegistryError, type RegistryErrorCode, toRegistryError } from "./errors.js";
export { clfDate, type ListenAddress, parseContentRange, parseListenAddress, parseRange } from "./http.js";
export {
  BUNDLE_NAMINGS,
  type BundleNaming,
  bundleRefNameParser,
  DEFAULT_TAG,
  isRepositoryName,
  isTag,
  parseRefName,
  REPOSITORY_NAME_RE,
  type RefNameParser,
  type RepositoryTag,
  refNameOf,
  type ServedName,
  servedBundleName,
  TAG_RE,
} from "./names.js";
export { BufferPool, SEND_CHUNK, sendSpans } from "./send.js";
export { type RunningServer, type ServeOptions, serve } from "./serve.js";
export { createRegistryServer, type ListeningAddress, type RegistryServer, type RegistryServerOptions } from "./server.js";
export { BundleRegistryStore, type OpenBundleStoreOptions, openBundleStore, type ServedImage } from "./store/bundle.js";
export { type LayoutContent, layoutContent } from "./store/content.js";
export { LayoutRegistryStore, type OpenLayoutStoreOptions, UPLOADS_DIR } from "./store/layout.js";
export { LayoutContentStore } from "./store/read.js";
export { RECORDS_DIR, RepositoryRecordFiles } from "./store/records.js";
export { RepositoryIndex, type RepositoryRecord, type RepositoryRecords } from "./store/repositories.js";
export { type BlobFiles, type ByteRange, type FileSpan, hasBlobFiles, isWritableStore, type PushedManifest, type RegistryStore, type StoredManifest, type WritableRegistryStore } from "./store/types.js";
export { type UploadSession, Uploads, type UploadsOptions } from "./uploads.js";
