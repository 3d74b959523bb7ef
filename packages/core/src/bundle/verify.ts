/**
 * verifyBundle: checks a bundle offline — every volume's checksum, every blob's and manifest's
 * digest and size, every volume description, index.json against the manifests it names, and
 * airlock's metadata against the layout — and reports everything that is wrong, naming the
 * volume each fault is in. It reads every byte once: volume checksums and entry digests are
 * computed in the same sequential pass.
 */
import { promises as fs } from "node:fs";
import { createHash, type Hash } from "node:crypto";
import { basename } from "node:path";
import { type Digest, Digester, type DigestAlgorithm, isDigest } from "../digest.js";
import { type Descriptor, Manifest, REF_NAME_ANNOTATION } from "../manifest.js";
import { isManifestMediaType } from "../mediatype.js";
import type { BundleListener } from "./events.js";
import { BUNDLE_METADATA_PATH, type BundleMetadata, type BundleTool, blobPath, digestFromBlobPath, INDEX_PATH, OCI_LAYOUT_PATH } from "./format.js";
import { type BundleProblem, BundleReader, type ReaderVolume, type Segment, type TarEntry } from "./reader.js";

/** Options of {@link verifyBundle}. */
export interface VerifyOptions {
  signal?: AbortSignal;
  onProgress?: BundleListener;
  /** Interval of verify-progress events in milliseconds (default 500). */
  progressIntervalMs?: number;
}

/** A volume as verified. */
export interface VerifiedVolume {
  volume: number;
  path: string;
  present: boolean;
  size: number;
  /** sha256 (hex) of the file as read. */
  sha256?: string;
  /** The checksum recorded for it (sidecar, else bundle.json), if any. */
  expected?: string;
  /**
   * True when it is present, its checksum matches the recorded one (when there is one) and no
   * fault was found in it. Without a recorded checksum, only its entries were checked.
   */
  ok: boolean;
}

/** An image as verified. */
export interface VerifiedImage {
  name: string;
  digest: Digest;
  mediaType: string;
  /**
   * True when its manifests and blobs are all present and intact, and nothing wrong was found
   * in what names it (its index.json entry, its record in bundle.json).
   */
  ok: boolean;
}

/** What {@link verifyBundle} found. */
export interface VerifyReport {
  path: string;
  /** True when there is no problem of severity "error". */
  ok: boolean;
  bundle?: string;
  volumes: VerifiedVolume[];
  images: VerifiedImage[];
  /** Blobs (manifests included) whose digest was checked. */
  blobs: number;
  manifests: number;
  /** Bytes read. */
  bytes: number;
  /** Everything wrong, errors and warnings, in the order found. */
  /** A delta bundle: the base it relies on (its blobs are absent by design and not reported). */
  base?: { source: string; count: number; digest: Digest };
  /** The executables the bundle carries (`export --include-tool`), each checked against bundle.json. */
  tools?: VerifiedTool[];
  problems: BundleProblem[];
  durationMs: number;
}

/** A carried executable as {@link verifyBundle} found it. */
export interface VerifiedTool extends BundleTool {
  /** Present once, with the size and sha256 that bundle.json records. */
  ok: boolean;
}

const READ_CHUNK_SIZE = 1024 * 1024;

interface Check {
  entry: TarEntry;
  digester: Digester;
  expected?: Digest;
  /** Set when part of the entry could not be read. */
  unreadable?: number;
}

/**
 * Verifies the bundle at `pathOrVolumes` (as {@link BundleReader.open} takes it). Never stops at
 * the first problem: the report lists them all. Throws only when there is no bundle at all.
 */
