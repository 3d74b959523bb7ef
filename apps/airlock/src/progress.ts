/**
 * Draws progress events on stderr: live bars on a terminal, a plain line per blob plus a summary
 * line every few seconds elsewhere (CI logs), NDJSON with --json, nothing with --quiet.
 */
import type { ProgressEvent, ProgressListener } from "@airlock/core";
import cliProgress from "cli-progress";

/** How progress is shown. */
export type ProgressMode = "tty" | "plain" | "json" | "quiet";

/** Chooses the mode: --json wins, then --quiet; bars only on a terminal outside CI. */
export function progressMode(opts: { json?: boolean; quiet?: boolean }, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (opts.json) return "json";
  if (opts.quiet) return "quiet";
  return stream.isTTY && !process.env.CI ? "tty" : "plain";
}

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

function ttyProgress(out: NodeJS.WriteStream): ProgressDisplay {
  const totals = new Totals();
  const multi = new cliProgress.MultiBar(
    {
      stream: out,
      clearOnComplete: false,
      hideCursor: true,
      barsize: 30,
      format: "{label} [{bar}] {value_fmt}/{total_fmt} {note}",
      formatValue: (v, _o, type) => (type === "value" || type === "total" ? formatBytes(v) : String(v)),
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  const totalBar = multi.create(1, 0, { label: "total             ", value_fmt: "", total_fmt: "", note: "" });
  const refresh = () => {
    const moved = totals.moved();
    totalBar.setTotal(Math.max(totals.total, 1));
    totalBar.update(moved, { value_fmt: formatBytes(moved), total_fmt: formatBytes(totals.total), note: totals.line().replace(/^progress: [^,]*/, "").replace(/^ at /, "") });
  };
  return {
    listener: (e) => {
      totals.on(e);
      if (e.type === "blob-start") {
        bars.set(e.digest, multi.create(Math.max(e.size, 1), 0, { label: short(e.digest), value_fmt: formatBytes(0), total_fmt: formatBytes(e.size), note: "" }));
      } else if (e.type === "blob-progress") {
        bars.get(e.digest)?.update(e.bytes, { value_fmt: formatBytes(e.bytes) });
      } else if (e.type === "blob-done") {
        const b = bars.get(e.digest);
        b?.update(Math.max(e.size, 1), { value_fmt: formatBytes(e.size), note: "done" });
        b?.stop();
      } else if (e.type === "blob-skipped") {
        multi.log(`Copying blob ${short(e.digest)} skipped: ${e.reason}\n`);
      } else if (e.type === "warning") {
        multi.log(`warning: ${e.message}\n`);
      } else if (e.type === "image-failed") {
        multi.log(`Failed ${e.image}: ${e.error}\n`);
      }
      refresh();
    },
    stop: () => {
      refresh();
      multi.stop();
    },
  };
}
