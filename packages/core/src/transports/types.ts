/**
 * The transport contract, after containers/image's `types.ImageReference`, `ImageSource` and
 * `ImageDestination`. A transport is one folder with `transport.ts`, `reference.ts`, `source.ts`
 * and `destination.ts`.
 *
 * Call order for a destination (enforced by the copy pipeline, relied upon by every destination):
 *   1. `tryReuseBlob` or `putBlob` for every blob of an image (concurrently when
 *      `capabilities.concurrentWrites`);
 *   2. `putManifest` for every image manifest, then for the index that lists them (children
 *      before their index), the top-level one last with `topLevel: true`;
 *   3. `putSignatures` (optional feature, {@link SignatureDestination}) for manifests already put;
 *   4. `commit()`; then, always, `close()`.
 * Before `commit`, nothing at the destination may look like a complete image: no tag, no
 * index.json entry, no `manifest.json`, no finished archive. A destination that is closed without
 * a commit leaves whatever it held before untouched (blobs it added may remain: they are
 * content-addressed and harmless).
 */
import type { Readable } from "node:stream";
import type { Digest } from "../digest.js";
import type { Descriptor, Manifest } from "../manifest.js";
import type { ManifestMediaType } from "../mediatype.js";
import type { BaseTlsOptions } from "../registry/tls.js";

/** Settings a transport may need to reach an image: credentials, TLS, temp dirs. Plain data. */
export interface SystemContext {
  /** Directory for large temporary files (default: os.tmpdir()). */
  tmpDir?: string;
  /** Registry (docker://) settings. */
  docker?: DockerContext;
  /**
   * The Docker daemon of a `docker-daemon:` image (skopeo's `--daemon-host`, `--src-daemon-host`,
   * `--dest-daemon-host`): `unix:///PATH`, `tcp://HOST:PORT` or `http://HOST:PORT`; unset: DOCKER_HOST, then the default socket.
   */
  dockerDaemonHost?: string;
}

/** Registry settings for one side of a copy, as skopeo's `--src-*` / `--dest-*` flags. */
export interface DockerContext {
  /** `--tls-verify`: undefined = verify (loopback registries may use HTTP); false = skip verification and allow plain HTTP. */
  tlsVerify?: boolean;
  /** `--cert-dir`: directory with `*.crt` CAs and a `*.cert`/`*.key` client pair. */
  certDir?: string;
  /** `--creds USER[:PASS]` / `--username` and `--password`. */
  credentials?: { username: string; password: string };
  /** `--registry-token`: used verbatim as a bearer token. */
  registryToken?: string;
  /** `--no-creds`: access anonymously. */
  noCreds?: boolean;
  /** `--authfile`: the only auth file consulted. */
  authFile?: string;
  /** `--retry-times`. */
  retryTimes?: number;
  /** `--retry-delay` in milliseconds (0 = exponential backoff). */
  retryDelayMs?: number;
  /** The User-Agent of registry requests (default `airlock`). */
  userAgent?: string;
  /**
   * The registries.conf(5) file to read (`--registries-conf`) instead of the default lookup
   * ($CONTAINERS_REGISTRIES_CONF, then ~/.config/containers/registries.conf,
   * /etc/containers/registries.conf, with their drop-in directories).
   */
  registriesConf?: string;
  /** A containers-tls-details.yaml(5) file (`--tls-details`): TLS versions, cipher suites and groups. */
  tlsDetails?: string;
  /**
   * The TLS options of the `tlsDetails` file, already parsed by the caller (core reads no YAML; see
   * `baseTlsOptions`): applied to every TLS connection to the registry. Required when `tlsDetails`
   * is set.
   */
  baseTls?: BaseTlsOptions;
  /**
   * Where this image's signatures are read: the lookaside base URL (`file://` or `http(s)://`) that
   * registries.d(5) configures for it (`lookaside`, or the built-in default); signatures are at
   * `BASE/REPOSITORY-PATH@ALG=HEX/signature-N`. Unset: the image has no signatures.
   */
  lookaside?: string;
  /**
   * Where this image's signatures are written: a `file://` lookaside base URL (registries.d
   * `lookaside-staging`, else `lookaside`). Unset, or not `file://`: the destination cannot store
   * signatures.
   */
  lookasideStaging?: string;
  /**
   * How the user sets this registry's credentials and TLS settings where the caller takes them
   * from (a command's flags, a config file): error messages name these in place of the generic
   * `--creds`, `--tls-verify=false` and `--cert-dir`. Unset: the generic text.
   */
  hints?: RegistryHints;
}

/**
 * The names of the settings that give a registry's credentials and TLS settings, as the user writes
 * them, for error messages: each is text to show (a flag, a config key with its file), never a
 * value and never a credential.
 */
