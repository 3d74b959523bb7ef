/**
 * `sync` in @airlock/core: enumerate the images of a source, name their destinations as skopeo
 * does, and copy them — several at once, skipping those already present.
 */
export { goBase, goClean, goJoin, type SyncDestinationTransport, type SyncImage, type SyncNaming, syncDestination, syncDestinationName, syncRelativeName } from "./naming.js";
export { chooseInstance, destinationDigest, type InstanceChoice, RegistryClientPool, type SourceDigest, sourceDigest } from "./present.js";
export { runScheduled, type ScheduleOptions } from "./schedule.js";
export { dirSyncImages, dockerSyncImages, ociSyncImages, type RepositorySelection, repositorySyncImages, type TagSelectFn } from "./sources.js";
export {
  DEFAULT_SYNC_PARALLEL,
  planSync,
  runSync,
  type SyncEvent,
  type SyncImageResult,
  type SyncOptions,
  type SyncReport,
  type SyncStatus,
  type SyncTask,
  syncImages,
  taskRegistries,
} from "./sync.js";
