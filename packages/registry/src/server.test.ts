/**
 * What airlock's registry does beyond the conformance suite: the OCI layout it keeps (readable by
 * skopeo, servable as written by `airlock copy`), read-only mode, disabled deletes, the access
 * log, concurrent pushes, interrupted pushes, leftover uploads, and that no request can make it
 * write outside its store.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, promises as fs } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { copyImage, OciLayout, parseImageName } from "@airlock/core";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { createRegistryServer, type RegistryServerOptions } from "./server.js";
import { LayoutRegistryStore, UPLOADS_DIR } from "./store/layout.js";
import { RECORDS_DIR } from "./store/records.js";

const execFileP = promisify(execFile);
const FIXTURES = join(import.meta.dirname, "..", "..", "..", "fixtures", "oci");
const sha256 = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

const root = mkdtempSync(join(tmpdir(), "airlock-registry-"));
afterAll(() => fs.rm(root, { recursive: true, force: true }));

let n = 0;
/** A fresh store directory and a server over it. */
async function start(options: Partial<RegistryServerOptions> & { dir?: string } = {}) {
  const dir = options.dir ?? join(root, `store-${n++}`);
  const store = await LayoutRegistryStore.open(dir, { create: !options.readOnly });
  const log: string[] = [];
  const server = createRegistryServer({ store, log: (l) => log.push(l), ...options });
  const { url } = await server.listen("127.0.0.1:0");
  return { dir, url, server, log, store };
}