export interface RegistryHints {
  /**
   * Where credentials are given, e.g. `--dest-creds USERNAME:PASSWORD`, or
   * `registries."HOST".credentials in images.yaml (images.yaml:4:3: the variables USER and PASS)`.
   * Messages say "use …" or "the credentials given with …".
   */
  credentials?: string;
  /** The setting that skips TLS verification and allows plain HTTP, e.g. `--dest-tls-verify=false`, or `registries."HOST".tlsVerify: false in images.yaml`. */
  tlsVerify?: string;
  /** The setting that names a directory holding the registry's CA (`ca.crt`), e.g. `--dest-cert-dir DIR`, or `registries."HOST".certDir in images.yaml`. */
  certDir?: string;
}

/** A transport: a name (the part before the first colon) and a parser for the rest. */
export interface Transport {
  /** The transport's name as typed by users, e.g. `oci`, `dir`, `docker`. */
  readonly name: string;
  /** Parses the part after `NAME:` without any I/O. Throws ERR_INVALID_REFERENCE. */
  parseReference(spec: string): ImageReference;
}

/** An immutable, parsed reference to an image in some transport. */
export interface ImageReference {
  /** The transport this reference belongs to. */
  readonly transport: Transport;
  /** The reference as the user would type it, including the `transport:` prefix. Round-trips. */
  toString(): string;
  /**
   * The Docker reference (e.g. `docker.io/library/busybox:latest`) this image is known by, if any:
   * used for signature identities and for naming images in archives.
   */
  dockerReference(): string | undefined;
  /** Opens the image for reading. */
  newSource(ctx?: SystemContext): Promise<ImageSource>;
  /** Opens the location for writing. */
  newDestination(ctx?: SystemContext): Promise<ImageDestination>;
}

/** What a blob read returns: a stream of the raw bytes and, when the source knows it, the size. */
export interface BlobReader {
  stream: Readable;
  size?: number;
  /**
   * Where `stream` starts, when that is not the `offset` asked for (a registry that ignored the
   * Range request sends the blob from byte 0); absent: it starts at the offset asked for.
   */
  offset?: number;
}

/** Options of {@link ImageSource.getBlob}. */
export interface GetBlobOptions {
  signal?: AbortSignal;
  /** Start reading at this byte offset (resume). Sources that cannot seek throw ERR_UNSUPPORTED. */
  offset?: number;
  /**
   * When the source cannot start at `offset` (a registry that ignores Range), return the whole
   * blob from byte 0 and say so in {@link BlobReader.offset}, instead of skipping to `offset`.
   */
  wholeIfUnseekable?: boolean;
}

/**
 * Reads an image. Sources return raw bytes and promise nothing about digests: the copy pipeline
 * verifies every blob and manifest against the digest it asked for.
 */
export interface ImageSource {
  readonly reference: ImageReference;
  /**
   * Returns the top-level manifest when `digest` is undefined, else the manifest with that digest
   * (a child of the top-level index). The returned Manifest's bytes are exactly the stored bytes.
   */
  getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest>;
  /** Opens a blob for reading. Throws ERR_BLOB_NOT_FOUND when it is missing. */
  getBlob(desc: Descriptor, options?: GetBlobOptions): Promise<BlobReader>;
  /** Releases everything the source holds. Always called. */
  close(): Promise<void>;
}

/** What a destination can store, as data (containers/image's destination properties). */
export interface DestinationCapabilities {
  /** The manifest media types it accepts. */
  manifestMediaTypes: readonly ManifestMediaType[];
  /** Whether putBlob may be called concurrently. */
  concurrentWrites: boolean;
  /** Whether it can store indexes (multi-arch images). */
  indexes: boolean;
  /**
   * Whether it stores signatures: true only for a destination that implements
   * {@link SignatureDestination} and is configured to use it. Absent means false.
   */
  signatures?: boolean;
}

/** Options of {@link ImageDestination.putManifest}. */
export interface PutManifestOptions {
  /** True for the manifest the reference names (the last one put); false for an index's children. */
  topLevel: boolean;
  signal?: AbortSignal;
}

/** Where a resumable upload stands: the upload URL and how many bytes the destination confirmed. */
export interface UploadSession {
  location: string;
  /** Bytes the destination acknowledged (the next byte to send). */
  offset: number;
}

/**
 * Keeps one blob's upload session across runs (an import journal), so that a rerun continues a
 * half-pushed blob instead of starting it over.
 */
export interface UploadSessionStore {
  /** The session an earlier run left, if any. */
  load(): UploadSession | undefined;
  /** Records a session; the destination sends nothing more until it resolves. */
  save(session: UploadSession): Promise<void>;
  /** Forgets the session (the blob is stored, or the session is gone). */
  clear(): Promise<void>;
}

/**
 * Optional help a caller gives {@link ImageDestination.putBlob}; a destination MAY ignore it.
 * With `reopen`, a destination re-reads bytes for a retry instead of keeping them in memory.
 */
