/**
 * BundleReader: random access to a bundle — or to any tar holding an OCI image layout — without
 * extracting it. Opening it indexes the tar by reading headers only, seeking from header to header
 * across the volumes as one logical stream; a blob is then read as a ranged stream of the volume
 * files (regclient's "multi-pass streaming over a tar instead of extracting it").
 *
 * The reader is tolerant: a missing volume, a damaged header or a truncated volume does not make
 * `open` fail; each is recorded in `problems` with the volume it concerns, and the index holds
 * everything that could be read. Callers decide whether what they need is intact.
 *
 * It is not tolerant of ambiguity: a path stored twice (an entry appended to the tar, which every
 * tar reader — skopeo, `tar -x` — takes instead of the first) is recorded as `entry-duplicate`,
 * and {@link BundleReader.entry} refuses to choose between the copies (unless opened with
 * `duplicates: "first"`, as verify does), so index.json, bundle.json, manifests and blobs are
 * never read from an altered path. In an airlock bundle, an entry that the description of its
 * volume does not list (e.g. appended after `airlock/bundle.json`) is recorded as `entry-unlisted`.
 */
import { createReadStream, promises as fs, readSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { type Digest, isDigest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { type Descriptor, type IndexJSON, MAX_MANIFEST_SIZE, Manifest, validateDescriptor } from "../manifest.js";
import {
  BUNDLE_MEDIA_TYPE,
  BUNDLE_METADATA_PATH,
  type BundleMetadata,
  blobPath,
  checksumFileName,
  digestFromBlobPath,
  INDEX_PATH,
  parseVolumeDescriptionPath,
  VOLUME_MEDIA_TYPE,
  type VolumeDescription,
} from "./format.js";
import { BLOCK_SIZE, decodeHeader, isZeroBlock, paddedSize, parsePaxRecords, type RawHeader, TypeFlag } from "./tar.js";

/** What kind of fault a {@link BundleProblem} is. */
export type ProblemKind =
  | "volume-missing"
  | "volume-foreign"
  | "volume-misnamed"
  | "volume-size"
  | "volume-checksum"
  | "volume-truncated"
  | "header-damaged"
  | "end-missing"
  | "entry-incomplete"
  | "entry-missing"
  | "entry-mismatch"
  | "entry-duplicate"
  | "entry-unlisted"
  | "blob-missing"
  | "blob-digest"
  | "blob-size"
  | "manifest-invalid"
  | "index-invalid"
  | "metadata-missing"
  | "metadata-invalid"
  | "metadata-mismatch"
  | "checksums-missing";

/** One thing wrong with a bundle, said precisely enough to act on. */
export interface BundleProblem {
  kind: ProblemKind;
  /** What is wrong and what to do, for a person. */
  message: string;
  /** The volume concerned, when there is one. */
  volume?: number;
  /** The archive path concerned. */
  path?: string;
  /** The blob or manifest concerned. */
  digest?: Digest;
  /** The image concerned. */
  image?: string;
  /** "warning" for what does not stop an import (a missing sidecar, an unreferenced blob). */
  severity: "error" | "warning";
}

/** A volume file of a bundle as found on disk. */
export interface ReaderVolume {
  number: number;
  path: string;
  present: boolean;
  /** Size on disk (0 when missing). */
  size: number;
  /** `volume`: starts with a volume description; `continuation`: holds the rest of a large entry; `plain`: a tar without airlock descriptions. */
  kind: "volume" | "continuation" | "plain" | "missing";
  /** Its `airlock/volume-NNN.json`, when it has one. */
  description?: VolumeDescription;
}

/** An entry of the tar, located by volume and offset. */
export interface TarEntry {
  path: string;
  size: number;
  typeflag: string;
  /** The volume and offset of its header (of the pax header when it has one). */
  volume: number;
  headerOffset: number;
  /** Where its data starts. */
  dataVolume: number;
  dataOffset: number;
  /** False when part of its data lies in a missing or truncated volume. */
  complete: boolean;
}

/** Options of {@link BundleReader.open}. */
export interface OpenBundleOptions {
  signal?: AbortSignal;
  /**
   * What {@link BundleReader.entry} does with a path the tar holds more than once: `refuse`
   * (the default) throws ERR_INVALID_LAYOUT, so nothing is read from an altered path; `first`
   * returns the first copy (the one an airlock export wrote), for a caller that reports the
   * duplicates itself (verify). Either way each duplicate is recorded in `problems`.
   */
  duplicates?: "refuse" | "first";
}

/** Options of {@link BundleReader.openBlob}. */
export interface OpenBlobOptions {
  /** Start at this byte of the blob. */
  offset?: number;
  /** Read size of the stream's chunks (default {@link BLOB_READ_SIZE}). */
  highWaterMark?: number;
}

/**
 * The read size of blob streams: 1 MiB on Node (fewer reads, hash updates and socket writes per
 * byte); 256 KiB on Bun, whose streams hold more chunks in flight — an import of the bench corpus
 * by the compiled executable peaked at 156–164 MiB with 1 MiB reads and at 137–139 MiB with
 * 256 KiB, in the same time (Node: ~105 MiB either way).
 */
export const BLOB_READ_SIZE = process.versions?.bun === undefined ? 1024 * 1024 : 256 * 1024;

const READ_AHEAD = 8 * 1024;
const MAX_DESCRIPTION_SIZE = 16 * 1024 * 1024;
const MAX_METADATA_SIZE = 256 * 1024 * 1024;
const VOLUME_SUFFIX_RE = /^\.(\d{3,})$/;

interface Pos {
  v: number;
  off: number;
}

/** A bundle opened for reading. */
export class BundleReader {
  /** The bundle's path without a volume suffix (`bundle.tar` for `bundle.tar.000`, …). */
  readonly path: string;
  /** Every volume from 0 to the last known, present or not. */
  readonly volumes: ReaderVolume[];
  /** Faults found while indexing. */
  readonly problems: BundleProblem[] = [];
  /** The bundle id of its volume descriptions, if it has any. */
  bundleId: string | undefined;
  /** Whether the end-of-archive marker was found. */
  endOfArchive = false;
  /**
   * True when a single file holds all the volumes of a split bundle concatenated (`cat b.tar.*`):
   * it is read as one tar, and the volumes' own checksums no longer apply.
   */
  concatenated = false;
  private readonly handles = new Map<number, FileHandle>();
  private readonly list: TarEntry[] = [];
  private readonly byPath = new Map<string, TarEntry>();
  /** The first entry of every path, whatever its type. */
  private readonly firstAt = new Map<string, TarEntry>();
  /** Every copy of each path the tar holds more than once, in archive order. */
  private readonly copies = new Map<string, TarEntry[]>();
  private duplicatesMode: "refuse" | "first" = "refuse";
  private cache: { v: number; start: number; buf: Buffer } | undefined;
  private indexCache: Promise<IndexJSON> | undefined;
  private metadataCache: Promise<BundleMetadata | undefined> | undefined;

  private constructor(path: string, volumes: ReaderVolume[]) {
    this.path = path;
    this.volumes = volumes;
  }

  /**
   * Opens a bundle: `pathOrVolumes` is the bundle's path (a single file `bundle.tar`, or the base
   * name of volumes `bundle.tar.000`, `bundle.tar.001`, …; naming one volume works too), or the
   * list of volume files. Reads only tar headers and the small volume descriptions. Throws
   * ERR_IO when there is no such bundle; every other fault is recorded in `problems`.
   */
  static async open(pathOrVolumes: string | string[], options: OpenBundleOptions = {}): Promise<BundleReader> {
    const { base, files } = await discoverVolumes(pathOrVolumes);
    const maxNumber = Math.max(...files.keys());
    const volumes: ReaderVolume[] = [];
    for (let n = 0; n <= maxNumber; n++) {
      const p = files.get(n);
      volumes.push({ number: n, path: p ?? `${base}.${String(n).padStart(3, "0")}`, present: p !== undefined, size: 0, kind: p ? "plain" : "missing" });
    }
    const reader = new BundleReader(base, volumes);
    reader.duplicatesMode = options.duplicates ?? "refuse";
    try {
      await reader.load(options.signal);
    } catch (err) {
      await reader.close();
      throw err;
    }
    return reader;
  }

  /** Every entry, in archive order. */
  entries(): readonly TarEntry[] {
    return this.list;
  }

  /**
   * The entry at `path`, if the tar holds one (`./` prefixes are ignored). When the tar holds
   * `path` more than once, throws ERR_INVALID_LAYOUT (or, opened with `duplicates: "first"`,
   * returns the first copy).
   */
  entry(path: string): TarEntry | undefined {
    const p = normalizePath(path);
    const copies = this.copies.get(p);
    if (copies && this.duplicatesMode === "refuse") {
      throw new AirlockError(
        "ERR_INVALID_LAYOUT",
        `bundle ${this.path} holds ${p} ${copies.length} times (${copies.map((e) => `at ${this.where(e)}`).join(", ")}): a tar reader would take the last one, so airlock reads none of them; ${this.bundleId ? "the bundle was altered" : "the archive is ambiguous"}`,
      );
    }
    return this.byPath.get(p);
  }

  /** Whether the tar holds `path` more than once (see {@link BundleReader.entry}). */
  isDuplicate(path: string): boolean {
    return this.copies.has(normalizePath(path));
  }

  /** Whether `entry` is a later copy of a path the tar already held (not the one {@link BundleReader.entry} would name). */
  isLaterCopy(entry: TarEntry): boolean {
    const copies = this.copies.get(entry.path);
    return copies !== undefined && copies[0] !== entry;
  }

  /** Whether the layout holds the blob (or manifest) `digest` (once or more: see {@link BundleReader.entry}). */
  hasBlob(digest: Digest): boolean {
    return this.byPath.has(blobPath(digest));
  }

  /** The volumes that should exist but do not. */
  missingVolumes(): number[] {
    return this.volumes.filter((v) => !v.present).map((v) => v.number);
  }

  /** The sidecar checksum file's path (`bundle.tar.sha256`). */
  get checksumFile(): string {
    return checksumFileName(this.path);
  }

  /** Reads a whole entry into memory; refuses entries larger than `max` bytes. */
  async readEntry(entry: TarEntry, max = MAX_MANIFEST_SIZE): Promise<Buffer> {
    if (entry.size > max) throw new AirlockError("ERR_INVALID_LAYOUT", `${entry.path} in ${this.path} is ${entry.size} bytes, more than the ${max} airlock reads into memory`);
    const out = Buffer.allocUnsafe(entry.size);
    let at = 0;
    for (const seg of this.segments(entry)) {
      const got = readFully(this.handles.get(seg.volume) as FileHandle, out.subarray(at, at + seg.length), seg.start);
      if (got !== seg.length) throw new AirlockError("ERR_INVALID_LAYOUT", `${entry.path} in ${this.path} is cut short: volume ${seg.volume} ends inside it`);
      at += got;
    }
    return out;
  }

  /** The layout's index.json, parsed and checked (ERR_INVALID_LAYOUT when missing or malformed). */
  index(): Promise<IndexJSON> {
    this.indexCache ??= (async () => {
      const e = this.entry(INDEX_PATH);
      if (!e) throw new AirlockError("ERR_INVALID_LAYOUT", `${this.path} has no index.json: it is not an OCI image layout archive${this.missingVolumes().length ? `, or volume ${this.missingVolumes()[0]} (which holds it) is missing` : ""}`);
      let json: unknown;
      try {
        json = JSON.parse((await this.readEntry(e)).toString("utf8"));
      } catch (cause) {
        if (cause instanceof AirlockError) throw cause;
        throw new AirlockError("ERR_INVALID_LAYOUT", `index.json in ${this.path} is not valid JSON`, { cause });
      }
      const idx = json as IndexJSON;
      if (typeof json !== "object" || json === null || !Array.isArray(idx.manifests)) {
        throw new AirlockError("ERR_INVALID_LAYOUT", `index.json in ${this.path} has no manifests array`);
      }
      for (const [i, d] of idx.manifests.entries()) {
        try {
          validateDescriptor(d, `index.json manifests[${i}]`);
        } catch (cause) {
          throw new AirlockError("ERR_INVALID_LAYOUT", `${(cause as Error).message} in ${this.path}`, { cause });
        }
      }
      return idx;
    })();
    return this.indexCache;
  }

  /** The images index.json names: each entry with its ref.name (undefined for unnamed entries). */
  async images(): Promise<{ name: string | undefined; descriptor: Descriptor }[]> {
    const idx = await this.index();
    return idx.manifests.map((d) => ({ name: d.annotations?.["org.opencontainers.image.ref.name"], descriptor: d }));
  }

  /** The index.json entry named `name`; throws ERR_IMAGE_NOT_FOUND when there is none. */
  async image(name: string): Promise<Descriptor> {
    const all = await this.images();
    const found = all.filter((i) => i.name === name);
    if (found.length === 0) {
      const names = all.map((i) => i.name).filter(Boolean);
      throw new AirlockError("ERR_IMAGE_NOT_FOUND", `no image named ${name} in bundle ${this.path} (it holds: ${names.join(", ") || "no named images"})`);
    }
    if (found.length > 1) throw new AirlockError("ERR_AMBIGUOUS_IMAGE", `bundle ${this.path} names ${found.length} images ${name}`);
    return (found[0] as { descriptor: Descriptor }).descriptor;
  }

  /** airlock's `bundle.json`, or undefined for a tar without one (ERR_INVALID_LAYOUT when malformed). */
  metadata(): Promise<BundleMetadata | undefined> {
    this.metadataCache ??= (async () => {
      const e = this.entry(BUNDLE_METADATA_PATH);
      if (!e) return undefined;
      let json: BundleMetadata;
      try {
        json = JSON.parse((await this.readEntry(e, MAX_METADATA_SIZE)).toString("utf8")) as BundleMetadata;
      } catch (cause) {
        if (cause instanceof AirlockError) throw cause;
        throw new AirlockError("ERR_INVALID_LAYOUT", `${BUNDLE_METADATA_PATH} in ${this.path} is not valid JSON`, { cause });
      }
      if (json?.mediaType !== BUNDLE_MEDIA_TYPE || !Array.isArray(json.images) || !Array.isArray(json.blobs) || !Array.isArray(json.manifests) || !Array.isArray(json.volumes)) {
        throw new AirlockError("ERR_INVALID_LAYOUT", `${BUNDLE_METADATA_PATH} in ${this.path} is not an airlock bundle description (${BUNDLE_MEDIA_TYPE})`);
      }
      return json;
    })();
    return this.metadataCache;
  }

  /**
   * Reads the manifest `digest` and checks it: its bytes must hash to `digest` (and have `size`
   * when given). `mediaType` is the one its parent's descriptor names, when known.
   */
  async getManifest(desc: Pick<Descriptor, "digest"> & Partial<Pick<Descriptor, "mediaType" | "size">>): Promise<Manifest> {
    const e = this.blobEntry(desc.digest);
    const what = `manifest ${desc.digest} in bundle ${this.path}`;
    if (desc.size !== undefined && e.size !== desc.size) {
      throw new AirlockError("ERR_SIZE_MISMATCH", `${what}: stored with ${e.size} bytes, its descriptor says ${desc.size}; the bundle is corrupt or was tampered with`);
    }
    return Manifest.parse(await this.readEntry(e), { mediaType: desc.mediaType, expected: desc.digest, what });
  }

  /** The entry holding blob `digest`; throws ERR_BLOB_NOT_FOUND when the layout lacks it. */
  blobEntry(digest: Digest): TarEntry {
    const e = this.entry(blobPath(digest));
    if (!e) {
      const missing = this.missingVolumes();
      const hint = missing.length > 0 ? `; volume${missing.length > 1 ? "s" : ""} ${missing.join(", ")} ${missing.length > 1 ? "are" : "is"} missing and may hold it` : "";
      throw new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${digest} is not in bundle ${this.path}${hint}`);
    }
    return e;
  }

  /**
   * Opens blob `desc` as a stream of its bytes straight from the volume files (no extraction).
   * The size must match the descriptor's (ERR_SIZE_MISMATCH); the content is not verified here:
   * pipe it through a VerifyingStream.
   */
  openBlob(desc: Pick<Descriptor, "digest" | "size">, options: OpenBlobOptions = {}): Readable {
    return this.streamSegments(this.locateBlob(desc, options.offset ?? 0), options);
  }

  /**
   * Where blob `desc` lies: the file ranges of its data. Throws ERR_BLOB_NOT_FOUND when it is
   * absent or partly in a missing or truncated volume, ERR_SIZE_MISMATCH when its size differs
   * from the descriptor's. Reads nothing.
   */
  locateBlob(desc: Pick<Descriptor, "digest" | "size">, from = 0): Segment[] {
    const e = this.blobEntry(desc.digest);
    if (desc.size >= 0 && e.size !== desc.size) {
      throw new AirlockError("ERR_SIZE_MISMATCH", `blob ${desc.digest} in bundle ${this.path} is stored with ${e.size} bytes, its descriptor says ${desc.size}; the bundle is corrupt or was tampered with`);
    }
    if (!e.complete) {
      throw new AirlockError("ERR_BLOB_NOT_FOUND", `blob ${desc.digest} in bundle ${this.path} is cut short (volume ${e.volume} or one after it is truncated or missing); run airlock verify`);
    }
    return this.segments(e, from);
  }

  /** Opens an entry's data (from `options.offset`) as a stream across volume files. */
  openEntry(entry: TarEntry, options: OpenBlobOptions = {}): Readable {
    return this.streamSegments(this.segments(entry, options.offset ?? 0), options);
  }

  private streamSegments(segments: Segment[], options: OpenBlobOptions): Readable {
    const hwm = options.highWaterMark ?? BLOB_READ_SIZE;
    if (segments.length === 0) return Readable.from([]);
    if (segments.length === 1) {
      const [s] = segments as [Segment];
      return createReadStream(s.path, { start: s.start, end: s.start + s.length - 1, highWaterMark: hwm });
    }
    async function* chain() {
      for (const s of segments) yield* createReadStream(s.path, { start: s.start, end: s.start + s.length - 1, highWaterMark: hwm });
    }
    return Readable.from(chain(), { objectMode: false });
  }

  /** The file ranges an entry's data occupies (from byte `from` of the data). */
  segments(entry: TarEntry, from = 0): Segment[] {
    const out: Segment[] = [];
    let v = entry.dataVolume;
    let off = entry.dataOffset + from;
    let remaining = entry.size - from;
    while (remaining > 0) {
      const vol = this.volumes[v];
      if (!vol?.present) {
        throw new AirlockError("ERR_BLOB_NOT_FOUND", `${entry.path} in bundle ${this.path} continues into volume ${v}, which is missing; bring that volume`);
      }
      if (off >= vol.size) {
        off -= vol.size;
        v++;
        continue;
      }
      const n = Math.min(remaining, vol.size - off);
      out.push({ volume: v, path: vol.path, start: off, length: n });
      remaining -= n;
      off += n;
    }
    return out;
  }

  /** Closes the volume files. */
  async close(): Promise<void> {
    const hs = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(hs.map((h) => h.close().catch(() => {})));
  }

  private problem(p: Omit<BundleProblem, "severity"> & { severity?: BundleProblem["severity"] }): void {
    this.problems.push({ severity: "error", ...p });
  }

  private async load(signal?: AbortSignal): Promise<void> {
    for (const vol of this.volumes) {
      if (!vol.present) continue;
      const h = await fs.open(vol.path, "r");
      this.handles.set(vol.number, h);
      vol.size = (await h.stat()).size;
    }
    await this.readDescriptions();
    await this.walk(signal);
    await this.checkListed();
  }

  /** Where an entry's header is, for a person: `offset N` (`of volume V (PATH)` when there are several volumes). */
  private where(e: TarEntry): string {
    return `offset ${e.headerOffset}${this.volumes.length > 1 ? ` of volume ${e.volume} (${this.volumes[e.volume]?.path})` : ""}`;
  }

  /** Records `entry` as a later copy of `first` (a path already in the tar). */
  private duplicate(entry: TarEntry, first: TarEntry): void {
    const copies = this.copies.get(entry.path) ?? [first];
    copies.push(entry);
    this.copies.set(entry.path, copies);
    this.problem({
      kind: "entry-duplicate",
      volume: entry.volume,
      path: entry.path,
      digest: digestOf(entry.path),
      message: `duplicate entry ${entry.path} at ${this.where(entry)} (the first is at ${this.where(first)}): a tar reader would take the later one; ${this.bundleId ? "the bundle was altered" : "the archive is ambiguous"}`,
    });
  }

  /**
   * In an airlock bundle, every entry after a volume's description must be one it lists (it lists
   * every entry that starts in its volume, airlock/bundle.json last): anything else was added to
   * the tar after the export. A plain tar (no descriptions) is not checked.
   */
  private async checkListed(): Promise<void> {
    let current: { path: string; next: number; listed: Map<string, number>; last: VolumeDescription["entries"][number] | undefined; seen: number } | undefined;
    for (const e of this.list) {
      if (this.isLaterCopy(e)) continue; // already recorded as a duplicate
      const n = parseVolumeDescriptionPath(e.path);
      if (n !== undefined) {
        const d = await this.descriptionAt(e, n, current?.next);
        if (d !== "not-one") {
          current =
            d === undefined
              ? undefined
              : { path: e.path, next: Math.max(d.volume, ...(d.continuedIn ?? [])) + 1, listed: new Map(d.entries.map((x, i) => [normalizePath(x.path), i])), last: d.entries.at(-1), seen: -1 };
          continue;
        }
      }
      if (!current) continue;
      const i = current.listed.get(e.path);
      if (i !== undefined) {
        current.seen = Math.max(current.seen, i);
        continue;
      }
      const after = current.last !== undefined && current.seen === current.listed.size - 1;
      this.problem({
        kind: "entry-unlisted",
        volume: e.volume,
        path: e.path,
        digest: digestOf(e.path),
        message: `entry ${e.path} at ${this.where(e)} is not listed by ${current.path}${after ? `, and comes after the last entry it lists (${current.last?.path})` : ""}: it was added to the tar after the export; the bundle was altered`,
      });
    }
  }

  /**
   * The volume description that entry `e` (path `airlock/volume-NNN.json`, NNN = `n`) is, when it
   * is one: at the start of a volume (or, in a concatenation, that of volume `next`, the one after the last
   * described volume and its continuation volumes).
   * Undefined when it is one but cannot be read (recorded); "not-one" for an entry that merely
   * has such a path (it is then checked like any other).
   */
  private async descriptionAt(e: TarEntry, n: number, next: number | undefined): Promise<VolumeDescription | undefined | "not-one"> {
    if (!this.concatenated) {
      if (e.headerOffset !== 0) return "not-one";
      const d = this.volumes[e.volume]?.description;
      return Array.isArray(d?.entries) ? d : undefined;
    }
    if (e.volume === 0 && e.headerOffset === 0) return Array.isArray(this.volumes[0]?.description?.entries) ? this.volumes[0]?.description : undefined;
    if (next === undefined || n !== next) return "not-one";
    try {
      const d = JSON.parse((await this.readEntry(e, MAX_DESCRIPTION_SIZE)).toString("utf8")) as VolumeDescription;
      if (d.mediaType === VOLUME_MEDIA_TYPE && d.bundle === this.bundleId && d.volume === n && Array.isArray(d.entries)) return d;
    } catch {}
    this.problem({ kind: "header-damaged", volume: e.volume, path: e.path, message: `${e.path} at ${this.where(e)} (the description of volume ${n} in this concatenation) is damaged: the entries after it are not checked against it` });
    return undefined;
  }

  /** Reads each volume's leading description and checks the volumes against each other. */
  private async readDescriptions(): Promise<void> {
    let count = 0;
    for (const vol of this.volumes) {
      if (!vol.present || vol.size < BLOCK_SIZE) continue;
      const block = await this.readAt(vol.number, 0, BLOCK_SIZE);
      if (isZeroBlock(block)) continue;
      let h: RawHeader;
      try {
        h = decodeHeader(block);
      } catch {
        continue;
      }
      const n = parseVolumeDescriptionPath(normalizePath(h.path));
      if (n === undefined || h.size > MAX_DESCRIPTION_SIZE) {
        if (vol.number > 0) vol.kind = "continuation";
        continue;
      }
      try {
        const d = JSON.parse((await this.readAt(vol.number, BLOCK_SIZE, h.size)).toString("utf8")) as VolumeDescription;
        if (d.mediaType !== VOLUME_MEDIA_TYPE) throw new Error("wrong media type");
        vol.description = d;
        vol.kind = "volume";
        count = Math.max(count, d.count);
      } catch {
        this.problem({ kind: "header-damaged", volume: vol.number, path: h.path, message: `volume ${vol.number} (${vol.path}): its description ${h.path} is damaged` });
      }
    }
    const first = this.volumes.find((v) => v.description);
    this.bundleId = first?.description?.bundle;
    const only = this.volumes.length === 1 ? this.volumes[0] : undefined;
    if (only?.description && only.description.count > 1 && only.size > only.description.size) {
      this.concatenated = true;
      return;
    }
    for (const vol of this.volumes) {
      const d = vol.description;
      if (!d) continue;
      if (d.bundle !== this.bundleId) {
        this.problem({ kind: "volume-foreign", volume: vol.number, message: `volume ${vol.number} (${vol.path}) belongs to another bundle (${d.bundle}, not ${this.bundleId}); replace it with volume ${vol.number} of this bundle` });
      }
      if (d.volume !== vol.number) {
        this.problem({ kind: "volume-misnamed", volume: vol.number, message: `${vol.path} is volume ${d.volume} of its bundle, not volume ${vol.number}; rename it to its right number` });
      }
      if (d.size !== vol.size) {
        this.problem({
          kind: d.size > vol.size ? "volume-truncated" : "volume-size",
          volume: vol.number,
          message: `volume ${vol.number} (${vol.path}) is ${vol.size} bytes, its description says ${d.size}${d.size > vol.size ? ": it is truncated; copy it again" : ": it holds bytes the export did not write"}`,
        });
      }
    }
    // Volumes listed by a description but absent on disk.
    while (this.volumes.length < count) {
      const n = this.volumes.length;
      this.volumes.push({ number: n, path: `${this.path}.${String(n).padStart(3, "0")}`, present: false, size: 0, kind: "missing" });
    }
    for (const vol of this.volumes) {
      if (!vol.present) {
        this.problem({ kind: "volume-missing", volume: vol.number, message: `volume ${vol.number} (${vol.path}) is missing` });
      }
    }
  }

  /** Indexes the tar: header to header, across volumes, never reading entry data. */
  private async walk(signal?: AbortSignal): Promise<void> {
    let pos: Pos | undefined = this.volumes[0]?.present ? { v: 0, off: 0 } : this.resyncAfter(0);
    let paxPath: string | undefined;
    let paxSize: number | undefined;
    let longName: string | undefined;
    let entryStart: Pos | undefined;
    while (pos) {
      signal?.throwIfAborted();
      let vol = this.volumes[pos.v] as ReaderVolume;
      if (pos.off === vol.size && pos.v < this.volumes.length - 1) {
        // At a volume boundary: the next header is at the start of the next volume.
        const next = this.volumes[pos.v + 1] as ReaderVolume;
        if (!next.present) {
          pos = this.resyncAfter(pos.v + 1);
          continue;
        }
        pos = { v: pos.v + 1, off: 0 };
        vol = next;
      }
      if (pos.off === vol.size && pos.v === this.volumes.length - 1) {
        if (this.missingVolumes().length === 0) {
          this.problem({ kind: "end-missing", volume: pos.v, message: `volume ${pos.v} (${vol.path}) ends without the end-of-archive marker: the bundle is truncated or was not finished${this.volumes.length > 1 ? ", or volumes after it are missing" : ""}` });
        }
        return;
      }
      const block = await this.readSpan(pos, BLOCK_SIZE);
      if (block === undefined) {
        this.problem({ kind: "volume-truncated", volume: pos.v, message: `volume ${pos.v} (${vol.path}) ends in the middle of a tar header: it is truncated` });
        pos = this.resyncAfter(pos.v);
        continue;
      }
      if (isZeroBlock(block)) {
        this.endOfArchive = true;
        return;
      }
      let h: RawHeader;
      try {
        h = decodeHeader(block, `tar header at offset ${pos.off} of volume ${pos.v}`);
      } catch (err) {
        this.problem({ kind: "header-damaged", volume: pos.v, message: `volume ${pos.v} (${vol.path}): the tar header at offset ${pos.off} is damaged (${(err as Error).message.replace(/^.*: damaged /, "")}); the entries after it in this volume cannot be found` });
        pos = this.resyncAfter(pos.v);
        continue;
      }
      entryStart ??= pos;
      const dataPos = this.advance(pos, BLOCK_SIZE, false);
      if (!("v" in dataPos)) {
        pos = this.resyncAfter("missing" in dataPos ? dataPos.missing : dataPos.truncated);
        entryStart = undefined;
        continue;
      }
      const size = paxSize ?? h.size;
      // Headers about the next entry (PAX records, GNU long names and link targets): never entries themselves.
      if (h.typeflag === TypeFlag.PaxExtended || h.typeflag === TypeFlag.GnuLongName || h.typeflag === TypeFlag.GnuLongLink || h.typeflag === TypeFlag.PaxGlobal) {
        const data = h.size <= MAX_DESCRIPTION_SIZE ? await this.readSpan(dataPos, h.size) : undefined;
        if (data === undefined) {
          this.problem({ kind: "header-damaged", volume: pos.v, message: `volume ${pos.v} (${vol.path}): extended header at offset ${pos.off} is unreadable` });
          pos = this.resyncAfter(pos.v);
          entryStart = undefined;
          continue;
        }
        if (h.typeflag === TypeFlag.PaxExtended) {
          const rec = parsePaxRecords(data);
          paxPath = rec.get("path") ?? paxPath;
          const s = rec.get("size");
          if (s !== undefined) paxSize = Number.parseInt(s, 10);
        } else if (h.typeflag === TypeFlag.GnuLongName) {
          longName = data.toString("utf8").replace(/\0+$/, "");
        }
        const next = this.advance(dataPos, paddedSize(h.size), true);
        if (!("v" in next)) {
          pos = this.resyncAfter("missing" in next ? next.missing : next.truncated);
          entryStart = undefined;
          continue;
        }
        pos = next;
        continue;
      }
      const path = normalizePath(paxPath ?? longName ?? h.path);
      const next = this.advance(dataPos, paddedSize(size), true);
      const start = dataPos.off === (this.volumes[dataPos.v] as ReaderVolume).size ? { v: dataPos.v + 1, off: 0 } : dataPos;
      const entry: TarEntry = {
        path,
        size,
        typeflag: h.typeflag,
        volume: entryStart.v,
        headerOffset: entryStart.off,
        dataVolume: start.v,
        dataOffset: start.off,
        complete: !("missing" in next) && !("truncated" in next),
      };
      this.list.push(entry);
      const first = this.firstAt.get(path);
      if (first === undefined) this.firstAt.set(path, entry);
      else if (first.typeflag !== TypeFlag.Directory || entry.typeflag !== TypeFlag.Directory) this.duplicate(entry, first);
      if ((h.typeflag === TypeFlag.File || h.typeflag === TypeFlag.OldFile) && !this.byPath.has(path)) this.byPath.set(path, entry);
      paxPath = undefined;
      paxSize = undefined;
      longName = undefined;
      entryStart = undefined;
      if ("missing" in next) {
        this.problem({ kind: "entry-incomplete", volume: next.missing, path, digest: digestOf(path), message: `${path} continues into volume ${next.missing}, which is missing` });
        pos = this.resyncAfter(next.missing);
      } else if ("truncated" in next) {
        this.problem({ kind: "entry-incomplete", volume: next.truncated, path, digest: digestOf(path), message: `${path} is cut short: volume ${next.truncated} (${this.volumes[next.truncated]?.path}) ends inside it; copy that volume again` });
        pos = this.resyncAfter(next.truncated);
      } else {
        pos = next;
      }
    }
  }

  /**
   * Moves `n` bytes forward from `pos` through consecutive volumes. `within` is true when the
   * bytes belong to an entry: crossing into a volume that starts with its own description then
   * means the volume before was cut short.
   */
  private advance(pos: Pos, n: number, within: boolean): Pos | { missing: number } | { truncated: number } {
    let { v, off } = pos;
    off += n;
    for (;;) {
      const vol = this.volumes[v] as ReaderVolume;
      // Ending exactly at a volume's end is fine: the next header's volume is checked when it is read.
      if (off <= vol.size) return { v, off };
      if (v === this.volumes.length - 1) return { truncated: v };
      const next = this.volumes[v + 1] as ReaderVolume;
      if (!next.present) return { missing: v + 1 };
      if (within && next.kind === "volume") return { truncated: v };
      off -= vol.size;
      v++;
    }
  }

  /** The next place to resume indexing after volume `v` failed: the next present volume that starts with a description. */
  private resyncAfter(v: number): Pos | undefined {
    for (let w = v + 1; w < this.volumes.length; w++) {
      const vol = this.volumes[w] as ReaderVolume;
      if (vol.present && vol.kind === "volume") return { v: w, off: 0 };
    }
    return undefined;
  }

  /** Reads `n` bytes at `pos`, across volumes; undefined when they are not all there. */
  private async readSpan(pos: Pos, n: number): Promise<Buffer | undefined> {
    const parts: Buffer[] = [];
    let { v, off } = pos;
    let remaining = n;
    while (remaining > 0) {
      const vol = this.volumes[v];
      if (!vol?.present) return undefined;
      if (off >= vol.size) {
        off -= vol.size;
        v++;
        continue;
      }
      const k = Math.min(remaining, vol.size - off);
      parts.push(await this.readAt(v, off, k));
      remaining -= k;
      off += k;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Reads within one volume, through a small read-ahead cache (headers are often neighbours). */
  private async readAt(v: number, off: number, n: number): Promise<Buffer> {
    // Synchronous reads: a header walk is hundreds of tiny dependent reads, which the thread
    // pool would turn into as many round trips (~0.2 ms each); from the page cache a read
    // takes microseconds.
    const c = this.cache;
    if (c && c.v === v && off >= c.start && off + n <= c.start + c.buf.length) {
      return c.buf.subarray(off - c.start, off - c.start + n);
    }
    const h = this.handles.get(v) as FileHandle;
    const vol = this.volumes[v] as ReaderVolume;
    const len = n <= READ_AHEAD ? Math.min(READ_AHEAD, vol.size - off) : n;
    const buf = Buffer.allocUnsafe(Math.max(len, 0));
    const got = readFully(h, buf, off);
    const data = buf.subarray(0, got);
    if (n <= READ_AHEAD) this.cache = { v, start: off, buf: data };
    return data.subarray(0, Math.min(n, got));
  }
}

/** Reads into all of `buf` from `pos` with synchronous reads; returns the bytes read (fewer at the end of the file). */
function readFully(h: FileHandle, buf: Buffer, pos: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(h.fd, buf, got, buf.length - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** A byte range of one volume file. */
export interface Segment {
  volume: number;
  path: string;
  start: number;
  length: number;
}

function normalizePath(p: string): string {
  return p.replace(/^(\.\/)+/, "").replace(/^\/+/, "");
}

function digestOf(path: string): Digest | undefined {
  const d = digestFromBlobPath(path);
  return d && isDigest(d) ? (d as Digest) : undefined;
}

/** Finds a bundle's volume files: `base` itself, or `base.000`, `base.001`, … */
async function discoverVolumes(pathOrVolumes: string | string[]): Promise<{ base: string; files: Map<number, string> }> {
  const files = new Map<number, string>();
  if (Array.isArray(pathOrVolumes)) {
    if (pathOrVolumes.length === 0) throw new AirlockError("ERR_INVALID_ARGUMENT", "no bundle volumes given");
    let base = pathOrVolumes[0] as string;
    for (const [i, p] of pathOrVolumes.entries()) {
      const m = /^(.*)\.(\d{3,})$/.exec(p);
      if (m) base = m[1] as string;
      files.set(m ? Number.parseInt(m[2] as string, 10) : i, p);
    }
    return { base, files };
  }
  const st = await fs.stat(pathOrVolumes).catch(() => undefined);
  let base = pathOrVolumes;
  if (st?.isFile()) {
    const m = /^(.*)\.(\d{3,})$/.exec(pathOrVolumes);
    if (!m) {
      files.set(0, pathOrVolumes);
      return { base, files };
    }
    base = m[1] as string;
  }
  const dir = dirname(base);
  const name = basename(base);
  let names: string[] = [];
  try {
    names = await fs.readdir(dir);
  } catch {}
  for (const n of names) {
    if (!n.startsWith(name)) continue;
    const m = VOLUME_SUFFIX_RE.exec(n.slice(name.length));
    if (m) files.set(Number.parseInt(m[1] as string, 10), join(dir, n));
  }
  if (files.size === 0) {
    throw new AirlockError("ERR_IO", `no bundle at ${pathOrVolumes}: neither ${base} nor ${base}.000 exists`);
  }
  return { base, files };
}
