/**
 * Resume inside a blob. The real `airlock` binary is SIGKILLed in the middle of a 32 MiB layer —
 * an export while the layer downloads, an import while it is pushed in chunks — and the same
 * command runs again (in this process). Counting proxies in front of docker-registry show that
 * the second run moves less than the layer's size, and the results equal an uninterrupted run.
 * Within one process: a download cut mid-blob continues with a Range request, and a chunk cut
 * mid-PATCH is re-sent from the archive (distribution drops such a session: a new one starts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { copyImage, type Digest, exportBundle, importBundle, importJournalPath, parseImageName, RegistryClient, UPLOAD_CHUNK_SIZE_ENV } from "@airlock/core";
import { serve } from "@airlock/registry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultProxy, type ProxiedRequest, startFaultProxy } from "../harness/proxy.js";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { AIRLOCK_BIN, runCli } from "../support/cli.js";
import { generatedImage, randomStream } from "../support/generated-image.js";
import { describeBundle } from "./bundle-compare.js";
import { type CountedRequest, type CountingProxy, startCountingProxy } from "./counting-proxy.js";

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
const CHUNK = 2 * MiB;
const tmp = mkdtempSync(join(tmpdir(), "airlock-byte-resume-"));
const state = join(tmp, "state");
let src: RunningRegistry;
let dst: RunningRegistry;
let up: CountingProxy;
let down: CountingProxy;
let layer: Digest;
let yaml: string;
let ref: string;
/** What the proxies do to the layer while a test wants it: pace its download, or act on a complete PATCH. */
let paceLayer = false;
let ignoreRange = false;
let onLayerBytes: ((r: CountedRequest) => void) | undefined;
let onPatch: ((r: CountedRequest) => "drop" | undefined) | undefined;

const isLayerGet = (method: string, url: string) => method === "GET" && decodeURIComponent(url).includes(`/blobs/${layer}`);

beforeAll(async () => {
  [src, dst] = await Promise.all([startRegistry({ mode: "plain" }), startRegistry({ mode: "plain" })]);
  const img = await generatedImage("byte-resume", SIZE);
  layer = img.manifest.image.layers[0]?.digest as Digest;
  expect(img.manifest.image.layers[0]?.size).toBe(SIZE);
  await copyImage(img, parseImageName(`docker://${src.host}/up/big:1`), {});
  up = await startCountingProxy(src.url, () => 0, {
    paceBytesPerSecond: (m, url) => (paceLayer && isLayerGet(m, url) ? 24 * MiB : undefined),
    stripRange: () => ignoreRange,
    onResponseBytes: (r) => (isLayerGet(r.method, r.url) ? onLayerBytes?.(r) : undefined),
  });
  down = await startCountingProxy(dst.url, () => 0, {
    bufferRequest: (m) => m === "PATCH",
    onRequestBody: (r) => onPatch?.(r),
  });
  yaml = join(tmp, "images.yaml");
  writeFileSync(yaml, `version: 1\nregistries:\n  "${up.host}": { tlsVerify: false }\nimages:\n  - name: ${up.host}/up/big\n    tags: ["1"]\n`);
  ref = join(tmp, "ref", "bundle.tar");
  mkdirSync(join(tmp, "ref"));
  const a = await runCli(["export", "-f", yaml, "-o", ref, "-q"]);
  expect(a.code, a.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  await Promise.all([up?.stop(), down?.stop(), src?.stop(), dst?.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs the binary; `arm` gets the child so the test can SIGKILL it at the right moment. */
function runKilled(args: string[], arm: (child: ChildProcess) => void, env: Record<string, string> = {}): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AIRLOCK_BIN, ...args], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
    let stderr = "";
    child.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    arm(child);
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ signal, stderr: `exit ${code}: ${stderr}` }));
  });
}

/** Runs `fn` with environment variables set (the in-process CLI reads them), restoring them after. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.keys(vars).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

let refDescribed: Promise<string[]> | undefined;
/** The reference bundle's description (computed once). */
const refDescription = () => {
  refDescribed ??= describeBundle(ref);
  return refDescribed;
};

