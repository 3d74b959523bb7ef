/**
 * Draws progress events on stderr: on a terminal a live display (a line per image in flight with
 * bytes, rate and ETA, the last few finished, a total line); elsewhere (CI logs) a plain line per
 * blob plus a summary line every few seconds; NDJSON with --json; nothing with --quiet.
 */
import type { BundleEvent, ProgressEvent, ProgressListener } from "@airlock/core";
import cliProgress from "cli-progress";
import { formatBytes, ProgressBoard } from "./progress-board.js";

export { formatBytes } from "./progress-board.js";

/** How progress is shown. */
export type ProgressMode = "tty" | "plain" | "json" | "quiet";

/** Chooses the mode: --json wins, then --quiet; bars only on a terminal outside CI. */
export function progressMode(opts: { json?: boolean; quiet?: boolean }, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (opts.json) return "json";
  if (opts.quiet) return "quiet";
  return stream.isTTY && !process.env.CI ? "tty" : "plain";
}

const short = (d: string) => d.slice(0, d.indexOf(":") + 13);

/** A progress display: a listener for events, and `stop()` to finish drawing. */
export interface ProgressDisplay {
  listener: ProgressListener;
  stop(): void;
}

/** Creates the display for `mode`, writing to `out` (stderr). */
export function createProgress(mode: ProgressMode, out: NodeJS.WriteStream = process.stderr, intervalMs = 5000): ProgressDisplay {
  switch (mode) {
    case "quiet":
      return { listener: () => {}, stop: () => {} };
    case "json":
      return {
        listener: (e) => {
          out.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
        },
        stop: () => {},
      };
    case "tty":
      return ttyProgress(out);
    default:
      return plainProgress(out, intervalMs);
  }
}

/** Totals kept by every display, for the periodic line and the summary. */
class Totals {
  total = 0;
  done = 0;
  readonly inFlight = new Map<string, { bytes: number; size: number }>();
  readonly start = Date.now();

  on(e: ProgressEvent): void {
    if (e.type === "blob-start") {
      this.total += e.size;
      this.inFlight.set(e.digest, { bytes: 0, size: e.size });
    } else if (e.type === "blob-progress") {
      const f = this.inFlight.get(e.digest);
      if (f) f.bytes = e.bytes;
    } else if (e.type === "blob-done") {
      this.inFlight.delete(e.digest);
      this.done += e.size;
    }
  }

  moved(): number {
    let n = this.done;
    for (const f of this.inFlight.values()) n += f.bytes;
    return n;
  }

  line(): string {
    const moved = this.moved();
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0 ? moved / secs : 0;
    const eta = rate > 0 && this.total > moved ? ` ETA ${Math.ceil((this.total - moved) / rate)}s` : "";
    return `progress: ${formatBytes(moved)} / ${formatBytes(this.total)} at ${formatBytes(rate)}/s, ${this.inFlight.size} blob(s) in flight${eta}`;
  }
}

function plainProgress(out: NodeJS.WriteStream, intervalMs: number): ProgressDisplay {
  const totals = new Totals();
  const timer = setInterval(() => {
    if (totals.inFlight.size > 0) out.write(`${totals.line()}\n`);
  }, intervalMs);
  timer.unref();
  return {
    listener: (e) => {
      totals.on(e);
      switch (e.type) {
        case "image-start":
          out.write(`Copying image ${e.image}\n`);
          break;
        case "blob-start":
          out.write(`Copying blob ${e.digest} (${formatBytes(e.size)})\n`);
          break;
        case "blob-done":
          out.write(`Copying blob ${short(e.digest)} done\n`);
          break;
        case "blob-skipped":
          out.write(`Copying blob ${short(e.digest)} skipped: ${e.reason}\n`);
          break;
        case "manifest":
          if (e.topLevel) out.write(`Writing manifest ${e.digest} to image destination\n`);
          break;
        case "image-failed":
          out.write(`Failed ${e.image}: ${e.error}\n`);
          break;
        case "warning":
          out.write(`warning: ${e.message}\n`);
          break;
      }
    },
    stop: () => clearInterval(timer),
  };
}

