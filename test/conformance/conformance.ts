/**
 * The registry conformance suite, written from the OCI distribution spec's four workflow
 * categories — pull, push, content discovery, content management — plus the bad input a registry
 * must refuse. `conformance(getTarget, features)` registers the tests; the same assertions run
 * against `airlock serve` and against the CNCF docker-registry.
 *
 * Where docker-registry 2.8.2 predates or departs from the current spec, the stricter assertion is
 * behind a named {@link Features} flag (on for airlock, off for docker-registry); the shared part
 * asserts what the spec allows both to do.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 */
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { header, type Reply, send, type Target } from "./client.js";

/** Spec behaviours docker-registry 2.8.2 lacks; each flag turns on the strict assertions. */
export interface Features {
  /** end-4b: a single `POST …/uploads/?digest=` stores the blob (201). 2.8.2 opens a session (202), which the spec allows. */
  singleRequestUpload: boolean;
  /** end-5: a chunk out of order is refused with 416. 2.8.2 ignores `Content-Range`. */
  chunkOrder: boolean;
  /** end-8: tags sorted, `n`/`last` pagination with a `Link` header. 2.8.2 neither sorts nor pages tags. */
  tagPagination: boolean;
  /** end-9 by tag: DELETE of a tag. 2.8.2 answers 400 (tag deletion disabled, which the spec allows). */
  tagDelete: boolean;
  /** end-12: the referrers API (distribution-spec 1.1). 2.8.2 predates it (404). */
  referrers: boolean;
  /** Malformed names and digests in the path are answered with NAME_INVALID / DIGEST_INVALID. 2.8.2 redirects or answers 404/500 without the spec's JSON. */
  pathErrors: boolean;
}

/** Every strict assertion on (airlock). */
export const ALL_FEATURES: Features = { singleRequestUpload: true, chunkOrder: true, tagPagination: true, tagDelete: true, referrers: true, pathErrors: true };

/** docker-registry 2.8.2: none of the {@link Features}. */
export const DOCKER_REGISTRY_2_8: Features = { singleRequestUpload: false, chunkOrder: false, tagPagination: false, tagDelete: false, referrers: false, pathErrors: false };

const OCTET = { "Content-Type": "application/octet-stream" };
/** What a client accepts when it pulls a manifest (the spec: clients SHOULD send Accept). */
const ACCEPT = { Accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json" };
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/** The digest of `data`. */
export const sha256 = (data: Buffer | string): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** A digest of content that no test ever pushes. */
const absent = () => sha256(randomBytes(32));

/** Appends `key=value` to a Location (which may already carry a query). */
export function withQuery(location: string, key: string, value: string): string {
  return `${location}${location.includes("?") ? "&" : "?"}${key}=${encodeURIComponent(value)}`;
}

/** A descriptor of `data`. */
const desc = (mediaType: string, data: Buffer) => ({ mediaType, digest: sha256(data), size: data.length });

/** Pushes a blob with POST then PUT (the upload every registry supports); returns its digest. */
export async function pushBlob(t: Target, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const start = await send(t, "POST", `/v2/${repo}/blobs/uploads/`);
  expect(start.status, `POST /v2/${repo}/blobs/uploads/: ${start.body}`).toBe(202);
  const loc = header(start, "location");
  expect(loc).toBeTruthy();
  const put = await send(t, "PUT", withQuery(loc!, "digest", digest), { headers: OCTET, body: data });
  expect(put.status, `PUT upload: ${put.body}`).toBe(201);
  return digest;
}

/** Pushes a manifest; returns the reply. */
export function putManifest(t: Target, repo: string, reference: string, bytes: Buffer, mediaType = OCI_MANIFEST): Promise<Reply> {
  return send(t, "PUT", `/v2/${repo}/manifests/${reference}`, { headers: { "Content-Type": mediaType }, body: bytes });
}

/** An image pushed by {@link pushImage}. */
export interface PushedImage {
  config: Buffer;
  layer: Buffer;
  manifest: Buffer;
  digest: string;
  mediaType: string;
}

/** Builds an image manifest (OCI, or Docker v2 schema 2) for `config` and `layers`. */
export function imageManifest(config: Buffer, layers: Buffer[], options: { docker?: boolean; extra?: Record<string, unknown> } = {}): Buffer {
  const docker = options.docker ?? false;
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: docker ? DOCKER_MANIFEST : OCI_MANIFEST,
      config: desc(docker ? DOCKER_CONFIG : OCI_CONFIG, config),
      layers: layers.map((l) => desc(docker ? DOCKER_LAYER : OCI_LAYER, l)),
      ...options.extra,
    }),
  );
}

