/**
 * Planning a bundle's archive: every entry's header offset and data offset, and the cut points of
 * its volumes, are computed before a byte is written, so that blobs can be downloaded in parallel
 * and written with positional writes straight into their regions of the output.
 *
 * Offsets are logical: positions in the one tar that the volumes concatenate to. Volumes are cut
 * at entry boundaries; an entry too large for a volume of its own starts a fresh volume and
 * continues in "continuation volumes" that hold nothing but its bytes.
 */
import { promises as fs } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Digest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { checksumFileName, journalFileName, VOLUME_MEDIA_TYPE, type VolumeDescription, type VolumeEntry, volumeDescriptionPath } from "./format.js";
import { BLOCK_SIZE, END_OF_ARCHIVE_SIZE, encodeHeader, paddedSize } from "./tar.js";

/** What an archive entry holds. */
export type EntryKind = "description" | "file" | "manifest" | "blob" | "metadata";

/** An entry to place in the archive, in archive order. */
export interface LayoutItem {
  /** Path inside the archive. */
  path: string;
  /** Size of its data. */
  size: number;
  kind: Exclude<EntryKind, "description">;
  /** Digest of its data (listed in volume descriptions); absent for the metadata written last. */
  digest?: Digest;
  /** Permission bits of its tar header (default 0o644; 0o755 for a carried executable). */
  mode?: number;
}

/** An entry with its place in the archive. */
export interface PlannedEntry {
  path: string;
  size: number;
  kind: EntryKind;
  digest?: Digest;
  /** The exact header bytes (a pax header included when needed). */
  header: Buffer;
  /** The volume its header is in. */
  volume: number;
  /** Logical offset of its header. */
  headerOffset: number;
  /** Logical offset of its data (= headerOffset + header.length). */
  dataOffset: number;
}

/** A volume of the plan. */
export interface PlannedVolume {
  number: number;
  /** Logical offset of its first byte. */
  offset: number;
  size: number;
  /** Its description entry; absent for a continuation volume. */
  description?: PlannedEntry;
  /** The entries that start in it, its description excluded. */
  entries: PlannedEntry[];
  /** Continuation volumes holding the rest of its last entry. */
  continuedIn: number[];
}

/** The planned archive. */
export interface BundlePlan {
  /** Every entry in archive order, volume descriptions included. */
  entries: PlannedEntry[];
  volumes: PlannedVolume[];
  /** Logical offset of the end-of-archive marker. */
  endOffset: number;
  /** Total size (sum of the volumes). */
  size: number;
  /** The split size the plan was made for (undefined: one volume). */
  splitSize: number | undefined;
}

/** Options of {@link planLayout}. */
export interface PlanOptions {
  /** Largest size of a volume; undefined for a single-volume bundle. */
  splitSize?: number | undefined;
  /** Modification time written into every header, in seconds. */
  mtime: number;
}

const PLACEHOLDER_NUMBER = 999_999;
const PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000";
const SLACK = 16;

const baseDescriptionLength = JSON.stringify({
  mediaType: VOLUME_MEDIA_TYPE,
  bundle: PLACEHOLDER_ID,
  volume: PLACEHOLDER_NUMBER,
  count: PLACEHOLDER_NUMBER,
  size: Number.MAX_SAFE_INTEGER,
  entries: [],
} satisfies VolumeDescription).length;

function continuedInLength(k: number): number {
  return k === 0 ? 0 : `,"continuedIn":${JSON.stringify(new Array(k).fill(PLACEHOLDER_NUMBER))}`.length;
}

function entryJson(it: { path: string; digest?: Digest | undefined; size: number }): VolumeEntry {
  const e: VolumeEntry = { path: it.path, size: it.size };
  if (it.digest) e.digest = it.digest;
  return e;
}

interface Item extends LayoutItem {
  header: Buffer;
  span: number;
  jsonLength: number;
}

const END: unique symbol = Symbol("end-of-archive");

interface Draft {
  items: Item[];
  jsonSum: number;
  span: number;
  hasEnd: boolean;
  /** Continuation volumes after it. */
  spill: number;
  /** For continuation volumes: their size. */
  continuationSize?: number;
}

function newDraft(): Draft {
  return { items: [], jsonSum: 0, span: 0, hasEnd: false, spill: 0 };
}

