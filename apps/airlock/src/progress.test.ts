import { PassThrough } from "node:stream";
import type { Digest } from "@airlock/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { formatDuration, shortenName } from "./progress-board.js";
import { createProgress, formatBytes, progressMode, ttyProgress } from "./progress.js";

const D = `sha256:${"a".repeat(64)}` as Digest;

function sink() {
  const s = new PassThrough() as unknown as NodeJS.WriteStream & { text: string };
  s.text = "";
  (s as unknown as PassThrough).on("data", (c) => {
    s.text += c;
  });
  return s;
}

describe("progress display", () => {
  it("chooses plain lines off a terminal, NDJSON with --json, nothing with --quiet", () => {
    const s = sink();
    expect(progressMode({}, s)).toBe("plain");
    expect(progressMode({ json: true }, s)).toBe("json");
    expect(progressMode({ quiet: true }, s)).toBe("quiet");
  });

  it("in CI prints a line per blob and a periodic total while blobs are in flight", async () => {
    const s = sink();
    const p = createProgress("plain", s, 20);
    p.listener({ type: "blob-start", digest: D, size: 4 * 1024 * 1024 });
    p.listener({ type: "blob-progress", digest: D, bytes: 1024 * 1024, size: 4 * 1024 * 1024 });
    await new Promise((r) => setTimeout(r, 70));
    p.listener({ type: "blob-done", digest: D, size: 4 * 1024 * 1024 });
    p.stop();
    expect(s.text).toMatch(/^Copying blob sha256:a{64} \(4\.0 MiB\)$/m);
    expect(s.text).toMatch(/^progress: 1\.0 MiB \/ 4\.0 MiB at .*\/s, 1 blob\(s\) in flight/m);
    expect(s.text).toMatch(/^Copying blob sha256:aaaaaaaaaaaa done$/m);
  });

  it("with --json writes one JSON event per line", () => {
    const s = sink();
    const p = createProgress("json", s);
    p.listener({ type: "blob-done", digest: D, size: 3 });
    const e = JSON.parse(s.text.trim());
    expect(e).toMatchObject({ type: "blob-done", digest: D, size: 3 });
    expect(typeof e.time).toBe("string");
  });

  it("formats bytes with binary units", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(200 * 1024 * 1024)).toBe("200.0 MiB");
  });
});