async function pushBlob(url: string, repo: string, data: Buffer): Promise<string> {
  const r = await fetch(`${url}/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, { method: "POST", body: data });
  expect(r.status).toBe(201);
  return sha256(data);
}

async function pushImage(url: string, repo: string, tag: string): Promise<{ digest: string; manifest: Buffer; blobs: string[] }> {
  const config = Buffer.from(JSON.stringify({ os: "linux", tag, n: randomBytes(4).toString("hex") }));
  const layer = randomBytes(1000);
  await pushBlob(url, repo, config);
  await pushBlob(url, repo, layer);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256(layer), size: layer.length }],
    }),
  );
  const r = await fetch(`${url}/v2/${repo}/manifests/${tag}`, { method: "PUT", headers: { "Content-Type": OCI_MANIFEST }, body: manifest });
  expect(r.status).toBe(201);
  return { digest: sha256(manifest), manifest, blobs: [sha256(config), sha256(layer)] };
}

async function errorCode(r: Response): Promise<string | undefined> {
  return ((await r.json()) as { errors?: { code: string }[] }).errors?.[0]?.code;
}

/** Every file under `dir`, relative, sorted. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  }
  return out.sort();
}

describe("the OCI layout it keeps", () => {
  it("names tags REPOSITORY:TAG in index.json, keeps repository records beside, and skopeo reads it", async () => {
    const s = await start();
    try {
      const img = await pushImage(s.url, "team/app", "1.0");
      const index = await (await OciLayout.open(s.dir)).readIndex();
      expect(index.manifests).toEqual([expect.objectContaining({ digest: img.digest, mediaType: OCI_MANIFEST, annotations: { "org.opencontainers.image.ref.name": "team/app:1.0" } })]);
      const record = JSON.parse(await fs.readFile(join(s.dir, RECORDS_DIR, "team%2Fapp.json"), "utf8")) as { manifests: Record<string, string>; blobs: string[] };
      expect(record.manifests[img.digest]).toBe(OCI_MANIFEST);
      expect(record.blobs.sort()).toEqual([...img.blobs].sort());
      const { stdout } = await execFileP("skopeo", ["inspect", "--raw", `oci:${s.dir}:team/app:1.0`], { encoding: "buffer" });
      expect(sha256(stdout)).toBe(img.digest);
    } finally {
      await s.server.close();
    }
  });

  it("serves what `airlock copy … oci:STORE:REPOSITORY:TAG` wrote, and mounts its blobs into other repositories", async () => {
    const dir = join(root, "copied");
    const copied = await copyImage(parseImageName(`oci:${FIXTURES}:single`), parseImageName(`oci:${dir}:team/app:2.0`));
    const s = await start({ dir });
    try {
      const r = await fetch(`${s.url}/v2/team/app/manifests/2.0`, { headers: { Accept: OCI_MANIFEST } });
      expect(r.status).toBe(200);
      expect(r.headers.get("docker-content-digest")).toBe(copied.digest);
      const manifest = JSON.parse(await r.text()) as { layers: { digest: string }[] };
      const layer = manifest.layers[0]!.digest;
      expect((await fetch(`${s.url}/v2/team/app/blobs/${layer}`, { method: "HEAD" })).status).toBe(200);
      expect((await fetch(`${s.url}/v2/other/blobs/${layer}`, { method: "HEAD" })).status).toBe(404);
      const mount = await fetch(`${s.url}/v2/other/blobs/uploads/?mount=${layer}&from=team/app`, { method: "POST" });
      expect(mount.status).toBe(201);
      expect((await fetch(`${s.url}/v2/other/blobs/${layer}`, { method: "HEAD" })).status).toBe(200);
      expect(await (await fetch(`${s.url}/v2/_catalog`)).json()).toEqual({ repositories: ["other", "team/app"] });
    } finally {
      await s.server.close();
    }
  });

  it("moves a tag by replacing its index.json entry; the old manifest stays pullable by digest", async () => {
    const s = await start();
    try {
      const a = await pushImage(s.url, "app", "latest");
      const b = await pushImage(s.url, "app", "latest");
      const names = (await (await OciLayout.open(s.dir)).readIndex()).manifests.map((m) => [m.digest, m.annotations?.["org.opencontainers.image.ref.name"]]);
      expect(names).toEqual([[b.digest, "app:latest"]]);
      expect((await fetch(`${s.url}/v2/app/manifests/${a.digest}`, { method: "HEAD" })).status).toBe(200);
      expect((await fetch(`${s.url}/v2/app/manifests/latest`, { method: "HEAD" })).headers.get("docker-content-digest")).toBe(b.digest);
    } finally {
      await s.server.close();
    }
  });
});

describe("modes", () => {
  it("read-only: every write is 405 DENIED and nothing changes on disk", async () => {
    const rw = await start();
    const img = await pushImage(rw.url, "app", "v1");
    await rw.server.close();
    const before = await files(rw.dir);
    const s = await start({ dir: rw.dir, readOnly: true });
    try {
      expect((await fetch(`${s.url}/v2/app/manifests/v1`, { headers: { Accept: OCI_MANIFEST } })).status).toBe(200);
      const attempts: [string, string, Buffer?][] = [
        ["POST", "/v2/app/blobs/uploads/"],
        ["POST", `/v2/app/blobs/uploads/?digest=${sha256("x")}`, Buffer.from("x")],
        ["PUT", "/v2/app/manifests/v2", img.manifest],
        ["DELETE", `/v2/app/manifests/${img.digest}`],
        ["DELETE", "/v2/app/manifests/v1"],
        ["PATCH", "/v2/app/blobs/uploads/abc"],
      ];
      for (const [method, path, body] of attempts) {
        const r = await fetch(`${s.url}${path}`, { method, ...(body ? { body } : {}) });
        expect(r.status, `${method} ${path}`).toBe(405);
        expect(await errorCode(r)).toBe("DENIED");
      }
      expect(await files(rw.dir)).toEqual(before);
    } finally {
      await s.server.close();
    }
  });

  it("deletes disabled: DELETE is 405 UNSUPPORTED and the manifest stays", async () => {
    const s = await start({ deleteEnabled: false });
    try {
      const img = await pushImage(s.url, "app", "v1");
      for (const ref of [img.digest, "v1"]) {
        const r = await fetch(`${s.url}/v2/app/manifests/${ref}`, { method: "DELETE" });
        expect(r.status).toBe(405);
        expect(await errorCode(r)).toBe("UNSUPPORTED");
      }
      expect((await fetch(`${s.url}/v2/app/manifests/v1`, { method: "HEAD" })).status).toBe(200);
      const blob = await fetch(`${s.url}/v2/app/blobs/${img.blobs[0]}`, { method: "DELETE" });
      expect(blob.status).toBe(405);
    } finally {
      await s.server.close();
    }
  });

  it("logs one line per request: client, user, time, request line, status, bytes, duration", async () => {
    const s = await start();
    try {
      await fetch(`${s.url}/v2/`);
      await fetch(`${s.url}/v2/nope/tags/list`);
      await new Promise((r) => setTimeout(r, 20));
      expect(s.log).toHaveLength(2);
      expect(s.log[0]).toMatch(/^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET \/v2\/ HTTP\/1\.1" 200 2 \d+\.\dms$/);
      expect(s.log[1]).toMatch(/"GET \/v2\/nope\/tags\/list HTTP\/1\.1" 404 \d+ /);
    } finally {
      await s.server.close();
    }
  });
});

describe("writes", () => {
  it("concurrent pushes to one repository lose nothing (two servers on one store)", async () => {
    const a = await start();
    const b = await start({ dir: a.dir });
    try {
      const pushes = Array.from({ length: 16 }, (_, i) => pushImage(i % 2 ? a.url : b.url, "busy/repo", `t${String(i).padStart(2, "0")}`));
      const images = await Promise.all(pushes);
      const tags = (await (await fetch(`${a.url}/v2/busy/repo/tags/list`)).json()) as { tags: string[] };
      expect(tags.tags).toEqual(Array.from({ length: 16 }, (_, i) => `t${String(i).padStart(2, "0")}`));
      const index = await (await OciLayout.open(a.dir)).readIndex();
      expect(index.manifests).toHaveLength(16);
      for (const img of images) {
        for (const blob of img.blobs) expect((await fetch(`${b.url}/v2/busy/repo/blobs/${blob}`, { method: "HEAD" })).status).toBe(200);
      }
    } finally {
      await a.server.close();
      await b.server.close();
    }
  });

  it("an interrupted push leaves no blob, no upload file, and a chunked upload resumes from its last good chunk", async () => {
    const s = await start();
    try {
      const data = randomBytes(200_000);
      const digest = sha256(data);
      // A single-request upload cut off half-way.
      await abortedRequest(`${s.url}/v2/app/blobs/uploads/?digest=${digest}`, "POST", data.length, data.subarray(0, 100_000));
      // A chunk cut off half-way.
      const start = await fetch(`${s.url}/v2/app/blobs/uploads/`, { method: "POST" });
      const loc = start.headers.get("location")!;
      const p1 = await fetch(`${s.url}${loc}`, { method: "PATCH", headers: { "Content-Range": "0-49999", "Content-Type": "application/octet-stream" }, body: data.subarray(0, 50_000) });
      expect(p1.status).toBe(202);
      await abortedRequest(`${s.url}${loc}`, "PATCH", 100_000, data.subarray(50_000, 120_000), { "Content-Range": "50000-149999" });
      await new Promise((r) => setTimeout(r, 50));
      expect((await fetch(`${s.url}/v2/app/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
      expect(await fs.stat(s.store.layout.blobPath(digest)).catch(() => undefined)).toBeUndefined();
      const status = await fetch(`${s.url}${loc}`);
      expect(status.headers.get("range")).toBe("0-49999");
      const uploads = (await files(join(s.dir, UPLOADS_DIR))).map((f) => fs.stat(join(s.dir, UPLOADS_DIR, f)));
      expect((await Promise.all(uploads)).map((st) => st.size)).toEqual([50_000]);
      const put = await fetch(`${s.url}${loc}?digest=${digest}`, { method: "PUT", headers: { "Content-Range": "50000-199999" }, body: data.subarray(50_000) });
      expect(put.status).toBe(201);
      expect(Buffer.from(await (await fetch(`${s.url}/v2/app/blobs/${digest}`)).arrayBuffer()).equals(data)).toBe(true);
      expect(await files(join(s.dir, UPLOADS_DIR))).toEqual([]);
    } finally {
      await s.server.close();
    }
  });

  it("removes the upload files of servers that are gone when it starts, and its own when it stops", async () => {
    const dir = join(root, "leftovers");
    await LayoutRegistryStore.open(dir);
    await fs.mkdir(join(dir, UPLOADS_DIR, "999999999.dead"), { recursive: true });
    await fs.writeFile(join(dir, UPLOADS_DIR, "999999999.dead", "partial"), "half a blob");
    await fs.mkdir(join(dir, UPLOADS_DIR, "junk"));
    const s = await start({ dir });
    const mine = await fs.readdir(join(dir, UPLOADS_DIR));
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatch(new RegExp(`^${process.pid}\\.`));
    await s.server.close();
    expect(await fs.readdir(join(dir, UPLOADS_DIR))).toEqual([]);
  });
});