export async function verifyBundle(pathOrVolumes: string | string[], options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const { signal, onProgress } = options;
  // Duplicated paths are reported (entry-duplicate) and checked in their first copy, the one the export wrote.
  const reader = await BundleReader.open(pathOrVolumes, { signal, duplicates: "first" });
  try {
    const problems: BundleProblem[] = [...reader.problems];
    const problem = (p: Omit<BundleProblem, "severity"> & { severity?: BundleProblem["severity"] }) => problems.push({ severity: "error", ...p });
    const volName = (n: number) => `volume ${n} (${reader.volumes[n]?.path ?? "?"})`;

    // Recorded checksums: the sidecar first, bundle.json for what the sidecar lacks.
    let metadata: BundleMetadata | undefined;
    try {
      metadata = await reader.metadata();
    } catch (err) {
      problem({ kind: "metadata-invalid", path: BUNDLE_METADATA_PATH, message: (err as Error).message });
    }
    const sidecar = await readSidecar(reader.checksumFile);
    const expectedSum = (v: ReaderVolume): string | undefined => sidecar?.get(basename(v.path)) ?? (reader.concatenated ? undefined : (metadata?.volumes.find((x) => x.volume === v.number)?.sha256 ?? undefined));
    if (reader.concatenated) {
      problem({ kind: "checksums-missing", severity: "warning", message: `${reader.path} holds ${reader.volumes[0]?.description?.count} volumes concatenated: their checksums do not apply to it (every blob is still checked)` });
    } else if (!sidecar && reader.bundleId) {
      problem({ kind: "checksums-missing", severity: "warning", message: `${reader.checksumFile} is missing: the last volume's checksum cannot be checked (its entries still are)` });
    }

    // One pass: each volume's sha256 and each entry's digest.
    const checks: Check[] = [];
    const segmentsByVolume = new Map<number, { seg: Segment; check: Check }[]>();
    for (const e of reader.entries()) {
      if (e.typeflag !== "0" && e.typeflag !== "\0") continue;
      if (reader.isLaterCopy(e)) continue; // reported as entry-duplicate; the first copy is checked
      const d = digestFromBlobPath(e.path);
      const expected = d && isDigest(d) ? (d as Digest) : undefined;
      const check: Check = { entry: e, digester: new Digester((expected?.slice(0, expected.indexOf(":")) as DigestAlgorithm) ?? "sha256") };
      if (expected) check.expected = expected;
      checks.push(check);
      let segs: Segment[] = [];
      try {
        segs = reader.segments(e);
      } catch {
        check.unreadable = firstMissing(reader, e);
      }
      for (const seg of segs) {
        const list = segmentsByVolume.get(seg.volume) ?? [];
        list.push({ seg, check });
        segmentsByVolume.set(seg.volume, list);
      }
    }
    const total = reader.volumes.reduce((n, v) => n + v.size, 0);
    let read = 0;
    let lastEvent = 0;
    const interval = options.progressIntervalMs ?? 500;
    const volumes: VerifiedVolume[] = [];
    for (const vol of reader.volumes) {
      if (!vol.present) {
        volumes.push({ volume: vol.number, path: vol.path, present: false, size: 0, ok: false });
        continue;
      }
      const hash = createHash("sha256");
      const segs = (segmentsByVolume.get(vol.number) ?? []).sort((a, b) => a.seg.start - b.seg.start);
      let pos = 0;
      let next = 0;
      // Two buffers: the next chunk is read while this one is hashed.
      const fh = await fs.open(vol.path, "r");
      try {
        const bufs: [Buffer, Buffer] = [Buffer.allocUnsafe(READ_CHUNK_SIZE), Buffer.allocUnsafe(READ_CHUNK_SIZE)];
        let which: 0 | 1 = 0;
        let pending: Promise<{ bytesRead: number }> = fh.read(bufs[0], 0, READ_CHUNK_SIZE, 0);
        for (;;) {
          signal?.throwIfAborted();
          const { bytesRead } = await pending;
          if (bytesRead === 0) break;
          const chunk = bufs[which].subarray(0, bytesRead);
          which = which === 0 ? 1 : 0;
          pending = fh.read(bufs[which], 0, READ_CHUNK_SIZE, pos + bytesRead);
          feed(hash, segs, chunk, pos, next);
          while (next < segs.length && (segs[next] as { seg: Segment }).seg.start + (segs[next] as { seg: Segment }).seg.length <= pos + chunk.length) next++;
          pos += chunk.length;
          read += chunk.length;
          const now = Date.now();
          if (onProgress && now - lastEvent >= interval) {
            lastEvent = now;
            onProgress({ type: "verify-progress", bytes: read, total });
          }
        }
      } finally {
        await fh.close();
      }
      const sha256 = hash.digest("hex");
      const expected = expectedSum(vol);
      // ok is final only once every check is done (below): a fault found in the volume makes it not ok.
      const v: VerifiedVolume = { volume: vol.number, path: vol.path, present: true, size: vol.size, sha256, ok: expected === undefined || expected === sha256 };
      if (expected !== undefined) v.expected = expected;
      volumes.push(v);
    }
    onProgress?.({ type: "verify-progress", bytes: read, total });

    // Entry digests.
    const computed = new Map<string, Digest>();
    const tools: VerifiedTool[] = [];
    const bad = new Set<string>();
    let blobs = 0;
    for (const c of checks) {
      const e = c.entry;
      if (c.unreadable !== undefined || !e.complete) {
        if (c.expected) bad.add(c.expected);
        continue;
      }
      const got = c.digester.digest();
      computed.set(e.path, got);
      if (c.expected) {
        blobs++;
        if (got !== c.expected) {
          bad.add(c.expected);
          problem({ kind: "blob-digest", volume: e.volume, path: e.path, digest: c.expected, message: `blob ${c.expected} in ${volName(e.volume)} is damaged: its content has digest ${got}` });
        }
      }
    }
    const altered = (p: BundleProblem) => p.kind === "entry-duplicate" || p.kind === "entry-unlisted";
    for (const v of volumes) {
      if (!v.present || v.expected === undefined || v.expected === v.sha256) continue;
      const damaged = problems.filter((p) => p.kind === "blob-digest" && p.volume === v.volume).length;
      const added = problems.filter((p) => altered(p) && p.volume === v.volume).length;
      problem({
        kind: "volume-checksum",
        volume: v.volume,
        message:
          added > 0
            ? `${volName(v.volume)} has checksum ${v.sha256}, expected ${v.expected}: entries were added to it (above); the bundle was altered`
            : `${volName(v.volume)} has checksum ${v.sha256}, expected ${v.expected}${damaged > 0 ? ` (${damaged} damaged blob${damaged > 1 ? "s" : ""} in it)` : "; its blobs are intact, so the damage is in tar headers or padding"}; copy this volume again`,
      });
    }
    // A blob stored twice, or added to the tar after the export, is not one an image can rely on.
    for (const p of problems) if (altered(p) && p.digest) bad.add(p.digest);

    // Each volume description against what the volume holds.
    for (const vol of reader.volumes) {
      const d = vol.description;
      if (!d) continue;
      for (const listed of d.entries) {
        const e = reader.entry(listed.path);
        if (!e || e.volume !== vol.number) {
          if (!problems.some((p) => p.volume === vol.number && (p.kind === "header-damaged" || p.kind === "volume-truncated"))) {
            problem({ kind: "entry-missing", volume: vol.number, path: listed.path, message: `${volName(vol.number)} should hold ${listed.path}, but it is not there` });
          }
          if (listed.digest) bad.add(listed.digest);
          continue;
        }
        const got = computed.get(e.path);
        if (e.size !== listed.size || (listed.digest && got && got !== listed.digest && !digestFromBlobPath(e.path))) {
          problem({ kind: "entry-mismatch", volume: vol.number, path: listed.path, message: `${listed.path} in ${volName(vol.number)} is ${e.size} bytes${got ? ` with digest ${got}` : ""}; the volume description says ${listed.size}${listed.digest ? ` bytes with digest ${listed.digest}` : " bytes"}` });
        }
      }
    }

    // The layout: oci-layout, index.json, every manifest and blob they reach.
    const images: VerifiedImage[] = [];
    let manifests = 0;
    if (!reader.entry(OCI_LAYOUT_PATH) && reader.missingVolumes()[0] !== 0) {
      problem({ kind: "index-invalid", path: OCI_LAYOUT_PATH, message: `the bundle has no ${OCI_LAYOUT_PATH} file: it is not a valid OCI image layout` });
    }
    let indexEntries: { name: string | undefined; descriptor: Descriptor }[] = [];
    try {
      indexEntries = await reader.images();
    } catch (err) {
      // Without volume 0 there is no index.json to check: its absence is already reported.
      if (reader.volumes[0]?.present) problem({ kind: "index-invalid", path: INDEX_PATH, message: (err as Error).message });
    }
    const reached = new Set<string>();
    const deltaBase = new Set<string>(metadata?.base?.blobs ?? []);
    const metaVolume = new Map<string, number>();
    for (const b of [...(metadata?.blobs ?? []), ...(metadata?.manifests ?? [])]) metaVolume.set(b.digest, b.volume);
    const where = (d: Digest) => {
      const e = reader.entry(blobPath(d));
      const n = e?.volume ?? metaVolume.get(d);
      return n === undefined ? "" : ` (${volName(n)})`;
    };
    const checkBlob = (desc: Descriptor, owner: string, image: string): boolean => {
      reached.add(desc.digest);
      const e = reader.entry(blobPath(desc.digest));
      if (!e && deltaBase.has(desc.digest)) return true; // a delta's base: absent by design (bundle.json "base")
      if (!e) {
        const n = metaVolume.get(desc.digest);
        const inMissing = n !== undefined && !reader.volumes[n]?.present;
        if (!inMissing) {
          const missing = reader.missingVolumes();
          const where = n !== undefined ? ` (it belongs in ${volName(n)})` : missing.length > 0 ? `; it may be in missing volume${missing.length > 1 ? "s" : ""} ${missing.join(", ")}` : "";
          problem({ kind: "blob-missing", digest: desc.digest, image, message: `blob ${desc.digest} listed by ${owner} is not in the bundle${where}` });
        }
        bad.add(desc.digest);
        return false;
      }
      if (e.size !== desc.size) {
        problem({ kind: "blob-size", digest: desc.digest, volume: e.volume, image, message: `blob ${desc.digest} in ${volName(e.volume)} is ${e.size} bytes, ${owner} says ${desc.size}` });
        bad.add(desc.digest);
        return false;
      }
      return !bad.has(desc.digest);
    };
    const checkManifest = async (desc: Descriptor, owner: string, image: string): Promise<boolean> => {
      if (!checkBlob(desc, owner, image)) return false;
      let m: Manifest;
      try {
        const e = reader.entry(blobPath(desc.digest)) as TarEntry;
        m = Manifest.parse(await reader.readEntry(e), { mediaType: desc.mediaType, what: `manifest ${desc.digest}${where(desc.digest)}` });
      } catch (err) {
        problem({ kind: "manifest-invalid", digest: desc.digest, image, message: (err as Error).message });
        bad.add(desc.digest);
        return false;
      }
      manifests++;
      let ok = true;
      if (m.isIndex) {
        for (const child of m.index.manifests) {
          if (!isManifestMediaType(child.mediaType)) continue;
          ok = (await checkManifest(child, `index ${m.digest}`, image)) && ok;
        }
      } else {
        for (const b of m.blobs()) ok = checkBlob(b, `manifest ${m.digest}`, image) && ok;
      }
      return ok;
    };
    for (const { name, descriptor } of indexEntries) {
      const label = name ?? descriptor.digest;
      if (!name) problem({ kind: "index-invalid", severity: "warning", digest: descriptor.digest, message: `index.json lists ${descriptor.digest} without an ${REF_NAME_ANNOTATION} annotation: it cannot be imported by name` });
      const ok = await checkManifest(descriptor, `index.json entry ${label}`, label);
      images.push({ name: label, digest: descriptor.digest, mediaType: descriptor.mediaType, ok });
    }

    // airlock's metadata against the layout.
    if (metadata) {
      if (reader.bundleId && metadata.bundle !== reader.bundleId) {
        problem({ kind: "metadata-mismatch", path: BUNDLE_METADATA_PATH, message: `${BUNDLE_METADATA_PATH} names bundle ${metadata.bundle}, the volumes name ${reader.bundleId}` });
      }
      for (const img of metadata.images) {
        const inIndex = indexEntries.find((i) => i.name === img.name);
        if (!inIndex) {
          problem({ kind: "metadata-mismatch", image: img.name, message: `${BUNDLE_METADATA_PATH} lists image ${img.name}, which index.json does not` });
        } else if (inIndex.descriptor.digest !== img.digest || inIndex.descriptor.size !== img.size) {
          problem({ kind: "metadata-mismatch", image: img.name, digest: img.digest, message: `image ${img.name}: index.json says ${inIndex.descriptor.digest} (${inIndex.descriptor.size} bytes), ${BUNDLE_METADATA_PATH} says ${img.digest} (${img.size} bytes); the bundle was altered` });
        }
      }
      for (const i of indexEntries) {
        if (i.name && !metadata.images.some((m) => m.name === i.name)) {
          problem({ kind: "metadata-mismatch", image: i.name, message: `index.json lists image ${i.name}, which ${BUNDLE_METADATA_PATH} does not; the bundle was altered` });
        }
      }
      for (const b of [...metadata.manifests, ...metadata.blobs]) {
        const e = reader.entry(blobPath(b.digest));
        if (!e) {
          if (!reached.has(b.digest) && reader.volumes[b.volume]?.present) {
            problem({ kind: "blob-missing", digest: b.digest, message: `blob ${b.digest} listed by ${BUNDLE_METADATA_PATH} is not in the bundle (it belongs in ${volName(b.volume)})` });
          }
        } else if (e.size !== b.size) {
          problem({ kind: "metadata-mismatch", digest: b.digest, volume: e.volume, message: `blob ${b.digest} in ${volName(e.volume)} is ${e.size} bytes, ${BUNDLE_METADATA_PATH} says ${b.size}` });
        }
      }
      // Image signatures carried by the bundle: each entry present, with the sha256 bundle.json records.
      for (const sig of metadata.signatures ?? []) {
        const e = reader.entry(sig.path);
        const got = computed.get(sig.path);
        if (!e) {
          if (reader.missingVolumes().length === 0) problem({ kind: "entry-missing", path: sig.path, digest: sig.manifest, message: `signature ${sig.path} of ${sig.manifest}, listed by ${BUNDLE_METADATA_PATH}, is not in the bundle` });
        } else if (e.size !== sig.size || (got !== undefined && got !== sig.digest)) {
          problem({ kind: "metadata-mismatch", path: sig.path, volume: e.volume, message: `signature ${sig.path} in ${volName(e.volume)} is ${e.size} bytes${got ? ` with digest ${got}` : ""}, ${BUNDLE_METADATA_PATH} says ${sig.size} bytes with digest ${sig.digest}; the bundle was altered` });
        }
      }
      // Executables carried beside the layout: each entry present, with the sha256 bundle.json records.
      for (const tool of metadata.tools ?? []) {
        const e = reader.entry(tool.path);
        const got = computed.get(tool.path);
        const ok = e !== undefined && e.size === tool.size && got === tool.digest;
        tools.push({ ...tool, ok });
        if (!e) {
          if (reader.missingVolumes().length === 0) problem({ kind: "entry-missing", path: tool.path, message: `the tool ${tool.path} (${tool.platform}), listed by ${BUNDLE_METADATA_PATH}, is not in the bundle` });
        } else if (!ok) {
          problem({ kind: "metadata-mismatch", path: tool.path, volume: e.volume, message: `the tool ${tool.path} in ${volName(e.volume)} is ${e.size} bytes${got ? ` with digest ${got}` : ""}, ${BUNDLE_METADATA_PATH} says ${tool.size} bytes with digest ${tool.digest}; the bundle was altered: do not run it` });
        }
      }
      if (!reader.concatenated && metadata.volumes.length !== reader.volumes.length) {
        problem({ kind: "metadata-mismatch", message: `${BUNDLE_METADATA_PATH} lists ${metadata.volumes.length} volumes, ${reader.volumes.length} were found` });
      }
    } else if (reader.bundleId && !problems.some((p) => p.kind === "volume-missing" || p.kind === "metadata-invalid")) {
      problem({ kind: "metadata-missing", path: BUNDLE_METADATA_PATH, message: `${BUNDLE_METADATA_PATH} is missing: the bundle was not finished` });
    }
    for (const e of reader.entries()) {
      const d = digestFromBlobPath(e.path);
      if (d && !reached.has(d)) problem({ kind: "blob-missing", severity: "warning", digest: d as Digest, volume: e.volume, message: `blob ${d} in ${volName(e.volume)} is not referenced by any image` });
    }
    // Each item is ok only if nothing wrong was found in it.
    const errors = problems.filter((p) => p.severity === "error");
    const indexFault = errors.some((p) => p.path === INDEX_PATH);
    for (const img of images) {
      if (bad.has(img.digest) || indexFault || errors.some((p) => p.image === img.name)) img.ok = false;
    }
    for (const v of volumes) if (errors.some((p) => p.volume === v.volume)) v.ok = false;
    for (const t of tools) if (errors.some((p) => p.path === t.path)) t.ok = false;

    const report: VerifyReport = {
      path: reader.path,
      ok: !problems.some((p) => p.severity === "error"),
      volumes,
      images,
      blobs,
      manifests,
      bytes: read,
      problems,
      durationMs: Date.now() - started,
    };
    if (reader.bundleId) report.bundle = reader.bundleId;
    if (metadata?.base) report.base = { source: metadata.base.source, count: metadata.base.count, digest: metadata.base.digest };
    if (tools.length > 0) report.tools = tools;
    return report;
  } finally {
    await reader.close();
  }
}

/** Feeds `chunk` (at volume offset `pos`) to the volume hash and to the entries it overlaps. */
function feed(hash: Hash, segs: { seg: Segment; check: Check }[], chunk: Buffer, pos: number, from: number): void {
  hash.update(chunk);
  const end = pos + chunk.length;
  for (let i = from; i < segs.length; i++) {
    const { seg, check } = segs[i] as { seg: Segment; check: Check };
    if (seg.start >= end) break;
    const a = Math.max(seg.start, pos);
    const b = Math.min(seg.start + seg.length, end);
    if (b > a) check.digester.update(chunk.subarray(a - pos, b - pos));
  }
}

function firstMissing(reader: BundleReader, e: TarEntry): number {
  for (let v = e.dataVolume; v < reader.volumes.length; v++) if (!reader.volumes[v]?.present) return v;
  return e.dataVolume;
}

/** Parses a sha256sum file into base name → hex; undefined when it does not exist. */
async function readSidecar(path: string): Promise<Map<string, string> | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path, "utf8");
  } catch {
    return undefined;
  }
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([a-f0-9]{64}) [ *](.+)$/.exec(line.trim());
    if (m) out.set(basename(m[2] as string), m[1] as string);
  }
  return out;
}
