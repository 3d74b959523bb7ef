import { PassThrough } from "node:stream";
import type { Digest } from "@airlock/core";
import { describe, expect, it } from "vitest";
import { createProgress, formatBytes, progressMode } from "./progress.js";

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