/** Options of the terminal display; the defaults suit a real run, tests pass a clock. */
export interface TtyProgressOptions {
  /** The clock, in milliseconds (rates and ETAs). */
  now?: () => number;
  /** How often the lines are recomputed and redrawn, in milliseconds. */
  intervalMs?: number;
  /** Finished images kept on their own line before they collapse into a count. */
  keepFinished?: number;
}

/**
 * The live display of a terminal: a line per image in flight (state, name, bytes, rate, ETA), the
 * last few finished, counts for the rest, and a total line, at most about 12 lines (fewer on a
 * short terminal). cli-progress redraws the lines in place; warnings, failures and whatever else
 * is written to `out` meanwhile are printed above them and stay in the scrollback.
 */
export function ttyProgress(out: NodeJS.WriteStream, options: TtyProgressOptions = {}): ProgressDisplay {
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? 200;
  const board = new ProgressBoard(now);
  // While the display is live, what others write to `out` (sync's lines, --debug's requests) is
  // printed above it, not over it: cli-progress draws through `terminal`, which keeps the
  // stream's own write; `out.write` is replaced until stop().
  const ownWrite = Object.hasOwn(out, "write");
  const original = out.write;
  const write = original.bind(out) as (chunk: string, cb?: (err?: Error | null) => void) => boolean;
  const terminal = {
    isTTY: true,
    get columns() {
      return out.columns;
    },
    get rows() {
      return out.rows;
    },
    write,
  } as unknown as NodeJS.WriteStream;
  const multi = new cliProgress.MultiBar({
    stream: terminal,
    // Each bar is one line of the board, formatted by the board.
    format: (_options, _params, payload: { line?: string }) => payload.line ?? "",
    fps: 1000 / intervalMs,
    hideCursor: true,
    clearOnComplete: false,
    // Every frame is redrawn whole: a line printed above the display moves it down.
    forceRedraw: true,
    // Lines are cut at the terminal's width; printed messages wrap.
    linewrap: true,
  });
  const slots: cliProgress.SingleBar[] = [];
  let drawing = false;
  let stopped = false;
  let partial = "";
  // A message above the display: the rest of the screen is cleared first, so that a wrapped
  // message leaves nothing of the old display beside it.
  const print = (text: string) => {
    if (drawing) multi.log(`\x1b[0J${text}`);
    else write(text);
  };
  const intercept = (chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
    const text = partial + (typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString(typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8"));
    const end = text.lastIndexOf("\n") + 1;
    partial = text.slice(end);
    if (end > 0) print(text.slice(0, end));
    const done = typeof encoding === "function" ? encoding : cb;
    if (typeof done === "function") queueMicrotask(() => done());
    return true;
  };
  const draw = () => {
    const rows = out.rows || 24;
    const lines = board.lines({ columns: out.columns || 80, maxLines: Math.max(4, Math.min(12, rows - 2)), keepFinished: options.keepFinished ?? 3 });
    if (!drawing) out.write = intercept as typeof out.write;
    drawing = true;
    while (slots.length < lines.length) slots.push(multi.create(1, 0, { line: "" }));
    for (let i = 0; i < lines.length; i++) slots[i]?.update({ line: lines[i] });
    // Removing a slot redraws at once, with the lines already updated.
    while (slots.length > lines.length) multi.remove(slots.pop() as cliProgress.SingleBar);
  };
  const timer = setInterval(() => {
    if (drawing) draw();
  }, intervalMs);
  timer.unref();
  return {
    listener: (e) => {
      if (stopped) return;
      const event = e as BundleEvent;
      board.on(event);
      if (event.type === "warning") print(`warning: ${event.message}\n`);
      else if (event.type === "image-failed") print(`Failed ${event.image}: ${event.error}\n`);
      if (!drawing && (event.type === "image-start" || event.type === "blob-start" || event.type === "bundle-plan")) draw();
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (!drawing) return;
      if (partial) print(`${partial}\n`);
      board.stop();
      draw();
      multi.update();
      multi.stop();
      if (ownWrite) out.write = original;
      else delete (out as { write?: unknown }).write;
    },
  };
}