function reserveFor(jsonSum: number, n: number, spill: number): number {
  return baseDescriptionLength + jsonSum + Math.max(0, n - 1) + continuedInLength(spill) + SLACK;
}

function used(d: Draft, extra: Item | typeof END | undefined, spill = 0): number {
  let jsonSum = d.jsonSum;
  let n = d.items.length;
  let span = d.span + (d.hasEnd ? END_OF_ARCHIVE_SIZE : 0);
  if (extra === END) span += END_OF_ARCHIVE_SIZE;
  else if (extra) {
    jsonSum += extra.jsonLength;
    n++;
    span += extra.span;
  }
  return BLOCK_SIZE + paddedSize(reserveFor(jsonSum, n, spill)) + span;
}

function add(d: Draft, it: Item | typeof END): void {
  if (it === END) {
    d.hasEnd = true;
    return;
  }
  d.items.push(it);
  d.jsonSum += it.jsonLength;
  d.span += it.span;
}

/**
 * Plans the archive for `items` (in archive order; the metadata entry last): the volume cut points
 * and every entry's header and data offsets. Each volume starts with its description; the
 * end-of-archive marker closes the last one. With a split size, every volume is at most that
 * large: an entry that does not fit in the current volume starts the next one, and an entry that
 * does not fit even in an empty volume starts one and continues in continuation volumes.
 */
export function planLayout(items: LayoutItem[], options: PlanOptions): BundlePlan {
  const limit = options.splitSize ?? Number.POSITIVE_INFINITY;
  const drafts: Draft[] = [];
  let cur = newDraft();
  const prepared: (Item | typeof END)[] = items.map((it) => {
    const header = encodeHeader({ path: it.path, size: it.size, mtime: options.mtime, ...(it.mode !== undefined ? { mode: it.mode } : {}) });
    return { ...it, header, span: header.length + paddedSize(it.size), jsonLength: JSON.stringify(entryJson(it)).length };
  });
  prepared.push(END);
  for (const it of prepared) {
    if (used(cur, it) <= limit) {
      add(cur, it);
      continue;
    }
    if (cur.items.length > 0 || cur.hasEnd) {
      drafts.push(cur);
      cur = newDraft();
      if (used(cur, it) <= limit) {
        add(cur, it);
        continue;
      }
    }
    // Too large even for an empty volume: start one and continue in continuation volumes.
    add(cur, it);
    let k = 0;
    for (;;) {
      const need = Math.max(1, Math.ceil((used(cur, undefined, k) - limit) / limit));
      if (need <= k) break;
      k = need;
    }
    cur.spill = k;
    const total = used(cur, undefined, k);
    drafts.push(cur);
    for (let i = 1; i <= k; i++) {
      drafts.push({ ...newDraft(), continuationSize: i < k ? limit : total - k * limit });
    }
    cur = newDraft();
  }
  if (cur.items.length > 0 || cur.hasEnd) drafts.push(cur);
  if (drafts.length > PLACEHOLDER_NUMBER) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `the bundle would need ${drafts.length} volumes; choose a larger split size`);
  }

  const entries: PlannedEntry[] = [];
  const volumes: PlannedVolume[] = [];
  let pos = 0;
  let endOffset = -1;
  for (const [number, d] of drafts.entries()) {
    if (d.continuationSize !== undefined) {
      volumes.push({ number, offset: pos, size: d.continuationSize, entries: [], continuedIn: [] });
      pos += d.continuationSize;
      continue;
    }
    const start = pos;
    const reserve = reserveFor(d.jsonSum, d.items.length, d.spill);
    const descPath = volumeDescriptionPath(number);
    const descHeader = encodeHeader({ path: descPath, size: reserve, mtime: options.mtime });
    const description: PlannedEntry = { path: descPath, size: reserve, kind: "description", header: descHeader, volume: number, headerOffset: pos, dataOffset: pos + descHeader.length };
    entries.push(description);
    pos = description.dataOffset + paddedSize(reserve);
    const volEntries: PlannedEntry[] = [];
    for (const it of d.items) {
      const e: PlannedEntry = { path: it.path, size: it.size, kind: it.kind, header: it.header, volume: number, headerOffset: pos, dataOffset: pos + it.header.length };
      if (it.digest) e.digest = it.digest;
      entries.push(e);
      volEntries.push(e);
      pos = e.dataOffset + paddedSize(it.size);
    }
    if (d.hasEnd) {
      endOffset = pos;
      pos += END_OF_ARCHIVE_SIZE;
    }
    const continuedIn = Array.from({ length: d.spill }, (_, i) => number + 1 + i);
    const size = d.spill > 0 ? limit : pos - start;
    if (d.spill > 0) pos = start + limit;
    volumes.push({ number, offset: start, size, description, entries: volEntries, continuedIn });
  }
  const size = volumes.reduce((n, v) => n + v.size, 0);
  return { entries, volumes, endOffset, size, splitSize: options.splitSize };
}