/** A fake terminal: records what is written and keeps the screen those writes leave (the escapes readline and cli-progress use). */
function fakeTty(columns = 100, rows = 24) {
  const screen: string[] = [""];
  let row = 0;
  let col = 0;
  let raw = "";
  const put = (ch: string) => {
    while (screen.length <= row) screen.push("");
    const line = (screen[row] as string).padEnd(col);
    screen[row] = line.slice(0, col) + ch + line.slice(col + 1);
    col++;
  };
  const stream = {
    isTTY: true,
    columns,
    rows,
    write(chunk: string | Uint8Array, cb?: unknown) {
      const s = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
      raw += s;
      for (const m of s.matchAll(/\x1b\[(\??)(\d*)([A-Za-z])|\x1b[78]|\n|\r|[^\x1b\n\r]/gu)) {
        const [t, priv, num, op] = m;
        if (t === "\n") {
          row++;
          col = 0;
        } else if (t === "\r") col = 0;
        else if (op && !priv) {
          const n = num === "" ? 1 : Number(num);
          if (op === "A") row = Math.max(0, row - n);
          else if (op === "B") row += n;
          else if (op === "G") col = n - 1;
          else if (op === "K") screen[row] = n === 0 || num === "" ? (screen[row] ?? "").slice(0, col) : "";
          else if (op === "J") {
            screen[row] = (screen[row] ?? "").slice(0, col);
            screen.length = Math.min(screen.length, row + 1);
          }
        } else if (!op && t.length === 1 && t !== "\x1b") put(t);
      }
      if (typeof cb === "function") cb();
      return true;
    },
    get raw() {
      return raw;
    },
    /** The visible lines, trailing blanks dropped. */
    screen() {
      const lines = screen.map((l) => l.trimEnd());
      while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
      return lines;
    },
  };
  return stream;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const dig = (c: string) => `sha256:${c.repeat(64)}` as Digest;

describe("terminal display", () => {
  // Cli-progress and the display redraw on timers; the clock of rates and ETAs is injected.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("draws a line per image (bytes, rate, ETA, state), collapses finished images, shows failures, and counts a shared blob once in the total", () => {
    let clock = 0;
    const tty = fakeTty();
    const p = ttyProgress(tty as unknown as NodeJS.WriteStream, { now: () => clock, keepFinished: 1 });
    const A = "docker://registry.example.com/team/app:1.0";
    const B = "registry.example.com/team/worker:2.0";
    const C = "registry.example.com/team/cron:3.0";
    const shared = dig("5");
    // The next redraw, at the time the clock says.
    const frame = () => {
      vi.advanceTimersByTime(250);
      return tty.screen();
    };
    // As an import announces them: every image with its bytes, a shared base layer in A and B.
    p.listener({ type: "image-start", image: A, blobs: 3, bytes: 6 * MiB + KiB });
    p.listener({ type: "image-start", image: B, blobs: 3, bytes: 5 * MiB + KiB });
    p.listener({ type: "image-start", image: C, blobs: 1, bytes: MiB });
    for (const [d, size] of [[shared, 4 * MiB], [dig("a"), 2 * MiB], [dig("c"), KiB]] as const) p.listener({ type: "blob-start", image: A, digest: d, size });
    p.listener({ type: "blob-done", image: A, digest: dig("c"), size: KiB });
    clock += 2000;
    p.listener({ type: "blob-progress", image: A, digest: shared, bytes: 2 * MiB, size: 4 * MiB });
    p.listener({ type: "blob-progress", image: A, digest: dig("a"), bytes: MiB, size: 2 * MiB });
    let screen = frame();
    expect(screen).toHaveLength(4);
    expect(screen[0]).toMatch(/^copying registry\.example\.com\/team\/app:1\.0 +\[█+░+\] +3\.0 MiB \/ 6\.0 MiB +1\.5 MiB\/s +ETA 2s$/);
    expect(screen[1]).toMatch(/^waiting registry\.example\.com\/team\/worker:2\.0 +5\.0 MiB$/);
    expect(screen[2]).toMatch(/^waiting registry\.example\.com\/team\/cron:3\.0 +1\.0 MiB$/);
    expect(screen[3]).toMatch(/^total {3}0\/3 images +\[[█░]+\] +3\.0 MiB \/ 12\.0 MiB +1\.5 MiB\/s +ETA 6s$/);

    // A finishes; B finds the shared layer already there and pushes its own; C fails.
    p.listener({ type: "blob-done", image: A, digest: shared, size: 4 * MiB });
    p.listener({ type: "blob-done", image: A, digest: dig("a"), size: 2 * MiB });
    p.listener({ type: "image-done", image: A, digest: dig("1") });
    p.listener({ type: "blob-skipped", image: B, digest: shared, size: 4 * MiB, reason: "already exists" });
    p.listener({ type: "blob-start", image: B, digest: dig("b"), size: MiB });
    p.listener({ type: "blob-start", image: B, digest: dig("d"), size: KiB });
    p.listener({ type: "blob-start", image: C, digest: dig("e"), size: MiB });
    clock += 1000;
    p.listener({ type: "blob-progress", image: B, digest: dig("b"), bytes: 512 * KiB, size: MiB });
    p.listener({ type: "image-failed", image: C, error: "unauthorized: authentication required" });
    screen = frame();
    expect(screen[0]).toBe("Failed registry.example.com/team/cron:3.0: unauthorized: authentication required");
    expect(screen.slice(1)).toHaveLength(4);
    expect(screen[1]).toMatch(/^ +… 1 more finished$/);
    expect(screen[2]).toMatch(/^failed {2}registry\.example\.com\/team\/cron:3\.0 +0 B \/ 1\.0 MiB: unauthorized: authentication required$/);
    // B: the shared layer is complete (skipped), its own layer half pushed in its first second.
    expect(screen[3]).toMatch(/^copying registry\.example\.com\/team\/worker:2\.0 +\[█{9}░\] +4\.5 MiB \/ 5\.0 MiB +512\.0 KiB\/s +ETA 2s$/);
    // The shared layer once: 4 + 2 + 1 + 1 MiB known, 6.5 MiB of them complete, moved in 3 s.
    expect(screen[4]).toMatch(/^total {3}2\/3 images, 1 failed +\[█{8}░{2}\] +6\.5 MiB \/ 8\.0 MiB +2\.2 MiB\/s +ETA 1s$/);

    p.listener({ type: "blob-done", image: B, digest: dig("b"), size: MiB });
    p.listener({ type: "blob-done", image: B, digest: dig("d"), size: KiB });
    p.listener({ type: "image-done", image: B, digest: dig("2") });
    clock += 1000;
    p.stop();
    p.stop();
    screen = tty.screen();
    expect(screen).toHaveLength(4);
    expect(screen[1]).toMatch(/^ +… 2 more finished \(1 failed\)$/);
    expect(screen[2]).toMatch(/^done {4}registry\.example\.com\/team\/worker:2\.0 +\[█{10}\] +5\.0 MiB \/ 5\.0 MiB +in 1\.0s$/);
    // The shared layer counts once: 4 + 2 + 1 MiB (and two 1 KiB configs) of 8 MiB, C's layer unfinished.
    expect(screen[3]).toMatch(/^total {3}3\/3 images, 1 failed +\[[█░]+\] +7\.0 MiB \/ 8\.0 MiB/);
    // The cursor is shown again, and nothing is drawn after stop.
    expect(tty.raw.endsWith("\n")).toBe(true);
    expect(tty.raw).toContain("\x1b[?25h");
    const written = tty.raw.length;
    p.listener({ type: "blob-start", image: A, digest: dig("f"), size: 1 });
    vi.advanceTimersByTime(1000);
    expect(tty.raw.length).toBe(written);
  });

  it("keeps to a few lines however many images: waiting and finished ones collapse into counts, names are shortened to the width", () => {
    const clock = 0;
    const tty = fakeTty(60, 24);
    const p = ttyProgress(tty as unknown as NodeJS.WriteStream, { now: () => clock });
    const name = (i: number) => `registry.example.com/platform/team-${i}/services/backend-${i}:1.${i}`;
    // As an export announces them: every image, then the plan (unique bytes), then blobs.
    for (let i = 0; i < 30; i++) p.listener({ type: "image-start", image: name(i) });
    p.listener({ type: "bundle-plan", images: 30, manifests: 30, blobs: 40, bytes: 30 * MiB, duplicateBlobs: 0, duplicateBytes: 0, volumes: 1, size: 31 * MiB, resumed: false });
    for (let i = 0; i < 15; i++) p.listener({ type: "blob-start", image: name(i), digest: dig(i.toString(16)), size: MiB });
    for (let i = 0; i < 10; i++) {
      p.listener({ type: "blob-done", image: name(i), digest: dig(i.toString(16)), size: MiB });
      p.listener({ type: "image-done", image: name(i), digest: dig(i.toString(16)) });
    }
    vi.advanceTimersByTime(250);
    const screen = tty.screen();
    // 24 rows: at most 12 lines, the last few finished, every image copying, a count of the rest.
    expect(screen).toEqual([
      expect.stringMatching(/^ +… 7 more finished$/),
      ...[7, 8, 9].map((i) => expect.stringMatching(new RegExp(`^done +…/services/backend-${i}:1\\.${i} +1\\.0 MiB / 1\\.0 MiB$`))),
      ...[10, 11, 12, 13, 14].map((i) => expect.stringMatching(new RegExp(`^copying …/services/backend-${i}:1\\.${i} +0 B / 1\\.0 MiB$`))),
      expect.stringMatching(/^waiting …\/services\/backend-15:1\.15$/),
      expect.stringMatching(/^ +… 14 more waiting$/),
      expect.stringMatching(/^total {3}10\/30 images +10\.0 MiB \/ 30\.0 MiB$/),
    ]);
    for (const line of screen) expect(line.length).toBeLessThan(60);
    // A wider terminal shows more of the names, and bars.
    const wide = fakeTty(120, 24);
    const q = ttyProgress(wide as unknown as NodeJS.WriteStream, { now: () => clock });
    q.listener({ type: "blob-start", image: name(0), digest: dig("0"), size: MiB });
    vi.advanceTimersByTime(250);
    expect(wide.screen()[0]).toMatch(/^copying registry\.example\.com\/platform\/team-0\/services\/backend-0:1\.0 {2}\[░{20}\] {2}0 B \/ 1\.0 MiB$/);
    q.stop();
    p.stop();
  });

  it("finishes an image the copy pipeline reports (no image-start) at its top-level manifest", () => {
    const tty = fakeTty();
    const p = ttyProgress(tty as unknown as NodeJS.WriteStream, { now: () => 0 });
    const image = "oci:fixtures/oci:multi";
    p.listener({ type: "blob-start", image, digest: dig("a"), size: 2 * KiB });
    p.listener({ type: "blob-done", image, digest: dig("a"), size: 2 * KiB });
    p.listener({ type: "manifest", image, digest: dig("b"), mediaType: "application/vnd.oci.image.manifest.v1+json", topLevel: false });
    vi.advanceTimersByTime(250);
    expect(tty.screen()[0]).toMatch(/^copying oci:fixtures\/oci:multi .* 2\.0 KiB \/ 2\.0 KiB$/);
    p.listener({ type: "manifest", image, digest: dig("c"), mediaType: "application/vnd.oci.image.index.v1+json", topLevel: true });
    p.stop();
    expect(tty.screen()).toEqual([expect.stringMatching(/^done {4}oci:fixtures\/oci:multi .* 2\.0 KiB \/ 2\.0 KiB/), expect.stringMatching(/^total {3}1\/1 image .* 2\.0 KiB \/ 2\.0 KiB$/)]);
  });

  it("prints what others write to the stream above the display while it is live", () => {
    const tty = fakeTty();
    const p = ttyProgress(tty as unknown as NodeJS.WriteStream, { now: () => 0 });
    const image = "oci:/tmp/src:app";
    p.listener({ type: "blob-start", image, digest: dig("a"), size: MiB });
    vi.advanceTimersByTime(250);
    tty.write("Copying image ref 1/1 ");
    tty.write("from=oci:/tmp/src:app\nsecond line\n");
    tty.write("no newline yet");
    p.listener({ type: "blob-progress", image, digest: dig("a"), bytes: MiB / 2, size: MiB });
    vi.advanceTimersByTime(250);
    expect(tty.screen()).toEqual([
      "Copying image ref 1/1 from=oci:/tmp/src:app",
      "second line",
      expect.stringMatching(/^copying oci:\/tmp\/src:app +\[█+░+\] +512\.0 KiB \/ 1\.0 MiB$/),
      expect.stringMatching(/^total {3}0\/1 image +\[█+░+\] +512\.0 KiB \/ 1\.0 MiB$/),
    ]);
    p.stop();
    expect(tty.screen()[2]).toBe("no newline yet");
    // The stream's own write is back.
    const before = tty.raw.length;
    tty.write("after\n");
    expect(tty.raw.slice(before)).toBe("after\n");
  });

  it("shows the images a run left unfinished as stopped", () => {
    const tty = fakeTty();
    const p = ttyProgress(tty as unknown as NodeJS.WriteStream, { now: () => 0 });
    p.listener({ type: "image-start", image: "team/a:1", bytes: 2 * KiB });
    p.listener({ type: "image-start", image: "team/b:1", bytes: KiB });
    p.listener({ type: "blob-start", image: "team/a:1", digest: dig("a"), size: 2 * KiB });
    p.listener({ type: "blob-progress", image: "team/a:1", digest: dig("a"), bytes: KiB, size: 2 * KiB });
    p.stop();
    expect(tty.screen()).toEqual([
      expect.stringMatching(/^stopped team\/a:1 +\[█+░+\] +1\.0 KiB \/ 2\.0 KiB$/),
      expect.stringMatching(/^stopped team\/b:1 +\[░+\] +0 B \/ 1\.0 KiB$/),
      expect.stringMatching(/^total {3}0\/2 images +\[█+░+\] +1\.0 KiB \/ 3\.0 KiB$/),
    ]);
  });

  it("writes nothing when stopped before any event", () => {
    const tty = fakeTty();
    ttyProgress(tty as unknown as NodeJS.WriteStream).stop();
    expect(tty.raw).toBe("");
  });
});

describe("image names on a terminal", () => {
  it("are shortened keeping the host, the repository's last segment and the tag", () => {
    expect(shortenName("docker://quay.io/prometheus/node-exporter:v1.8.2", 40)).toBe("quay.io/prometheus/node-exporter:v1.8.2");
    expect(shortenName("registry.example.com/platform/team/services/backend:1.2", 40)).toBe("registry.example.com/…/backend:1.2");
    expect(shortenName("registry.example.com/platform/team/services/backend:1.2", 44)).toBe("registry.example.com/…/services/backend:1.2");
    expect(shortenName(`quay.io/a/b@sha256:${"0123456789ab".repeat(5)}0123`, 60)).toBe("quay.io/a/b@sha256:0123456789ab");
    expect(shortenName("registry.example.com/platform/a-very-long-repository-name:tag", 20)).toBe("…/a-very-long-repository-name:tag".slice(-20).replace(/^./, "…"));
    expect(formatDuration(59.2)).toBe("1m00s");
    expect(formatDuration(3725)).toBe("1h02m");
  });
});
