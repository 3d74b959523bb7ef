/**
 * Positional I/O over a bundle's volume files as one logical file: a write or read at a logical
 * offset is split at volume cut points and sent to the right file at the right position.
 */
import { type FileHandle, open } from "node:fs/promises";
import { volumeAt } from "./plan.js";

/** A volume's place in the logical file. */
export interface VolumeExtent {
  offset: number;
  size: number;
}

/** The volume files of one bundle, opened for positional reads and writes. */
export class VolumeFiles {
  readonly extents: readonly VolumeExtent[];
  readonly paths: readonly string[];
  private readonly handles: FileHandle[];

  private constructor(extents: readonly VolumeExtent[], paths: readonly string[], handles: FileHandle[]) {
    this.extents = extents;
    this.paths = paths;
    this.handles = handles;
  }

  /**
   * Opens one file per extent: `w+` creates or truncates them, `r+` opens existing files without
   * truncating (resume) — both for reading and writing — and `r` for reading only.
   */
  static async open(extents: readonly VolumeExtent[], paths: readonly string[], flags: "w+" | "r+" | "r"): Promise<VolumeFiles> {
    const handles: FileHandle[] = [];
    try {
      for (const p of paths) handles.push(await open(p, flags, 0o644));
    } catch (err) {
      await Promise.all(handles.map((h) => h.close().catch(() => {})));
      throw err;
    }
    return new VolumeFiles(extents, paths, handles);
  }

  /** Writes `length` bytes of `buf` from `offset` at logical position `pos`. */
  async write(buf: Uint8Array, offset: number, length: number, pos: number): Promise<void> {
    for (const [h, bufOffset, n, at] of this.segments(offset, length, pos)) {
      let done = 0;
      while (done < n) {
        const { bytesWritten } = await h.write(buf, bufOffset + done, n - done, at + done);
        done += bytesWritten;
      }
    }
  }

  /**
   * Writes `pieces` one after the other from logical position `pos`: one writev when they lie in
   * one volume (no copy), piece by piece where they cross a cut point.
   */
  async writev(pieces: readonly Uint8Array[], pos: number): Promise<void> {
    const total = pieces.reduce((n, p) => n + p.length, 0);
    const v = volumeAt(this.extents, pos);
    const ext = this.extents[v] as VolumeExtent;
    const last = v === this.extents.length - 1;
    if (!last && pos + total > ext.offset + ext.size) {
      let at = pos;
      for (const p of pieces) {
        await this.write(p, 0, p.length, at);
        at += p.length;
      }
      return;
    }
    const h = this.handles[v] as FileHandle;
    let list = pieces;
    let at = pos - ext.offset;
    let left = total;
    while (left > 0) {
      const { bytesWritten } = await h.writev(list as Uint8Array[], at);
      left -= bytesWritten;
      at += bytesWritten;
      if (left > 0) list = dropBytes(list, bytesWritten);
    }
  }

  /** Reads `length` bytes at logical position `pos` into `buf` at `offset`; returns the bytes read. */
  async read(buf: Uint8Array, offset: number, length: number, pos: number): Promise<number> {
    let total = 0;
    for (const [h, bufOffset, n, at] of this.segments(offset, length, pos)) {
      let done = 0;
      while (done < n) {
        const { bytesRead } = await h.read(buf, bufOffset + done, n - done, at + done);
        if (bytesRead === 0) return total + done;
        done += bytesRead;
      }
      total += done;
    }
    return total;
  }

  /** Flushes every file to stable storage. */
  async sync(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.sync()));
  }

  /** Closes every file. */
  async close(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.close().catch(() => {})));
  }

  private *segments(offset: number, length: number, pos: number): Generator<[FileHandle, number, number, number]> {
    let v = volumeAt(this.extents, pos);
    let bufOffset = offset;
    let remaining = length;
    let at = pos;
    while (remaining > 0) {
      const ext = this.extents[v] as VolumeExtent;
      const local = at - ext.offset;
      const last = v === this.extents.length - 1;
      const n = last ? remaining : Math.min(remaining, ext.size - local);
      if (n > 0) yield [this.handles[v] as FileHandle, bufOffset, n, local];
      bufOffset += n;
      remaining -= n;
      at += n;
      v++;
    }
  }
}

/** `pieces` without their first `n` bytes (after a short writev). */
function dropBytes(pieces: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = n;
  for (const p of pieces) {
    if (skip >= p.length) {
      skip -= p.length;
      continue;
    }
    out.push(skip > 0 ? p.subarray(skip) : p);
    skip = 0;
  }
  return out;
}