/** Pushes a small image (a config and one random layer) as `repo:tag`. */
export async function pushImage(t: Target, repo: string, tag: string, options: { docker?: boolean; layerSize?: number } = {}): Promise<PushedImage> {
  const layer = randomBytes(options.layerSize ?? 4096);
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha256(randomBytes(8))] }, tag }));
  await pushBlob(t, repo, config);
  await pushBlob(t, repo, layer);
  const manifest = imageManifest(config, [layer], options.docker ? { docker: true } : {});
  const mediaType = options.docker ? DOCKER_MANIFEST : OCI_MANIFEST;
  const r = await putManifest(t, repo, tag, manifest, mediaType);
  expect(r.status, `PUT manifest ${repo}:${tag}: ${r.body}`).toBe(201);
  return { config, layer, manifest, digest: sha256(manifest), mediaType };
}

/** Registers the conformance tests against the target `getTarget` returns (called inside each test). */
export function conformance(getTarget: () => Target, features: Features): void {
  const ns = `conformance/${randomBytes(3).toString("hex")}`;
  const repo = (name: string) => `${ns}/${name}`;

  describe("pull", () => {
    it("end-1: GET /v2/ answers 200 with the API version header", async () => {
      const r = await send(getTarget(), "GET", "/v2/");
      expect(r.status).toBe(200);
      expect(header(r, "docker-distribution-api-version")).toBe("registry/2.0");
    });

    it("end-3: GET and HEAD a manifest by tag and by digest: exact bytes, Content-Type, Docker-Content-Digest, Content-Length", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("pull"), "v1");
      for (const ref of ["v1", img.digest]) {
        const get = await send(t, "GET", `/v2/${repo("pull")}/manifests/${ref}`, { headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
        expect(get.status).toBe(200);
        expect(get.body.equals(img.manifest)).toBe(true);
        expect(header(get, "content-type")).toBe(OCI_MANIFEST);
        expect(header(get, "docker-content-digest")).toBe(img.digest);
        const head = await send(t, "HEAD", `/v2/${repo("pull")}/manifests/${ref}`, { headers: { Accept: OCI_MANIFEST } });
        expect(head.status).toBe(200);
        expect(head.body.length).toBe(0);
        expect(header(head, "docker-content-digest")).toBe(img.digest);
        expect(Number(header(head, "content-length"))).toBe(img.manifest.length);
      }
    });

    it("end-3: a Docker v2 schema 2 manifest comes back with its own media type", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("docker-type"), "v1", { docker: true });
      const get = await send(t, "GET", `/v2/${repo("docker-type")}/manifests/v1`, { headers: { Accept: DOCKER_MANIFEST } });
      expect(get.status).toBe(200);
      expect(header(get, "content-type")).toBe(DOCKER_MANIFEST);
      expect(get.body.equals(img.manifest)).toBe(true);
    });

    it("end-3: an unknown tag, digest or repository is 404 with the spec's code", async () => {
      const t = getTarget();
      await pushImage(t, repo("pull-404"), "v1");
      const tag = await send(t, "GET", `/v2/${repo("pull-404")}/manifests/nope`, { headers: ACCEPT });
      expect(tag.status).toBe(404);
      expect(tag.codes).toEqual(["MANIFEST_UNKNOWN"]);
      const dig = await send(t, "HEAD", `/v2/${repo("pull-404")}/manifests/${absent()}`, { headers: ACCEPT });
      expect(dig.status).toBe(404);
      const unknownRepo = await send(t, "GET", `/v2/${repo("never-pushed")}/manifests/latest`, { headers: ACCEPT });
      expect(unknownRepo.status).toBe(404);
      expect(["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]).toContain(unknownRepo.codes[0]);
    });

    it("end-2: GET and HEAD a blob: exact bytes, Docker-Content-Digest, Content-Length", async () => {
      const t = getTarget();
      const data = randomBytes(100_000);
      const digest = await pushBlob(t, repo("blob"), data);
      const get = await send(t, "GET", `/v2/${repo("blob")}/blobs/${digest}`);
      expect(get.status).toBe(200);
      expect(get.body.equals(data)).toBe(true);
      expect(header(get, "docker-content-digest")).toBe(digest);
      const head = await send(t, "HEAD", `/v2/${repo("blob")}/blobs/${digest}`);
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      expect(Number(header(head, "content-length"))).toBe(data.length);
      expect(header(head, "docker-content-digest")).toBe(digest);
    });

    it("end-2: Range requests answer 206 with Content-Range, 416 outside the blob", async () => {
      const t = getTarget();
      const data = randomBytes(1000);
      const digest = await pushBlob(t, repo("range"), data);
      const part = await send(t, "GET", `/v2/${repo("range")}/blobs/${digest}`, { headers: { Range: "bytes=10-19" } });
      expect(part.status).toBe(206);
      expect(header(part, "content-range")).toBe("bytes 10-19/1000");
      expect(part.body.equals(data.subarray(10, 20))).toBe(true);
      const open = await send(t, "GET", `/v2/${repo("range")}/blobs/${digest}`, { headers: { Range: "bytes=990-" } });
      expect(open.status).toBe(206);
      expect(open.body.equals(data.subarray(990))).toBe(true);
      const suffix = await send(t, "GET", `/v2/${repo("range")}/blobs/${digest}`, { headers: { Range: "bytes=-3" } });
      expect(suffix.status).toBe(206);
      expect(header(suffix, "content-range")).toBe("bytes 997-999/1000");
      expect(suffix.body.equals(data.subarray(997))).toBe(true);
      const outside = await send(t, "GET", `/v2/${repo("range")}/blobs/${digest}`, { headers: { Range: "bytes=2000-2100" } });
      expect(outside.status).toBe(416);
      expect(header(outside, "content-range")).toBe("bytes */1000");
    });

    it("end-2: an unknown blob, or a blob of another repository, is 404 BLOB_UNKNOWN", async () => {
      const t = getTarget();
      const digest = await pushBlob(t, repo("blob-a"), randomBytes(64));
      await pushBlob(t, repo("blob-b"), randomBytes(64));
      const unknown = await send(t, "GET", `/v2/${repo("blob-a")}/blobs/${absent()}`);
      expect(unknown.status).toBe(404);
      expect(unknown.codes).toEqual(["BLOB_UNKNOWN"]);
      const other = await send(t, "HEAD", `/v2/${repo("blob-b")}/blobs/${digest}`);
      expect(other.status).toBe(404);
    });
  });

  describe("push", () => {
    it("end-4a/end-6: POST then PUT uploads a blob monolithically (201, Location)", async () => {
      const t = getTarget();
      const data = randomBytes(5000);
      const start = await send(t, "POST", `/v2/${repo("mono")}/blobs/uploads/`);
      expect(start.status).toBe(202);
      expect(header(start, "location")).toBeTruthy();
      const put = await send(t, "PUT", withQuery(header(start, "location")!, "digest", sha256(data)), { headers: OCTET, body: data });
      expect(put.status).toBe(201);
      expect(header(put, "location")).toBeTruthy();
      expect(header(put, "docker-content-digest")).toBe(sha256(data));
      const get = await send(t, "GET", header(put, "location")!);
      expect(get.status).toBe(200);
      expect(get.body.equals(data)).toBe(true);
    });

    it("end-4b: a single POST with ?digest= stores the blob (201), or opens a session the client completes (202)", async () => {
      const t = getTarget();
      const data = randomBytes(3000);
      const digest = sha256(data);
      const post = await send(t, "POST", `/v2/${repo("single-post")}/blobs/uploads/?digest=${digest}`, { headers: OCTET, body: data });
      if (features.singleRequestUpload) expect(post.status).toBe(201);
      expect([201, 202]).toContain(post.status);
      if (post.status === 202) {
        const put = await send(t, "PUT", withQuery(header(post, "location")!, "digest", digest), { headers: OCTET, body: data });
        expect(put.status).toBe(201);
      } else {
        expect(header(post, "location")).toBeTruthy();
      }
      const get = await send(t, "GET", `/v2/${repo("single-post")}/blobs/${digest}`);
      expect(get.body.equals(data)).toBe(true);
    });

    it("end-5/end-13/end-6: a chunked upload — PATCH chunks in order, GET the status, PUT the last chunk", async () => {
      const t = getTarget();
      const data = randomBytes(10_000);
      const start = await send(t, "POST", `/v2/${repo("chunked")}/blobs/uploads/`, { headers: { "Content-Length": "0" } });
      expect(start.status).toBe(202);
      let loc = header(start, "location")!;
      const p1 = await send(t, "PATCH", loc, { headers: { ...OCTET, "Content-Range": "0-3999" }, body: data.subarray(0, 4000) });
      expect(p1.status).toBe(202);
      expect(header(p1, "range")).toBe("0-3999");
      loc = header(p1, "location")!;
      const p2 = await send(t, "PATCH", loc, { headers: { ...OCTET, "Content-Range": "4000-7999" }, body: data.subarray(4000, 8000) });
      expect(p2.status).toBe(202);
      expect(header(p2, "range")).toBe("0-7999");
      loc = header(p2, "location")!;
      const status = await send(t, "GET", loc);
      expect(status.status).toBe(204);
      expect(header(status, "range")).toBe("0-7999");
      expect(header(status, "location")).toBeTruthy();
      loc = header(status, "location")!;
      const put = await send(t, "PUT", withQuery(loc, "digest", sha256(data)), { headers: { ...OCTET, "Content-Range": "8000-9999" }, body: data.subarray(8000) });
      expect(put.status).toBe(201);
      const get = await send(t, "GET", `/v2/${repo("chunked")}/blobs/${sha256(data)}`);
      expect(get.body.equals(data)).toBe(true);
    });

    it("end-5/end-6: a chunked upload closed by a PUT without a body", async () => {
      const t = getTarget();
      const data = randomBytes(2048);
      const start = await send(t, "POST", `/v2/${repo("chunked-2")}/blobs/uploads/`);
      const p1 = await send(t, "PATCH", header(start, "location")!, { headers: { ...OCTET, "Content-Range": "0-2047" }, body: data });
      expect(p1.status).toBe(202);
      const put = await send(t, "PUT", withQuery(header(p1, "location")!, "digest", sha256(data)));
      expect(put.status).toBe(201);
      const head = await send(t, "HEAD", `/v2/${repo("chunked-2")}/blobs/${sha256(data)}`);
      expect(Number(header(head, "content-length"))).toBe(2048);
    });

    it.runIf(features.chunkOrder)("end-5: a chunk out of order is refused with 416 and the upload goes on from its last good offset", async () => {
      const t = getTarget();
      const data = randomBytes(300);
      const start = await send(t, "POST", `/v2/${repo("order")}/blobs/uploads/`);
      const p1 = await send(t, "PATCH", header(start, "location")!, { headers: { ...OCTET, "Content-Range": "0-99" }, body: data.subarray(0, 100) });
      expect(p1.status).toBe(202);
      const loc = header(p1, "location")!;
      const skip = await send(t, "PATCH", loc, { headers: { ...OCTET, "Content-Range": "150-299" }, body: data.subarray(150) });
      expect(skip.status).toBe(416);
      const again = await send(t, "PATCH", loc, { headers: { ...OCTET, "Content-Range": "0-99" }, body: data.subarray(0, 100) });
      expect(again.status).toBe(416);
      const status = await send(t, "GET", loc);
      expect(header(status, "range")).toBe("0-99");
      const put = await send(t, "PUT", withQuery(loc, "digest", sha256(data)), { headers: { ...OCTET, "Content-Range": "100-299" }, body: data.subarray(100) });
      expect(put.status).toBe(201);
    });

    it("end-6: an upload whose content does not match its digest is refused with DIGEST_INVALID and nothing is stored", async () => {
      const t = getTarget();
      const data = randomBytes(1024);
      const claimed = absent();
      const start = await send(t, "POST", `/v2/${repo("wrong-digest")}/blobs/uploads/`);
      const put = await send(t, "PUT", withQuery(header(start, "location")!, "digest", claimed), { headers: OCTET, body: data });
      expect(put.status).toBe(400);
      expect(put.codes).toEqual(["DIGEST_INVALID"]);
      for (const d of [claimed, sha256(data)]) {
        expect((await send(t, "HEAD", `/v2/${repo("wrong-digest")}/blobs/${d}`)).status).toBe(404);
      }
      const single = await send(t, "POST", `/v2/${repo("wrong-digest")}/blobs/uploads/?digest=${claimed}`, { headers: OCTET, body: data });
      if (single.status === 202) {
        const p = await send(t, "PUT", withQuery(header(single, "location")!, "digest", claimed), { headers: OCTET, body: data });
        expect(p.codes).toEqual(["DIGEST_INVALID"]);
      } else {
        expect(single.status).toBe(400);
        expect(single.codes).toEqual(["DIGEST_INVALID"]);
      }
      expect((await send(t, "HEAD", `/v2/${repo("wrong-digest")}/blobs/${claimed}`)).status).toBe(404);
    });

    it("end-14: DELETE cancels an upload; its location is then unknown", async () => {
      const t = getTarget();
      const start = await send(t, "POST", `/v2/${repo("cancel")}/blobs/uploads/`);
      const loc = header(start, "location")!;
      const del = await send(t, "DELETE", loc);
      expect(del.status).toBe(204);
      const after = await send(t, "GET", loc);
      expect(after.status).toBe(404);
      expect(after.codes).toEqual(["BLOB_UPLOAD_UNKNOWN"]);
    });

    it("end-11: mounting a blob from a repository that holds it answers 201; otherwise a session (202)", async () => {
      const t = getTarget();
      const data = randomBytes(777);
      const digest = await pushBlob(t, repo("mount-from"), data);
      const mount = await send(t, "POST", `/v2/${repo("mount-to")}/blobs/uploads/?mount=${digest}&from=${repo("mount-from")}`);
      expect(mount.status).toBe(201);
      expect(header(mount, "location")).toBeTruthy();
      expect(header(mount, "docker-content-digest")).toBe(digest);
      const get = await send(t, "GET", `/v2/${repo("mount-to")}/blobs/${digest}`);
      expect(get.body.equals(data)).toBe(true);
      const missing = await send(t, "POST", `/v2/${repo("mount-to-2")}/blobs/uploads/?mount=${absent()}&from=${repo("mount-from")}`);
      expect(missing.status).toBe(202);
      expect(header(missing, "location")).toBeTruthy();
      const notThere = await send(t, "POST", `/v2/${repo("mount-to-3")}/blobs/uploads/?mount=${digest}&from=${repo("never-pushed")}`);
      expect(notThere.status).toBe(202);
      expect((await send(t, "HEAD", `/v2/${repo("mount-to-3")}/blobs/${digest}`)).status).toBe(404);
    });

    it("end-7: PUT a manifest by tag and by digest: 201, Location, Docker-Content-Digest", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("put"), "v1");
      const byDigest = await putManifest(t, repo("put"), img.digest, img.manifest);
      expect(byDigest.status).toBe(201);
      expect(header(byDigest, "docker-content-digest")).toBe(img.digest);
      expect(header(byDigest, "location")).toBeTruthy();
      const again = await putManifest(t, repo("put"), "v2", img.manifest);
      expect(again.status).toBe(201);
      expect(header(again, "docker-content-digest")).toBe(img.digest);
      expect((await send(t, "GET", `/v2/${repo("put")}/manifests/v2`, { headers: ACCEPT })).body.equals(img.manifest)).toBe(true);
    });

    it("end-7: an image index whose child manifests are pushed first", async () => {
      const t = getTarget();
      const a = await pushImage(t, repo("index"), "amd64");
      const b = await pushImage(t, repo("index"), "arm64");
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [
            { ...desc(OCI_MANIFEST, a.manifest), platform: { architecture: "amd64", os: "linux" } },
            { ...desc(OCI_MANIFEST, b.manifest), platform: { architecture: "arm64", os: "linux" } },
          ],
        }),
      );
      const put = await putManifest(t, repo("index"), "multi", index, OCI_INDEX);
      expect(put.status).toBe(201);
      const get = await send(t, "GET", `/v2/${repo("index")}/manifests/multi`, { headers: { Accept: OCI_INDEX } });
      expect(header(get, "content-type")).toBe(OCI_INDEX);
      expect(get.body.equals(index)).toBe(true);
    });

    it("end-7: a manifest with a subject that does not exist yet is accepted", async () => {
      const t = getTarget();
      const config = Buffer.from("{}");
      await pushBlob(t, repo("subject"), config);
      const subject = absent();
      const artifact = imageManifest(config, [], { extra: { artifactType: "application/vnd.example.sbom.v1", subject: { mediaType: OCI_MANIFEST, digest: subject, size: 123 } } });
      const put = await putManifest(t, repo("subject"), sha256(artifact), artifact);
      expect(put.status).toBe(201);
      if (features.referrers) expect(header(put, "oci-subject")).toBe(subject);
    });
  });

  describe("push: refused manifests store nothing", () => {
    it("a digest in the URL that does not match the manifest is DIGEST_INVALID", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("bad-manifest"), "v1");
      const claimed = absent();
      const put = await putManifest(t, repo("bad-manifest"), claimed, img.manifest);
      expect(put.status).toBe(400);
      expect(put.codes).toEqual(["DIGEST_INVALID"]);
      expect((await send(t, "GET", `/v2/${repo("bad-manifest")}/manifests/${claimed}`, { headers: ACCEPT })).status).toBe(404);
    });

    it("malformed JSON is MANIFEST_INVALID", async () => {
      const t = getTarget();
      const put = await putManifest(t, repo("bad-manifest"), "broken", Buffer.from('{"schemaVersion":2,"config":'));
      expect(put.status).toBe(400);
      expect(put.codes).toEqual(["MANIFEST_INVALID"]);
      expect((await send(t, "GET", `/v2/${repo("bad-manifest")}/manifests/broken`, { headers: ACCEPT })).status).toBe(404);
    });

    it("a manifest referring to a blob the repository lacks is MANIFEST_BLOB_UNKNOWN", async () => {
      const t = getTarget();
      const config = Buffer.from('{"os":"linux"}');
      await pushBlob(t, repo("bad-manifest"), config);
      const manifest = imageManifest(config, [randomBytes(100)]);
      const put = await putManifest(t, repo("bad-manifest"), "missing-layer", manifest);
      expect(put.status).toBe(400);
      expect(put.codes).toEqual(["MANIFEST_BLOB_UNKNOWN"]);
      expect((await send(t, "GET", `/v2/${repo("bad-manifest")}/manifests/missing-layer`, { headers: ACCEPT })).status).toBe(404);
      expect((await send(t, "HEAD", `/v2/${repo("bad-manifest")}/manifests/${sha256(manifest)}`, { headers: ACCEPT })).status).toBe(404);
    });

    it("an index referring to a manifest the repository lacks is MANIFEST_BLOB_UNKNOWN", async () => {
      const t = getTarget();
      const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: absent(), size: 500 }] }));
      const put = await putManifest(t, repo("bad-manifest"), "missing-child", index, OCI_INDEX);
      expect(put.status).toBe(400);
      expect(put.codes).toEqual(["MANIFEST_BLOB_UNKNOWN"]);
      expect((await send(t, "GET", `/v2/${repo("bad-manifest")}/manifests/missing-child`, { headers: ACCEPT })).status).toBe(404);
    });
  });

  describe("content discovery", () => {
    it("end-8a: lists a repository's tags; an unknown repository is NAME_UNKNOWN", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("tags"), "b");
      for (const tag of ["a", "c", "B", "1.0"]) expect((await putManifest(t, repo("tags"), tag, img.manifest)).status).toBe(201);
      const list = await send(t, "GET", `/v2/${repo("tags")}/tags/list`);
      expect(list.status).toBe(200);
      const body = list.json as { name: string; tags: string[] };
      expect(body.name).toBe(repo("tags"));
      expect([...body.tags].sort()).toEqual(["1.0", "B", "a", "b", "c"]);
      if (features.tagPagination) expect(body.tags).toEqual(["1.0", "B", "a", "b", "c"]);
      const unknown = await send(t, "GET", `/v2/${repo("never-pushed")}/tags/list`);
      expect(unknown.status).toBe(404);
      expect(unknown.codes).toEqual(["NAME_UNKNOWN"]);
    });

    it.runIf(features.tagPagination)("end-8b: pages of tags with n and last, and a Link header to the next page", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("tag-pages"), "t1");
      for (const tag of ["t2", "t3", "t4", "t5"]) await putManifest(t, repo("tag-pages"), tag, img.manifest);
      const p1 = await send(t, "GET", `/v2/${repo("tag-pages")}/tags/list?n=2`);
      expect((p1.json as { tags: string[] }).tags).toEqual(["t1", "t2"]);
      const link = header(p1, "link");
      expect(link).toMatch(/^<[^>]*last=t2[^>]*>; rel="next"$/);
      const next = /^<([^>]+)>/.exec(link!)![1]!;
      const p2 = await send(t, "GET", next);
      expect((p2.json as { tags: string[] }).tags).toEqual(["t3", "t4"]);
      const p3 = await send(t, "GET", `/v2/${repo("tag-pages")}/tags/list?n=2&last=t4`);
      expect((p3.json as { tags: string[] }).tags).toEqual(["t5"]);
      expect(header(p3, "link")).toBeUndefined();
      const none = await send(t, "GET", `/v2/${repo("tag-pages")}/tags/list?n=0`);
      expect((none.json as { tags: string[] }).tags).toEqual([]);
      expect(header(none, "link")).toBeUndefined();
      const after = await send(t, "GET", `/v2/${repo("tag-pages")}/tags/list?last=t3`);
      expect((after.json as { tags: string[] }).tags).toEqual(["t4", "t5"]);
    });

    it("_catalog lists repositories, in pages with a Link header", async () => {
      const t = getTarget();
      await pushBlob(t, repo("catalog-a"), randomBytes(10));
      await pushImage(t, repo("catalog-b"), "v1");
      const all = await send(t, "GET", "/v2/_catalog");
      expect(all.status).toBe(200);
      const repos = (all.json as { repositories: string[] }).repositories;
      expect(repos).toContain(repo("catalog-b"));
      expect([...repos].sort()).toEqual(repos);
      const first = await send(t, "GET", "/v2/_catalog?n=1");
      expect((first.json as { repositories: string[] }).repositories).toEqual([repos[0]]);
      expect(header(first, "link")).toMatch(/rel="next"/);
    });

    describe.runIf(features.referrers)("end-12: referrers", () => {
      it("lists the manifests whose subject is a digest, with artifactType and annotations, filtered by artifactType", async () => {
        const t = getTarget();
        const img = await pushImage(t, repo("referrers"), "v1");
        const config = Buffer.from("{}");
        await pushBlob(t, repo("referrers"), config);
        const subject = { mediaType: OCI_MANIFEST, digest: img.digest, size: img.manifest.length };
        const sbom = imageManifest(config, [], { extra: { artifactType: "application/vnd.example.sbom.v1", subject, annotations: { "org.example.kind": "sbom" } } });
        const sig = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: "application/vnd.example.sig.config.v1+json", digest: sha256(config), size: config.length }, layers: [], subject }));
        expect((await putManifest(t, repo("referrers"), sha256(sbom), sbom)).status).toBe(201);
        expect((await putManifest(t, repo("referrers"), "sig", sig)).status).toBe(201);
        const r = await send(t, "GET", `/v2/${repo("referrers")}/referrers/${img.digest}`);
        expect(r.status).toBe(200);
        expect(header(r, "content-type")).toBe(OCI_INDEX);
        const index = r.json as { schemaVersion: number; mediaType: string; manifests: { digest: string; artifactType?: string; annotations?: Record<string, string>; size: number }[] };
        expect(index.schemaVersion).toBe(2);
        expect(index.mediaType).toBe(OCI_INDEX);
        const byDigest = new Map(index.manifests.map((m) => [m.digest, m]));
        expect(byDigest.size).toBe(2);
        expect(byDigest.get(sha256(sbom))).toMatchObject({ artifactType: "application/vnd.example.sbom.v1", annotations: { "org.example.kind": "sbom" }, size: sbom.length });
        // No artifactType: the config's media type stands in for it.
        expect(byDigest.get(sha256(sig))?.artifactType).toBe("application/vnd.example.sig.config.v1+json");
        const filtered = await send(t, "GET", `/v2/${repo("referrers")}/referrers/${img.digest}?artifactType=${encodeURIComponent("application/vnd.example.sbom.v1")}`);
        expect(header(filtered, "oci-filters-applied")).toBe("artifactType");
        expect((filtered.json as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([sha256(sbom)]);
      });

      it("answers an empty index for a digest nothing refers to, and 400 for an invalid digest", async () => {
        const t = getTarget();
        await pushImage(t, repo("referrers-none"), "v1");
        const r = await send(t, "GET", `/v2/${repo("referrers-none")}/referrers/${absent()}`);
        expect(r.status).toBe(200);
        expect((r.json as { manifests: unknown[] }).manifests).toEqual([]);
        const bad = await send(t, "GET", `/v2/${repo("referrers-none")}/referrers/sha256:xyz`);
        expect(bad.status).toBe(400);
        expect(bad.codes).toEqual(["DIGEST_INVALID"]);
      });
    });
  });

  describe("content management", () => {
    it("end-9: DELETE a manifest by digest (202); it and its tags are then 404", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("delete"), "v1");
      await putManifest(t, repo("delete"), "v1-alias", img.manifest);
      const del = await send(t, "DELETE", `/v2/${repo("delete")}/manifests/${img.digest}`);
      expect(del.status).toBe(202);
      expect((await send(t, "GET", `/v2/${repo("delete")}/manifests/${img.digest}`, { headers: ACCEPT })).status).toBe(404);
      expect((await send(t, "GET", `/v2/${repo("delete")}/manifests/v1`, { headers: ACCEPT })).status).toBe(404);
      expect((await send(t, "HEAD", `/v2/${repo("delete")}/manifests/v1-alias`, { headers: ACCEPT })).status).toBe(404);
      const again = await send(t, "DELETE", `/v2/${repo("delete")}/manifests/${img.digest}`);
      expect(again.status).toBe(404);
      expect(again.codes).toEqual(["MANIFEST_UNKNOWN"]);
    });

    it("end-9: DELETE a tag removes the tag only (or is refused with 400/405 where tag deletion is disabled)", async () => {
      const t = getTarget();
      const img = await pushImage(t, repo("delete-tag"), "keep");
      await putManifest(t, repo("delete-tag"), "drop", img.manifest);
      const del = await send(t, "DELETE", `/v2/${repo("delete-tag")}/manifests/drop`);
      if (features.tagDelete) expect(del.status).toBe(202);
      expect([202, 400, 405]).toContain(del.status);
      if (del.status === 202) {
        expect((await send(t, "GET", `/v2/${repo("delete-tag")}/manifests/drop`, { headers: ACCEPT })).status).toBe(404);
        const tags = (await send(t, "GET", `/v2/${repo("delete-tag")}/tags/list`)).json as { tags: string[] };
        expect(tags.tags).toEqual(["keep"]);
      }
      expect((await send(t, "GET", `/v2/${repo("delete-tag")}/manifests/keep`, { headers: ACCEPT })).status).toBe(200);
      expect((await send(t, "GET", `/v2/${repo("delete-tag")}/manifests/${img.digest}`, { headers: ACCEPT })).status).toBe(200);
    });
  });

  describe("bad input: names and digests that try to leave the store", () => {
    const badNames = ["/v2/../../../etc/tags/list", "/v2/a/../../b/tags/list", "/v2/a%2F..%2F..%2Fb/tags/list", "/v2/UPPER/case/tags/list", "/v2/a//b/tags/list", "/v2/-a/tags/list"];

    it.each(badNames)("GET %s is refused", async (path) => {
      const r = await send(getTarget(), "GET", path);
      expect(r.status).toBeGreaterThanOrEqual(300);
      if (features.pathErrors) {
        expect(r.status).toBe(400);
        expect(r.codes).toEqual(["NAME_INVALID"]);
      }
    });

    it("pushes under traversal names store nothing", async () => {
      const t = getTarget();
      const data = randomBytes(64);
      const digest = sha256(data);
      for (const name of ["..%2F..%2Fescape", "a/../../escape", "escape%2F..%2F..%2F..%2Ftmp"]) {
        const post = await send(t, "POST", `/v2/${name}/blobs/uploads/?digest=${digest}`, { headers: OCTET, body: data });
        expect(post.status).toBeGreaterThanOrEqual(300);
        const put = await putManifest(t, name, "latest", imageManifest(data, []));
        expect(put.status).toBeGreaterThanOrEqual(300);
        if (features.pathErrors) {
          expect(post.codes).toEqual(["NAME_INVALID"]);
          expect(put.codes).toEqual(["NAME_INVALID"]);
        }
      }
      const catalog = (await send(t, "GET", "/v2/_catalog")).json as { repositories: string[] };
      expect(catalog.repositories.filter((r) => r.includes("escape") || r.includes("tmp"))).toEqual([]);
    });

    it("digests that are paths are refused", async () => {
      const t = getTarget();
      await pushImage(t, repo("digests"), "v1");
      const r = repo("digests");
      const attempts: [string, string][] = [
        ["GET", `/v2/${r}/blobs/sha256:..%2F..%2F..%2F..%2Fetc%2Fpasswd`],
        ["GET", `/v2/${r}/blobs/sha256:${"..%2F".repeat(8)}index.json`],
        ["HEAD", `/v2/${r}/blobs/..%2F..%2Findex.json`],
        ["GET", `/v2/${r}/manifests/sha256:..%2F..%2F..%2Findex.json`],
        ["GET", `/v2/${r}/manifests/..%2F..%2F..%2Findex.json`],
        ["GET", `/v2/${r}/blobs/sha256:0123`],
      ];
      for (const [method, path] of attempts) {
        const res = await send(t, method, path);
        expect(res.status, `${method} ${path}`).toBeGreaterThanOrEqual(300);
        if (features.pathErrors && path.includes("/blobs/")) {
          expect(res.status, `${method} ${path}`).toBe(400);
          if (method === "GET") expect(res.codes, `${method} ${path}`).toEqual(["DIGEST_INVALID"]);
        }
      }
      const data = randomBytes(32);
      const start = await send(t, "POST", `/v2/${r}/blobs/uploads/`);
      const put = await send(t, "PUT", withQuery(header(start, "location")!, "digest", "sha256:../../../escape"), { headers: OCTET, body: data });
      expect(put.status).toBe(400);
      expect(put.codes).toEqual(["DIGEST_INVALID"]);
      const mount = await send(t, "POST", `/v2/${r}/blobs/uploads/?mount=${encodeURIComponent("sha256:../../x")}&from=${r}`);
      expect(mount.status).not.toBe(201);
      if (features.pathErrors) expect(mount.codes).toEqual(["DIGEST_INVALID"]);
    });
  });
}