const layerGets = (log: CountedRequest[]) => log.filter((r) => isLayerGet(r.method, r.url));
const sum = (rs: CountedRequest[], k: "sent" | "received") => rs.reduce((n, r) => n + r[k], 0);

async function sha256Of(client: RegistryClient, repo: string, digest: string): Promise<string> {
  const { stream } = await client.repository(repo).getBlob(digest);
  const h = createHash("sha256");
  for await (const c of stream) h.update(c as Buffer);
  return `sha256:${h.digest("hex")}`;
}

describe("resume inside a blob", () => {
  it("export: SIGKILL mid-layer, rerun fetches only the rest with a Range request; the bundle equals an uninterrupted one", async () => {
    const out = join(tmp, "resumed", "bundle.tar");
    mkdirSync(join(tmp, "resumed"));
    paceLayer = true;
    const first = await runKilled(["export", "-f", yaml, "-o", out, "-q"], (child) => {
      onLayerBytes = (r) => {
        if (r.received >= 12 * MiB) child.kill("SIGKILL");
      };
    });
    paceLayer = false;
    onLayerBytes = undefined;
    expect(first.signal, first.stderr).toBe("SIGKILL");
    expect(existsSync(out)).toBe(false);
    const journal = JSON.parse(readFileSync(`${out}.journal.json`, "utf8")) as { partial?: Record<string, number> };
    const kept = journal.partial?.[layer] ?? 0;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(SIZE);

    const before = up.log.length;
    const second = await runCli(["export", "-f", yaml, "-o", out, "-q"]);
    expect(second.code, second.stderr).toBe(0);
    const gets = layerGets(up.log.slice(before));
    expect(gets.length).toBe(1);
    expect(gets[0]?.headers.range).toBe(`bytes=${kept}-`);
    expect(sum(gets, "received")).toBe(SIZE - kept);
    expect(sum(gets, "received")).toBeLessThan(SIZE);
    expect((await runCli(["verify", out])).code).toBe(0);
    expect(await describeBundle(out)).toEqual(await refDescription());
  });

  it("import: SIGKILL mid-chunked-upload, rerun continues the upload session; less than the layer is sent again and every digest matches", async () => {
    const to = `${down.host}/mirror`;
    const env = { XDG_STATE_HOME: state, [UPLOAD_CHUNK_SIZE_ENV]: String(CHUNK) };
    // The 6th chunk of the layer arrives whole at the proxy: the importer is killed, and the chunk never reaches the registry.
    let patches = 0;
    const first = await runKilled(["import", ref, "--to", to, "--dest-tls-verify=false", "-q"], (child) => {
      onPatch = () => {
        if (++patches < 6) return undefined;
        child.kill("SIGKILL");
        return "drop";
      };
    }, env);
    onPatch = undefined;
    expect(first.signal, first.stderr).toBe("SIGKILL");
    const journalFile = importJournalPath(ref).replace(/^.*\/airlock\/imports\//, `${state}/airlock/imports/`);
    const journal = JSON.parse(readFileSync(journalFile, "utf8")) as { uploads: Record<string, { offset: number }> };
    expect(Object.values(journal.uploads).map((u) => u.offset)).toEqual([5 * CHUNK]);

    const before = down.log.length;
    const second = await withEnv(env, () => runCli(["import", ref, "--to", to, "--dest-tls-verify=false", "-q"]));
    expect(second.code, second.stderr).toBe(0);
    const log = down.log.slice(before);
    const patchesAgain = log.filter((r) => r.method === "PATCH");
    expect(patchesAgain[0]?.headers["content-range"]).toBe(`${5 * CHUNK}-${6 * CHUNK - 1}`);
    expect(sum(patchesAgain, "sent")).toBe(SIZE - 5 * CHUNK);
    expect(log.filter((r) => r.method === "POST").length).toBe(0); // no new session
    expect(existsSync(journalFile)).toBe(false);

    const repo = `mirror/${up.host.replace(":", "_")}/up/big`;
    const c = new RegistryClient(src.host, { tlsVerify: false });
    const d = new RegistryClient(dst.host, { tlsVerify: false });
    try {
      expect((await d.repository(repo).headManifest("1"))?.digest).toBe((await c.repository("up/big").headManifest("1"))?.digest);
      expect(await sha256Of(d, repo, layer)).toBe(layer);
    } finally {
      await c.close();
      await d.close();
    }
  });
});

describe("resume inside a blob: an interrupt", () => {
  it("import: SIGINT mid-chunk straight to distribution lets the chunk finish, so the rerun continues the session", async () => {
    let patches = 0;
    let child: ChildProcess | undefined;
    const direct = await startCountingProxy(dst.url, () => 0, {
      onRequest: (r) => {
        if (r.method === "PATCH" && ++patches === 6) child?.kill("SIGINT");
      },
    });
    try {
      const to = `${direct.host}/direct`;
      const env = { XDG_STATE_HOME: join(tmp, "state-int"), [UPLOAD_CHUNK_SIZE_ENV]: String(CHUNK) };
      const first = await runKilled(["import", ref, "--to", to, "--dest-tls-verify=false", "-q"], (c) => {
        child = c;
      }, env);
      expect(first.signal).toBe(null);
      expect(first.stderr).toMatch(/^exit 1: .*interrupted/s);
      const before = direct.log.length;
      const second = await withEnv(env, () => runCli(["import", ref, "--to", to, "--dest-tls-verify=false", "-q"]));
      expect(second.code, second.stderr).toBe(0);
      const log = direct.log.slice(before);
      const again = log.filter((r) => r.method === "PATCH");
      expect(again[0]?.headers["content-range"]).toBe(`${6 * CHUNK}-${7 * CHUNK - 1}`);
      expect(sum(again, "sent")).toBe(SIZE - 6 * CHUNK);
      expect(log.filter((r) => r.method === "POST").length).toBe(0);
      const d = new RegistryClient(dst.host, { tlsVerify: false });
      try {
        expect(await sha256Of(d, `direct/${up.host.replace(":", "_")}/up/big`, layer)).toBe(layer);
      } finally {
        await d.close();
      }
    } finally {
      await direct.stop();
    }
  });
});

describe("resume inside a blob: what a registry may not allow", () => {
  const images = () => [{ source: parseImageName(`docker://${up.host}/up/big:1`), name: `${up.host}/up/big:1` }];
  const ctx = { docker: { tlsVerify: false } };

  /** Exports into `out` and aborts it 12 MiB into the layer; returns the bytes the journal kept, after spoiling the first 4 KiB of them on disk. */
  async function abortMidLayerAndSpoil(out: string): Promise<number> {
    const stop = new AbortController();
    paceLayer = true;
    onLayerBytes = (r) => {
      if (r.received >= 12 * MiB) stop.abort();
    };
    const err = await exportBundle(images(), out, { ctx, signal: stop.signal }).catch((e: unknown) => e);
    paceLayer = false;
    onLayerBytes = undefined;
    expect(err).toBeInstanceOf(Error);
    const kept = (JSON.parse(readFileSync(`${out}.journal.json`, "utf8")) as { partial?: Record<string, number> }).partial?.[layer] ?? 0;
    expect(kept).toBeGreaterThan(4096);
    // The layer's first bytes, found in the partial archive and overwritten.
    const head = (await randomStream("byte-resume", 4096).toArray())[0] as Buffer;
    const partial = readFileSync(`${out}.partial`);
    const at = partial.indexOf(head);
    expect(at).toBeGreaterThan(0);
    const fd = openSync(`${out}.partial`, "r+");
    try {
      writeSync(fd, Buffer.alloc(4096), 0, 4096, at);
    } finally {
      closeSync(fd);
    }
    return kept;
  }

  /** The blobs of bundle `out` are those of the reference bundle, in the same places. */
  const sameBlobs = async (out: string) => {
    const blobs = (lines: string[]) => lines.filter((l) => l.startsWith("blobs/"));
    expect(blobs(await describeBundle(out))).toEqual(blobs(await refDescription()));
  };

  it("export: a source that ignores Range sends the whole layer, written from its start (the kept bytes are not used)", async () => {
    const out = join(tmp, "norange", "bundle.tar");
    const kept = await abortMidLayerAndSpoil(out);
    ignoreRange = true;
    const before = up.log.length;
    try {
      const res = await exportBundle(images(), out, { ctx });
      expect(res.bytesWritten).toBe(SIZE); // the layer whole (the config was finished by the first run)
    } finally {
      ignoreRange = false;
    }
    // One request for the rest, answered with the whole layer: the spoiled bytes were overwritten, no retry needed.
    const gets = layerGets(up.log.slice(before));
    expect(gets.map((g) => g.headers.range)).toEqual([`bytes=${kept}-`]);
    expect(sum(gets, "received")).toBe(SIZE);
    expect((await runCli(["verify", out])).code).toBe(0);
    await sameBlobs(out);
  });

  it("export: kept bytes are hashed again from disk; spoiled ones fail the digest and the layer is fetched again from its start", async () => {
    const out = join(tmp, "spoiled", "bundle.tar");
    const kept = await abortMidLayerAndSpoil(out);
    const before = up.log.length;
    const res = await exportBundle(images(), out, { ctx });
    expect(res.bytesWritten).toBe(SIZE);
    const gets = layerGets(up.log.slice(before));
    expect(gets.map((g) => g.headers.range)).toEqual([`bytes=${kept}-`, undefined]);
    expect(sum(gets, "received")).toBe(SIZE - kept + SIZE);
    expect((await runCli(["verify", out])).code).toBe(0);
    await sameBlobs(out);
  });

  it("import: a recorded session the registry no longer has is left for a new upload", async () => {
    const dest = parseImageName(`docker://${down.host}/gone/big:1`);
    const journalFile = join(tmp, "gone-journal.json");
    const stale = { location: `http://${down.host}/v2/gone/big/blobs/uploads/${randomUUID()}?_state=stale`, offset: 4 * CHUNK };
    writeFileSync(journalFile, JSON.stringify({ version: 1, bundle: resolve(ref), uploads: { [`${dest}@${layer}`]: stale } }));
    const before = down.log.length;
    const res = await withEnv({ [UPLOAD_CHUNK_SIZE_ENV]: String(CHUNK) }, () => importBundle(ref, { destinationFor: () => dest, ctx: { docker: { tlsVerify: false } }, journal: journalFile }));
    expect(res.blobsPushed).toBe(2);
    const log = down.log.slice(before);
    expect(log.some((r) => r.method === "GET" && r.url.includes("_state=stale"))).toBe(true);
    const patches = log.filter((r) => r.method === "PATCH");
    expect(patches[0]?.headers["content-range"]).toBe(`0-${CHUNK - 1}`);
    expect(sum(patches, "sent")).toBe(SIZE);
    expect(existsSync(journalFile)).toBe(false);
    const d = new RegistryClient(dst.host, { tlsVerify: false });
    try {
      expect(await sha256Of(d, "gone/big", layer)).toBe(layer);
    } finally {
      await d.close();
    }
  });
});

describe("resume inside a blob, within one process", () => {
  let fault: FaultProxy | undefined;
  afterAll(async () => {
    await fault?.stop();
  });

  it("export: a layer download cut by the connection continues with a Range request", async () => {
    const isGet = (r: ProxiedRequest) => r.method === "GET" && r.url.includes(`/blobs/${layer}`);
    fault = await startFaultProxy(src.url, (r, all) => (isGet(r) && all.filter(isGet).length === 1 ? { cutResponseAfter: 20 * MiB } : undefined));
    const out = join(tmp, "cut", "bundle.tar");
    const res = await exportBundle([{ source: parseImageName(`docker://${fault.host}/up/big:1`), name: "big:1" }], out, { ctx: { docker: { tlsVerify: false } } });
    expect(res.bytesWritten).toBe(res.blobBytes);
    const ranges = fault.requests.filter(isGet).map((r) => r.headers.range);
    expect(ranges.length).toBe(2);
    expect(ranges[0]).toBeUndefined();
    expect(Number(/^bytes=(\d+)-$/.exec(String(ranges[1]))?.[1])).toBeGreaterThan(0);
    expect((await runCli(["verify", out])).code).toBe(0);
    await fault.stop();
    fault = undefined;
  });

  it("import: a chunk cut mid-PATCH is sent again from the archive on a new session (distribution dropped the old one); nothing kept in memory", async () => {
    const isPatch = (r: ProxiedRequest) => r.method === "PATCH";
    fault = await startFaultProxy(dst.url, (r, all) => (isPatch(r) && all.filter(isPatch).length === 3 ? { cutRequestAfter: 1 * MiB } : undefined));
    const host = fault.host;
    const res = await withEnv({ [UPLOAD_CHUNK_SIZE_ENV]: String(CHUNK) }, () =>
      // The retry waits a little: distribution must be done with the cut request before it is asked about the session.
      importBundle(ref, { destinationFor: () => parseImageName(`docker://${host}/cut/big:1`), ctx: { docker: { tlsVerify: false, retryDelayMs: 300 } }, journal: false }),
    );
    expect(res.blobsPushed).toBe(2);
    // Two chunks, the cut third, then a new session from byte 0.
    const uploads = fault.requests.filter((r) => r.url.includes("/blobs/uploads/"));
    expect(uploads.filter((r) => r.method === "POST").length).toBeGreaterThanOrEqual(3); // config, layer, layer again
    const ranges = uploads.filter(isPatch).map((r) => r.headers["content-range"]);
    expect(ranges.slice(0, 4)).toEqual([`0-${CHUNK - 1}`, `${CHUNK}-${2 * CHUNK - 1}`, `${2 * CHUNK}-${3 * CHUNK - 1}`, `0-${CHUNK - 1}`]);
    const d = new RegistryClient(dst.host, { tlsVerify: false });
    try {
      expect(await sha256Of(d, "cut/big", layer)).toBe(layer);
    } finally {
      await d.close();
    }
  });

  it("import: against a registry that keeps a cut upload's good chunks (airlock serve), the chunk goes on from the offset it reports, on the same session", async () => {
    const served = await serve({ root: join(tmp, "served"), listen: "127.0.0.1:0" });
    const isPatch = (r: ProxiedRequest) => r.method === "PATCH";
    const p = await startFaultProxy(served.url, (r, all) => (isPatch(r) && all.filter(isPatch).length === 3 ? { cutRequestAfter: 1 * MiB } : undefined));
    try {
      const res = await withEnv({ [UPLOAD_CHUNK_SIZE_ENV]: String(CHUNK) }, () =>
        importBundle(ref, { destinationFor: () => parseImageName(`docker://${p.host}/kept/big:1`), ctx: { docker: { tlsVerify: false, retryDelayMs: 300 } }, journal: false }),
      );
      expect(res.blobsPushed).toBe(2);
      const uploads = p.requests.filter((r) => r.url.includes("/blobs/uploads/"));
      expect(uploads.filter((r) => r.method === "POST").length).toBe(2); // config and layer: no second session
      const ranges = uploads.filter(isPatch).map((r) => r.headers["content-range"]);
      expect(ranges.slice(0, 4)).toEqual([`0-${CHUNK - 1}`, `${CHUNK}-${2 * CHUNK - 1}`, `${2 * CHUNK}-${3 * CHUNK - 1}`, `${2 * CHUNK}-${3 * CHUNK - 1}`]);
      const c = new RegistryClient(served.host, { tlsVerify: false });
      try {
        expect(await sha256Of(c, "kept/big", layer)).toBe(layer);
      } finally {
        await c.close();
      }
    } finally {
      await p.stop();
      await served.close();
    }
  });
});