/**
 * The bytes of volume `v`'s description for the bundle `bundleId`: the JSON padded with spaces to
 * exactly the size the plan reserved for it.
 */
export function volumeDescriptionBytes(plan: BundlePlan, v: PlannedVolume, bundleId: string): Buffer {
  if (!v.description) throw new AirlockError("ERR_INVALID_ARGUMENT", `volume ${v.number} is a continuation volume and has no description`);
  if (bundleId.length > PLACEHOLDER_ID.length) throw new AirlockError("ERR_INVALID_ARGUMENT", `bundle id ${bundleId} is longer than ${PLACEHOLDER_ID.length} characters`);
  const desc: VolumeDescription = {
    mediaType: VOLUME_MEDIA_TYPE,
    bundle: bundleId,
    volume: v.number,
    count: plan.volumes.length,
    size: v.size,
    entries: v.entries.map((e) => entryJson(e)),
  };
  if (v.continuedIn.length > 0) desc.continuedIn = v.continuedIn;
  return padJson(JSON.stringify(desc), v.description.size, v.description.path);
}

/** Pads a JSON text with trailing spaces to exactly `size` bytes (JSON allows trailing whitespace). */
export function padJson(json: string, size: number, what: string): Buffer {
  const bytes = Buffer.from(json, "utf8");
  if (bytes.length > size) throw new AirlockError("ERR_INVALID_ARGUMENT", `internal error: ${what} is ${bytes.length} bytes, more than the ${size} planned for it`);
  const out = Buffer.alloc(size, 0x20);
  bytes.copy(out, 0);
  if (size > bytes.length) out[size - 1] = 0x0a;
  return out;
}

