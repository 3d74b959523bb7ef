/**
 * The CLI's configuration files: `images.yaml` (what to move), its resolution into concrete images,
 * destination naming, and `images.lock.yaml` (every image pinned to digests). The verbs `lock`,
 * `plan`, `export` and `import` are built on these functions.
 */
export {
  type AsName,
  type CredentialsSource,
  IMAGES_FILE_VERSION,
  type ImageEntry,
  type ImageSelection,
  type ImagesConfig,
  loadImagesFile,
  type PlatformSelection,
  parseImagesConfig,
  type RegistryImageEntry,
  type RegistrySettings,
  staticBundleNames,
  type TransportImageEntry,
} from "./images.js";
export {
  type BuildLockOptions,
  buildLock,
  diffLock,
  type FetchedImage,
  type FetchTop,
  formatLock,
  LOCK_FILE_NAME,
  LOCK_FILE_VERSION,
  type Lock,
  type LockDrift,
  type LockedImage,
  type LockedManifest,
  lockImage,
  parseLock,
  pinnedSourceName,
  readLock,
  writeLock,
} from "./lock.js";
export { destinationName, NAMING_MODES, type NamingMode, registryPathComponent, splitBundleName } from "./naming.js";
export { type PlannedImage, type ResolveDeps, type ResolveFailure, type ResolveOptions, resolveImages, systemContextFor } from "./resolve.js";
export { isTagList, regexProblem, selectTags, semverRangeProblem, type TagFilter, type TagSelector, tagVersion } from "./tags.js";
export { type ConfigIssue, ConfigFileError, formatIssue, isSecretKey } from "./yaml-check.js";