export interface PutBlobOptions {
  /**
   * Opens the blob again from byte `offset` (the source can seek: a file, an archive). These bytes
   * do not pass the caller's verification: a destination using them MUST have the whole blob's
   * digest checked at the end (a registry does so when the upload is committed).
   */
  reopen?: (offset: number) => Readable;
  /** Where a resumable upload records its session, and finds the one an earlier run left. */
  session?: UploadSessionStore;
}

/** Writes an image. See the call order in this file's comment. */
export interface ImageDestination {
  readonly reference: ImageReference;
  readonly capabilities: DestinationCapabilities;
  /** Returns true if the blob is already present (or was made present cheaply, e.g. by a mount). */
  tryReuseBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean>;
  /**
   * Stores a blob from `stream`. The stream fails (errors) if its content does not match `desc`;
   * the destination MUST then keep nothing under `desc.digest`. Destinations that write files
   * hash while writing, write to a temporary name, check, then rename.
   */
  putBlob(desc: Descriptor, stream: Readable, signal?: AbortSignal, options?: PutBlobOptions): Promise<void>;
  /** Returns true if a manifest with this digest is already stored (lets a re-run skip work). */
  hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean>;
  /** Stores a manifest's exact bytes. */
  putManifest(manifest: Manifest, options: PutManifestOptions): Promise<void>;
  /** Makes the top-level manifest visible under the reference's name. */
  commit(signal?: AbortSignal): Promise<void>;
  /** Releases everything; without a commit, leaves the destination as it was. Always called. */
  close(): Promise<void>;
}

/** Which manifest's signatures a {@link SignatureSource} or {@link SignatureDestination} call is about. */
export interface SignatureOptions {
  /**
   * The digest of a manifest listed by the top-level index (an instance); undefined for the
   * top-level manifest itself.
   */
  instanceDigest?: Digest;
  signal?: AbortSignal;
}

/**
 * An optional source feature, checked at run time with {@link isSignatureSource}: the source
 * returns the signatures stored with an image (containers-signature(5) blobs) as opaque bytes.
 * Nothing here verifies them: they are untrusted until a trust policy has checked them.
 */
export interface SignatureSource {
  /**
   * The signatures of the top-level manifest, or of the instance `options.instanceDigest`, in
   * their stored order; [] when there are none.
   */
  getSignatures(options?: SignatureOptions): Promise<Uint8Array[]>;
}

/** Reports whether a source implements {@link SignatureSource}. */
export function isSignatureSource(src: ImageSource): src is ImageSource & SignatureSource {
  return typeof (src as Partial<SignatureSource>).getSignatures === "function";
}

/**
 * An optional source feature, checked at run time with {@link isStoredManifestSource}: a source
 * whose {@link ImageSource.getManifest} presents the image as a copy writes it rather than as it
 * is stored (containers-storage keeps layers uncompressed only, so the manifest it copies names the
 * uncompressed tars) also returns the manifests as stored. `inspect` reports those, as
 * `skopeo inspect` does; copies keep using `getManifest`.
 */
export interface StoredManifestSource {
  /**
   * The top-level manifest as stored when `digest` is undefined, else the stored manifest with that
   * digest (an image listed by the stored index). The returned Manifest's bytes are exactly the stored bytes.
   */
  getStoredManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest>;
}

/** Reports whether a source implements {@link StoredManifestSource}. */
export function isStoredManifestSource(src: ImageSource): src is ImageSource & StoredManifestSource {
  return typeof (src as Partial<StoredManifestSource>).getStoredManifest === "function";
}

/**
 * An optional destination feature, checked at run time with {@link canStoreSignatures}: the
 * destination stores signatures (opaque bytes) beside the manifests it wrote.
 */
export interface SignatureDestination {
  /**
   * Stores `signatures` for the top-level manifest, or for the instance
   * `options.instanceDigest`, replacing those stored for that manifest before. MUST be called
   * after the manifest was put and before `commit()`; a destination MAY keep them until commit.
   */
  putSignatures(signatures: readonly Uint8Array[], options?: SignatureOptions): Promise<void>;
}

/** Reports whether a destination can store signatures (capabilities.signatures and {@link SignatureDestination}). */
export function canStoreSignatures(dst: ImageDestination): dst is ImageDestination & SignatureDestination {
  return dst.capabilities.signatures === true && typeof (dst as Partial<SignatureDestination>).putSignatures === "function";
}

/**
 * An optional destination feature, checked at run time: the destination can mount blobs from the
 * image being copied when both live on one registry, instead of uploading them.
 */
export interface BlobMountTarget {
  /** Declares the image the blobs come from; blobs in its repository are mounted when possible. */
  setMountSource(source: ImageReference): void;
}

/** Reports whether a destination implements {@link BlobMountTarget}. */
export function isBlobMountTarget(dest: ImageDestination): dest is ImageDestination & BlobMountTarget {
  return typeof (dest as Partial<BlobMountTarget>).setMountSource === "function";
}
