/**
 * The state behind the live terminal display: what each image of a run has moved, built from the
 * core's progress events, and the few lines of text that show it (one per image in flight, the
 * last few finished, counts for the rest, a total). Pure: no terminal and no timers; the caller
 * passes the clock, so rates and ETAs are deterministic under test.
 */
import type { BundleEvent } from "@airlock/core";

/** Formats a byte count with binary units, e.g. `12.3 MiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Formats a duration in seconds as `7s`, `2m05s` or `1h02m`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * Shortens an image name to at most `max` characters: drops `docker://`, cuts a sha256 digest to
 * 12 hex digits, then elides path segments after the host, keeping the repository's last
 * segment and tag (`registry.example.com/…/app:1.2`); the end is kept when nothing else fits.
 */
export function shortenName(name: string, max: number): string {
  const s = name.replace(/^docker:\/\//, "").replace(/@sha256:([0-9a-f]{12})[0-9a-f]{52}/, "@sha256:$1");
  if (s.length <= max) return s;
  const parts = s.split("/");
  if (parts.length > 2) {
    const head = parts[0] as string;
    let tail = parts[parts.length - 1] as string;
    for (let i = parts.length - 2; i >= 1 && `${head}/…/${parts[i]}/${tail}`.length <= max; i--) tail = `${parts[i]}/${tail}`;
    if (`${head}/…/${tail}`.length <= max) return `${head}/…/${tail}`;
    for (let i = parts.length - 2; i >= 1 && `…/${parts[i]}/${tail}`.length <= max; i--) tail = `${parts[i]}/${tail}`;
    if (`…/${tail}`.length <= max) return `…/${tail}`;
  }
  return max <= 1 ? s.slice(0, max) : `…${s.slice(s.length - (max - 1))}`;
}

/** What an image on the board is doing; "stopped": unfinished when the run ended (failed elsewhere or interrupted). */
export type ImageState = "waiting" | "copying" | "done" | "failed" | "stopped";

interface Blob {
  size: number;
  moved: number;
  complete: boolean;
  /** Started and not complete: moving now. */
  active: boolean;
}

/** The blobs of one image (or of the whole run), each digest once, with running sums. */
class BlobTally {
  private readonly blobs = new Map<string, Blob>();
  /** Bytes of every blob known. */
  total = 0;
  /** Bytes complete: blobs done or skipped whole, plus what has moved of the others. */
  done = 0;
  /** Bytes moved in this run (skipped blobs moved nothing): what rates are made of. */
  moved = 0;
  /** Blobs moving now. */
  active = 0;

  private get(digest: string, size: number): Blob {
    let b = this.blobs.get(digest);
    if (!b) {
      b = { size: Math.max(0, size), moved: 0, complete: false, active: false };
      this.blobs.set(digest, b);
      this.total += b.size;
    }
    return b;
  }

  /** Grows a blob of unknown size (-1, schema 1 conversions) to what has been seen of it. */
  private grow(b: Blob, n: number): void {
    if (n > b.size) {
      this.total += n - b.size;
      b.size = n;
    }
  }

  start(digest: string, size: number): void {
    this.activate(this.get(digest, size));
  }

  progress(digest: string, bytes: number, size: number): void {
    const b = this.get(digest, size);
    this.activate(b);
    if (b.complete || bytes <= b.moved) return;
    this.grow(b, bytes);
    this.done += bytes - b.moved;
    this.moved += bytes - b.moved;
    b.moved = bytes;
  }

  complete(digest: string, size: number, transferred: boolean): void {
    const b = this.get(digest, size);
    if (b.complete) return;
    this.grow(b, size);
    this.done += b.size - b.moved;
    if (transferred) {
      this.moved += b.size - b.moved;
      b.moved = b.size;
    }
    b.complete = true;
    if (b.active) this.active--;
    b.active = false;
  }

  private activate(b: Blob): void {
    if (b.complete || b.active) return;
    b.active = true;
    this.active++;
  }
}

/** A moving rate: bytes per second over about the last `windowMs`. */
class RateMeter {
  private readonly samples: { t: number; n: number }[] = [];
  private readonly windowMs: number;

  constructor(windowMs = 10_000) {
    this.windowMs = windowMs;
  }

  /** Records that `n` bytes had moved at time `t`. */
  sample(t: number, n: number): void {
    const last = this.samples[this.samples.length - 1];
    if (!last || t - last.t >= 500) this.samples.push({ t, n });
    this.prune(t);
  }

  /** Bytes per second at time `t`, `n` bytes having moved; undefined for the first second. */
  rate(t: number, n: number): number | undefined {
    this.prune(t);
    const first = this.samples[0];
    if (!first || t - first.t < 1000) return undefined;
    return ((n - first.n) * 1000) / (t - first.t);
  }

  private prune(t: number): void {
    while (this.samples.length > 1 && (this.samples[1] as { t: number }).t <= t - this.windowMs) this.samples.shift();
  }
}

interface BoardImage {
  name: string;
  state: ImageState;
  /** Announced by an image-start event (export, import): finished by image-done. Else (copy, sync) by its top-level manifest. */
  announced: boolean;
  /** The image's bytes as its image-start said (import), before its blobs are seen. */
  announcedBytes: number;
  blobs: BlobTally;
  rate: RateMeter;
  started?: number;
  finished?: number;
  error?: string;
}

/** How the board is laid out. */
export interface BoardLayout {
  /** Width of the terminal. */
  columns: number;
  /** Lines at most, the total line included (at least 4). */
  maxLines: number;
  /** Finished images kept on their own line (the most recent ones) before they collapse into a count. */
  keepFinished: number;
}

type Row = { kind: "image"; image: BoardImage } | { kind: "text"; text: string };

/** The cells of one line: an image's, the total's, or a summary text (`summary`). */
interface Cells {
  state: string;
  name: string;
  /** Fraction complete, for the bar; none for a waiting image. */
  fraction?: number;
  bytes: string;
  rate: string;
  eta: string;
  /** What failed, shown instead of the bar, rate and ETA. */
  error?: string;
  summary?: string;
}

const STATE_WIDTH = 7;

/**
 * The live state of a run's images, fed with progress events (copy, sync, export, import). A blob
 * shared by several images counts in each image's line and once in the total.
 */
export class ProgressBoard {
  private readonly now: () => number;
  private readonly images = new Map<string, BoardImage>();
  /** Finished images, in the order they finished. */
  private readonly finished: BoardImage[] = [];
  private readonly blobs = new BlobTally();
  private readonly rate = new RateMeter();
  private plannedBytes = 0;
  private plannedImages = 0;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** Takes one event into account. */
  on(e: BundleEvent): void {
    const t = this.now();
    switch (e.type) {
      case "bundle-plan":
        this.plannedBytes = e.bytes;
        this.plannedImages = e.images;
        return;
      case "image-start": {
        const img = this.image(e.image);
        img.announced = true;
        if (e.bytes !== undefined) img.announcedBytes = e.bytes;
        return;
      }
      case "blob-start":
      case "blob-progress":
      case "blob-done":
      case "blob-skipped": {
        const img = e.image === undefined ? undefined : this.image(e.image);
        if (img && img.state !== "copying") this.setState(img, "copying", t);
        for (const tally of img ? [img.blobs, this.blobs] : [this.blobs]) {
          if (e.type === "blob-start") tally.start(e.digest, e.size);
          else if (e.type === "blob-progress") tally.progress(e.digest, e.bytes, e.size);
          else tally.complete(e.digest, e.size, e.type === "blob-done");
        }
        if (img) img.rate.sample(t, img.blobs.moved);
        this.rate.sample(t, this.blobs.moved);
        return;
      }
      case "manifest":
        if (e.topLevel && e.image !== undefined) {
          const img = this.image(e.image);
          if (!img.announced) this.setState(img, "done", t);
        }
        return;
      case "image-done":
        this.setState(this.image(e.image), "done", t);
        return;
      case "image-failed": {
        const img = this.image(e.image);
        img.error = e.error;
        this.setState(img, "failed", t);
        return;
      }
      default:
        return;
    }
  }

  /** Marks the images still waiting or copying as stopped: the run ended without finishing them. */
  stop(): void {
    for (const img of this.images.values()) if (img.state === "waiting" || img.state === "copying") img.state = "stopped";
  }

  /** The lines to draw now, top to bottom: images (finished, copying, waiting), then the total. */
  lines(layout: BoardLayout): string[] {
    const t = this.now();
    const copying: BoardImage[] = [];
    const waiting: BoardImage[] = [];
    for (const img of this.images.values()) {
      if (img.state === "copying" || img.state === "stopped") copying.push(img);
      else if (img.state === "waiting") waiting.push(img);
    }
    const finished = this.finished;
    // Fit the budget: drop waiting images first, then finished ones, then copying ones, each into a count.
    const budget = Math.max(3, layout.maxLines - 1);
    let showC = copying.length;
    let showF = Math.min(finished.length, layout.keepFinished);
    let showW = waiting.length;
    const count = () => showC + showF + showW + (finished.length > showF ? 1 : 0) + (copying.length > showC || waiting.length > showW ? 1 : 0);
    while (count() > budget) {
      if (showW > 0) showW--;
      else if (showF > 0) showF--;
      else if (showC > 0) showC--;
      else break;
    }
    const rows: Row[] = [];
    const earlier = finished.slice(0, finished.length - showF);
    if (earlier.length > 0) {
      const failed = earlier.filter((i) => i.state === "failed").length;
      rows.push({ kind: "text", text: `… ${earlier.length} more finished${failed > 0 ? ` (${failed} failed)` : ""}` });
    }
    for (const image of finished.slice(finished.length - showF)) rows.push({ kind: "image", image });
    for (const image of copying.slice(0, showC)) rows.push({ kind: "image", image });
    for (const image of waiting.slice(0, showW)) rows.push({ kind: "image", image });
    const more = [copying.length > showC ? `${copying.length - showC} more copying` : "", waiting.length > showW ? `${waiting.length - showW} ${showW > 0 ? "more " : ""}waiting` : ""].filter(Boolean);
    if (more.length > 0) rows.push({ kind: "text", text: `… ${more.join(", ")}` });
    return this.format(rows, t, layout.columns);
  }

  private format(rows: Row[], t: number, columns: number): string[] {
    const width = Math.max(40, columns) - 1;
    const cells: Cells[] = rows.map((r) => (r.kind === "text" ? { state: "", name: "", bytes: "", rate: "", eta: "", summary: r.text } : this.cells(r.image, t)));
    const totals = this.totals();
    const rate = this.rate.rate(t, this.blobs.moved);
    const imagesText = `${totals.finished}/${totals.images} image${totals.images === 1 ? "" : "s"}${totals.failed > 0 ? `, ${totals.failed} failed` : ""}`;
    cells.push({ state: "total", name: imagesText, fraction: totals.total > 0 ? totals.done / totals.total : 0, ...amounts(totals.done, totals.total, rate) });
    const widest = (f: (c: Cells) => string) => Math.max(0, ...cells.filter((c) => c.summary === undefined).map((c) => f(c).length));
    const bytesW = widest((c) => c.bytes);
    let rateW = widest((c) => c.rate);
    let etaW = widest((c) => c.eta);
    const nameNeed = widest((c) => c.name);
    const fixed = () => STATE_WIDTH + 1 + 2 + bytesW + (rateW ? 2 + rateW : 0) + (etaW ? 2 + etaW : 0);
    let barW = 0;
    for (const w of [20, 10]) {
      if (width - fixed() - (w + 4) >= Math.min(nameNeed, w === 20 ? 30 : 20)) {
        barW = w;
        break;
      }
    }
    if (barW === 0 && width - fixed() < Math.min(nameNeed, 16)) {
      rateW = 0;
      etaW = 0;
    }
    const barCols = barW ? barW + 4 : 0;
    const nameW = Math.max(8, Math.min(nameNeed, width - fixed() - barCols));
    const indent = " ".repeat(STATE_WIDTH + 1);
    return cells.map((c) => {
      if (c.summary !== undefined) return (indent + c.summary).slice(0, width);
      let line = `${c.state.padEnd(STATE_WIDTH)} ${(c.state === "total" ? c.name : shortenName(c.name, nameW)).padEnd(nameW)}`;
      if (c.error !== undefined) return `${line}  ${c.error}`.slice(0, width).trimEnd();
      if (barW) line += c.fraction === undefined ? " ".repeat(barCols) : `  [${bar(c.fraction, barW)}]`;
      line += `  ${c.bytes.padStart(bytesW)}`;
      if (rateW) line += `  ${c.rate.padStart(rateW)}`;
      if (etaW) line += `  ${c.eta}`;
      return line.slice(0, width).trimEnd();
    });
  }

  private cells(img: BoardImage, t: number): Cells {
    const total = Math.max(img.blobs.total, img.announcedBytes);
    const done = img.state === "done" ? total : img.blobs.done;
    const base = { state: img.state, name: img.name };
    if (img.state === "failed") return { ...base, bytes: "", rate: "", eta: "", error: `${formatBytes(done)} / ${formatBytes(total)}: ${img.error ?? "failed"}` };
    if (img.state === "waiting") return { ...base, bytes: total > 0 ? formatBytes(total) : "", rate: "", eta: "" };
    if (img.state === "done") {
      const secs = img.started !== undefined && img.finished !== undefined ? (img.finished - img.started) / 1000 : undefined;
      return { ...base, fraction: 1, bytes: `${formatBytes(done)} / ${formatBytes(total)}`, rate: "", eta: secs !== undefined && secs >= 0.1 && img.blobs.moved > 0 ? `in ${secs < 10 ? `${secs.toFixed(1)}s` : formatDuration(secs)}` : "" };
    }
    if (img.state === "stopped") return { ...base, fraction: total > 0 ? done / total : 0, ...amounts(done, total, undefined) };
    // An image with no blob moving (its blobs queued behind others') has no rate of its own now.
    return { ...base, fraction: total > 0 ? done / total : 0, ...amounts(done, total, img.blobs.active > 0 ? img.rate.rate(t, img.blobs.moved) : undefined) };
  }

  /** Totals of the run: images finished and failed, bytes complete and known (shared blobs once). */
  totals(): { images: number; finished: number; failed: number; done: number; total: number } {
    // Bytes an image announced (import) but whose blobs have not been seen yet.
    let pending = 0;
    for (const img of this.images.values()) if (img.state !== "done" && img.state !== "failed") pending += Math.max(0, img.announcedBytes - img.blobs.total);
    const failed = this.finished.filter((i) => i.state === "failed").length;
    return {
      images: Math.max(this.plannedImages, this.images.size),
      finished: this.finished.length,
      failed,
      done: this.blobs.done,
      total: this.plannedBytes > 0 ? Math.max(this.plannedBytes, this.blobs.total) : this.blobs.total + pending, // a plan counts a shared blob once
    };
  }

  private image(name: string): BoardImage {
    let img = this.images.get(name);
    if (!img) {
      img = { name, state: "waiting", announced: false, announcedBytes: 0, blobs: new BlobTally(), rate: new RateMeter() };
      this.images.set(name, img);
    }
    return img;
  }

  private setState(img: BoardImage, state: ImageState, t: number): void {
    const wasFinished = img.state === "done" || img.state === "failed";
    const isFinished = state === "done" || state === "failed";
    if (wasFinished && !isFinished) this.finished.splice(this.finished.indexOf(img), 1);
    if (isFinished && !wasFinished) {
      this.finished.push(img);
      img.finished = t;
    }
    if (state === "copying" && img.started === undefined) {
      img.started = t;
      img.rate.sample(t, img.blobs.moved);
    }
    img.state = state;
  }
}

function amounts(done: number, total: number, rate: number | undefined): { bytes: string; rate: string; eta: string } {
  return {
    bytes: `${formatBytes(done)} / ${formatBytes(total)}`,
    rate: rate === undefined ? "" : `${formatBytes(Math.round(rate))}/s`,
    eta: rate !== undefined && rate > 0 && total > done ? `ETA ${formatDuration((total - done) / rate)}` : "",
  };
}

function bar(fraction: number, width: number): string {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return "█".repeat(full) + "░".repeat(width - full);
}
