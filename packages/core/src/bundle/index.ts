/**
 * Bundles: one portable archive (a tar holding an OCI image layout plus airlock's metadata, in
 * volumes when asked) that carries images across an air gap. See FORMAT.md.
 */
export type { BundleEvent, BundleListener, BundleOnlyEvent } from "./events.js";
export { type ExportImage, type ExportOptions, type ExportResult, type ExportedImage, type ExportedVolume, type ExportTool, exportBundle, isValidBundleName } from "./export.js";
export {
  BUNDLE_FORMAT_VERSION,
  BUNDLE_MEDIA_TYPE,
  BUNDLE_METADATA_PATH,
  type BundleBase,
  type BundleBlob,
  type BundleImage,
  type BundleMetadata,
  type BundlePlatformImage,
  type BundleSignature,
  type BundleTool,
  type BundleVolume,
  checksumFileName,
  journalFileName,
  MIN_SPLIT_SIZE,
  signaturePath,
  TOOL_DIR,
  toolPath,
  VOLUME_MEDIA_TYPE,
  type VolumeDescription,
  type VolumeEntry,
  volumeFileName,
} from "./format.js";
export { type ImportAction, type ImportedImage, type ImportFailure, type ImportOptions, type ImportResult, importBundle } from "./import.js";
export { ImportJournal, type ImportJournalData, importJournalPath } from "./upload-journal.js";
export { type BundleProblem, BundleReader, type OpenBlobOptions, type OpenBundleOptions, type ProblemKind, type ReaderVolume, type Segment, type TarEntry } from "./reader.js";
export { checkSpace, type ExportSpaceInput, exportSpaceNeeds, type ImportSpace, type ImportSpaceInput, importSpace, type SpaceCheck, type SpaceNeed } from "./plan.js";
export type { PlatformSelection } from "./resolve.js";
export { BundleReference, type BundleSourceOptions, bundleImageSource, bundleTransport, readBundleSignatures } from "./source.js";
export { type VerifiedImage, type VerifiedTool, type VerifiedVolume, type VerifyOptions, type VerifyReport, verifyBundle } from "./verify.js";