describe("no request writes outside the store", () => {
  let s: Awaited<ReturnType<typeof start>>;
  let parent: string;
  beforeEach(async () => {
    parent = mkdtempSync(join(root, "jail-"));
    s = await start({ dir: join(parent, "store") });
  });
  afterEach(() => s.server.close());

  it("traversal in names, tags, digests and upload ids is answered with the spec's error", async () => {
    const data = Buffer.from("payload");
    const attempts: [string, string, string][] = [
      ["POST", `/v2/..%2F..%2Fescape/blobs/uploads/?digest=${sha256(data)}`, "NAME_INVALID"],
      ["POST", `/v2/a/../../escape/blobs/uploads/?digest=${sha256(data)}`, "NAME_INVALID"],
      ["PUT", "/v2/app/manifests/..%2F..%2Fescape", "MANIFEST_INVALID"],
      ["PUT", "/v2/app/manifests/sha256:..%2F..%2Fescape", "DIGEST_INVALID"],
      ["POST", "/v2/app/blobs/uploads/?digest=sha256:..%2F..%2F..%2Fescape", "DIGEST_INVALID"],
      ["POST", "/v2/app/blobs/uploads/?digest=sha512:..%2F..%2Fescape", "DIGEST_INVALID"],
      ["POST", "/v2/app/blobs/uploads/?mount=sha256:..%2Fescape&from=app", "DIGEST_INVALID"],
      ["PATCH", "/v2/app/blobs/uploads/..%2F..%2F..%2Fescape", "BLOB_UPLOAD_UNKNOWN"],
      ["PUT", `/v2/app/blobs/uploads/..%2F..%2Fescape?digest=${sha256(data)}`, "BLOB_UPLOAD_UNKNOWN"],
      ["GET", "/v2/app/referrers/sha256:..%2F..%2Fescape", "DIGEST_INVALID"],
    ];
    for (const [method, path, code] of attempts) {
      const r = await rawRequest(`${s.url}${path}`, method, data);
      expect([r.status, r.code], `${method} ${path}`).toEqual([expect.any(Number), code]);
      expect(r.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
    }
    expect((await fs.readdir(parent)).sort()).toEqual(["store"]);
    const stored = (await files(join(parent, "store"))).filter((f) => f.startsWith("blobs/"));
    expect(stored).toEqual([]);
  });
});

/** Sends a request with a raw (unnormalised) path. */
function rawRequest(url: string, method: string, body: Buffer): Promise<{ status: number; code: string | undefined }> {
  const u = new URL(url);
  const path = url.slice(url.indexOf("/", "http://".length));
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers: { "Content-Length": String(body.length) } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(text) as { errors: { code: string }[] }).errors[0]?.code;
        } catch {}
        resolve({ status: res.statusCode ?? 0, code });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Sends `declared` bytes' worth of headers but only `part` of the body, then cuts the connection. */
function abortedRequest(url: string, method: string, declared: number, part: Buffer, headers: Record<string, string> = {}): Promise<void> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const req = request({ host: u.hostname, port: u.port, method, path: u.pathname + u.search, headers: { ...headers, "Content-Length": String(declared), "Content-Type": "application/octet-stream" } });
    req.on("error", () => resolve());
    req.on("close", () => resolve());
    req.write(part, () => setTimeout(() => req.destroy(), 30));
  });
}