/** The volume holding logical offset `pos` (binary search). */
export function volumeAt(volumes: readonly { offset: number; size: number }[], pos: number): number {
  let lo = 0;
  let hi = volumes.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((volumes[mid] as { offset: number }).offset <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// ---------------------------------------------------------------------------------------------
// Space: what an export and an import need on disk, for `airlock plan` to state and check.

/** One demand for disk space made by an export or an import. */
export interface SpaceNeed {
  /** What needs it, e.g. `bundle`, `volume 2`, `export journal`, `import into oci:/srv/images`. */
  what: string;
  /** The file or directory written. */
  path: string;
  /** Bytes it takes at most. */
  bytes: number;
}

/** The needs that fall on one file system, and whether it has the room. */
export interface SpaceCheck {
  /** The directory whose file system was asked (the nearest one that exists). */
  directory: string;
  needs: SpaceNeed[];
  /** The sum of the needs. */
  bytes: number;
  /** Bytes available to this user there; undefined when the file system would not say. */
  free: number | undefined;
  /** Whether `free` covers `bytes` (true when the file system would not say). */
  ok: boolean;
}

/** What {@link exportSpaceNeeds} is told of an export (a dry run's result has it). */
export interface ExportSpaceInput {
  /** The bundle path as given (`-o`). */
  out: string;
  /** The files the export writes: the bundle, or its volumes `OUT.000`, `OUT.001`, … */
  volumes: readonly { path: string; size: number }[];
  /** Distinct blobs it downloads (the journal records each). */
  blobs: number;
}

/** Journal bytes per blob (a digest and how far it is written) and fixed; doubled while a save is renamed into place. */
const JOURNAL_PER_BLOB = 160;
const JOURNAL_BASE = 512;

/**
 * The disk space an export takes: each volume at its full planned size (written as `.partial`
 * and renamed, so never twice), the journal (`OUT.journal.json`, kept until the export finishes,
 * written through a temporary copy) and the checksum file (`OUT.sha256`). Every file goes beside
 * `out`; each is a need of its own, so that volumes on different file systems are each checked.
 */
export function exportSpaceNeeds(e: ExportSpaceInput): SpaceNeed[] {
  const split = e.volumes.length > 1 || e.volumes.some((v) => v.path !== e.out);
  const needs: SpaceNeed[] = e.volumes.map((v, i) => ({ what: split ? `volume ${i}` : "bundle", path: v.path, bytes: v.size }));
  needs.push({ what: "export journal", path: journalFileName(e.out), bytes: 2 * (JOURNAL_BASE + JOURNAL_PER_BLOB * e.blobs) });
  needs.push({ what: "checksum file", path: checksumFileName(e.out), bytes: e.volumes.reduce((n, v) => n + 67 + Buffer.byteLength(v.path), 0) });
  return needs;
}

/** What {@link importSpace} is told of the bundle (a dry-run export's result has it). */
export interface ImportSpaceInput {
  /** Bytes of the bundle: at most what an OCI layout of all its images takes. */
  size: number;
  /** Blob references beyond the first of each digest: a `dir:` destination stores them again (one directory per image). */
  duplicateBytes: number;
}

/** The space an import needs, and why. */
export interface ImportSpace {
  /** Temporary bytes an import needs beside its destination: none (see `reason`). */
  temporaryBytes: 0;
  /** Why no temporary space is needed. */
  reason: string;
  /** What the destination itself takes, when it is a directory of this machine (`oci:DIR`, `dir:DIR`). */
  needs: SpaceNeed[];
}

/**
 * The space an import of the bundle takes. Import extracts nothing: every blob streams out of the
 * archive (read in place, across volumes) into the destination, verified on the way; a registry
 * upload that must be retried re-reads its chunk from the archive. So no temporary space is
 * needed. A directory destination takes the images themselves: `oci:DIR` stores each blob once
 * (at most the bundle's size); `dir:DIR` gives every image a directory of its own, so shared
 * blobs are stored once per image. Each blob is written to a temporary name in its final directory
 * and renamed, so it is never stored twice.
 */
export function importSpace(bundle: ImportSpaceInput, to?: string): ImportSpace {
  const reason = "blobs stream out of the bundle straight into the destination, verified on the way; nothing is extracted or staged (a retried upload re-reads the archive)";
  const needs: SpaceNeed[] = [];
  if (to?.startsWith("oci:")) needs.push({ what: `import into ${to}`, path: to.slice(4).split(":")[0] as string, bytes: bundle.size });
  else if (to?.startsWith("dir:")) needs.push({ what: `import into ${to}`, path: to.slice(4), bytes: bundle.size + bundle.duplicateBytes });
  return { temporaryBytes: 0, reason, needs };
}

/**
 * Checks `needs` against the free space of their file systems: needs on one file system (same
 * device as the nearest existing directory) are added up. A file is looked up at its directory,
 * and a path that does not exist yet at its nearest existing parent.
 */
export async function checkSpace(needs: readonly SpaceNeed[]): Promise<SpaceCheck[]> {
  const byDevice = new Map<string, SpaceCheck>();
  for (const need of needs) {
    const directory = await existingDirectory(resolve(need.path));
    const key = await fs.stat(directory).then(
      (st) => String(st.dev),
      () => directory,
    );
    let check = byDevice.get(key);
    if (!check) {
      const free = await fs.statfs(directory).then(
        (st) => Number(st.bavail) * Number(st.bsize),
        () => undefined,
      );
      check = { directory, needs: [], bytes: 0, free, ok: true };
      byDevice.set(key, check);
    }
    check.needs.push(need);
    check.bytes += need.bytes;
    check.ok = check.free === undefined || check.free >= check.bytes;
  }
  return [...byDevice.values()];
}

/** `path` when it is a directory, else its nearest existing ancestor directory. */
async function existingDirectory(path: string): Promise<string> {
  for (let d = path; ; d = dirname(d)) {
    if (await fs.stat(d).then((st) => st.isDirectory(), () => false)) return d;
    if (dirname(d) === d) return d;
  }
}
