/**
 * The docker:// transport and the registry client against the real CNCF distribution registry;
 * one test file per setup (plain HTTP, htpasswd basic auth, TLS with a private CA, bearer tokens)
 * runs this suite, so that the setups run in parallel.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import {
  AirlockError,
  copyImage,
  type DockerImageDestination,
  type DockerImageReference,
  type DockerImageSource,
  deleteImage,
  digestOf,
  getLogin,
  isBlobMountTarget,
  isNotFound,
  listTags,
  login,
  logout,
  Manifest,
  MediaType,
  parseImageName,
  RegistryClient,
} from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RegistryMode, type RunningRegistry, startRegistry } from "../harness/registry.js";
import { contextFor, makeImage, pullImage, pushImage, readAll, unknownDigest } from "./util.js";

/** Registers the docker:// tests against a registry in `mode`. */
export function dockerTransportSuite(mode: RegistryMode): void {
  describe(`docker:// against a ${mode} registry`, () => {
    let reg: RunningRegistry;
    let tmp: string;

    beforeAll(async () => {
      reg = await startRegistry({ mode });
      tmp = await fs.mkdtemp(join(tmpdir(), "airlock-docker-test-"));
    });
    afterAll(async () => {
      await reg?.stop();
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });

    const ref = (name: string) => parseImageName(`docker://${reg.host}/${name}`) as DockerImageReference;
    const ctx = () => ({ docker: contextFor(reg) });

    it("pushes an image through the destination and reads it back through the source, byte for byte", async () => {
      const image = makeImage([3000, 70_000]);
      const dest = await ref("app/one:1.0").newDestination(ctx());
      try {
        const { reused } = await pushImage(dest, image);
        expect(reused).toBe(0);
      } finally {
        await dest.close();
      }
      const src = await ref("app/one:1.0").newSource(ctx());
      try {
        const { manifest, blobs } = await pullImage(src);
        expect(manifest.digest).toBe(image.manifest.digest);
        expect(Buffer.from(manifest.bytes).equals(Buffer.from(image.manifest.bytes))).toBe(true);
        for (const [d, data] of image.blobs) expect(blobs.get(d)?.equals(data)).toBe(true);
        // A child manifest is read by digest, and must hash to it.
        const byDigest = await src.getManifest(image.manifest.digest);
        expect(byDigest.digest).toBe(image.manifest.digest);
        // Reading from an offset.
        const layer = image.layers[1]!;
        const { stream } = await src.getBlob(layer, { offset: 1000 });
        expect((await readAll(stream)).equals((image.blobs.get(layer.digest) as Buffer).subarray(1000))).toBe(true);
      } finally {
        await src.close();
      }
      // By digest too.
      const src2 = await ref(`app/one@${image.manifest.digest}`).newSource(ctx());
      try {
        expect((await src2.getManifest()).digest).toBe(image.manifest.digest);
      } finally {
        await src2.close();
      }
    });

    it("reuses blobs already present, and shows no tag before commit", async () => {
      const image = makeImage([100]);
      const d1 = await ref("app/two:a").newDestination(ctx());
      await pushImage(d1, image).finally(() => d1.close());
      const d2 = (await ref("app/two:b").newDestination(ctx())) as DockerImageDestination;
      try {
        const { reused } = await pushImage(d2, image, false);
        expect(reused).toBe(2);
        expect(await d2.hasManifest(image.manifest.digest)).toBe(true);
        expect(await d2.hasManifest(unknownDigest())).toBe(false);
        // The manifest is there by digest, but tag b is not, until commit.
        expect(await d2.repository.headManifest("b")).toBeUndefined();
        await d2.commit();
        expect((await d2.repository.headManifest("b"))?.digest).toBe(image.manifest.digest);
      } finally {
        await d2.close();
      }
    });

    it("pushes by digest when the reference has one, and refuses a manifest with another digest", async () => {
      const image = makeImage([10]);
      const dest = await ref(`app/bydigest@${image.manifest.digest}`).newDestination(ctx());
      try {
        await pushImage(dest, image);
      } finally {
        await dest.close();
      }
      const other = makeImage([10]);
      const dest2 = await ref(`app/bydigest@${image.manifest.digest}`).newDestination(ctx());
      try {
        await expect(pushImage(dest2, other)).rejects.toMatchObject({ code: "ERR_DIGEST_MISMATCH" });
      } finally {
        await dest2.close();
      }
      // Pushed by digest only: no tag was written (distribution then knows no tags of the repository).
      const tags = await listTags(ref("app/bydigest"), ctx()).catch((e: AirlockError) => e.code);
      expect(tags === "ERR_IMAGE_NOT_FOUND" || (Array.isArray(tags) && tags.length === 0)).toBe(true);
    });

    it("copies between repositories of the registry with the copy pipeline, mounting blobs", async () => {
      const image = makeImage([5000, 6000]);
      const d = await ref("mount/src:v1").newDestination(ctx());
      await pushImage(d, image).finally(() => d.close());
      const before = reg.tokenRequests?.length ?? 0;
      // The destination mounts from the source repository when told where the blobs come from.
      const dest = await ref("mount/dst:v1").newDestination(ctx());
      expect(isBlobMountTarget(dest)).toBe(true);
      try {
        if (isBlobMountTarget(dest)) dest.setMountSource(ref("mount/src:v1"));
        for (const desc of [image.config, ...image.layers]) expect(await dest.tryReuseBlob(desc)).toBe(true);
      } finally {
        await dest.close();
      }
      if (reg.tokenRequests) {
        const scopes = reg.tokenRequests.slice(before).flatMap((r) => r.scopes);
        expect(scopes).toContain("repository:mount/src:pull");
        expect(scopes).toContain("repository:mount/dst:pull,push");
      }
      const result = await copyImage(ref("mount/src:v1"), ref("mount/copy:v2"), { sourceContext: ctx(), destinationContext: ctx() });
      expect(result.digest).toBe(image.manifest.digest);
      const src = await ref("mount/copy:v2").newSource(ctx());
      await pullImage(src).finally(() => src.close());
    });

    it("lists tags, and the catalog across pages", async () => {
      const image = makeImage([50]);
      const tags = ["t1", "t2", "t3", "t4", "t5", "latest"];
      for (const t of tags) {
        const d = await ref(`paged/repo:${t}`).newDestination(ctx());
        await pushImage(d, image).finally(() => d.close());
      }
      const client = new RegistryClient(reg.host, contextFor(reg));
      const pages: string[] = [];
      try {
        // distribution 2.8 ignores ?n= for tags (tag pagination is tested against a fake server).
        const all = await listTags(ref("paged/repo"), ctx(), { pageSize: 2 });
        expect([...all].sort()).toEqual([...tags].sort());
        const paged = new RegistryClient(reg.host, contextFor(reg), { log: (l) => pages.push(l) });
        const catalog = await paged.catalog({ pageSize: 1 }).finally(() => paged.close());
        expect(catalog).toEqual(expect.arrayContaining(["paged/repo", "app/one"]));
        expect(new Set(catalog).size).toBe(catalog.length);
        // One repository per page.
        expect(pages.filter((l) => l.includes("/v2/_catalog")).length).toBeGreaterThanOrEqual(catalog.length);
        expect(await client.catalog()).toEqual(catalog);
      } finally {
        await client.close();
      }
    });

    it("deletes an image; then it is not found (ERR_IMAGE_NOT_FOUND)", async () => {
      const image = makeImage([77]);
      const d = await ref("del/me:x").newDestination(ctx());
      await pushImage(d, image).finally(() => d.close());
      const digest = await deleteImage(ref("del/me:x"), ctx());
      expect(digest).toBe(image.manifest.digest);
      const src = await ref("del/me:x").newSource(ctx());
      try {
        const err = await src.getManifest().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(AirlockError);
        expect((err as AirlockError).code).toBe("ERR_IMAGE_NOT_FOUND");
        expect(isNotFound(err)).toBe(true);
      } finally {
        await src.close();
      }
      await expect(deleteImage(ref("del/me:x"), ctx())).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
    });

    it("reports a tag or repository that does not exist as ERR_IMAGE_NOT_FOUND, and a missing blob as ERR_BLOB_NOT_FOUND", async () => {
      const src = (await ref("app/one:no-such-tag").newSource(ctx())) as DockerImageSource;
      try {
        const err = (await src.getManifest().catch((e: unknown) => e)) as AirlockError;
        expect(err.code).toBe("ERR_IMAGE_NOT_FOUND");
        expect(err.message).toContain("no-such-tag");
        expect(err.message).toContain(`${reg.host}/app/one`);
        await expect(src.getBlob({ mediaType: MediaType.OCILayerGzip, digest: unknownDigest(), size: 1 })).rejects.toMatchObject({ code: "ERR_BLOB_NOT_FOUND" });
      } finally {
        await src.close();
      }
      await expect(listTags(ref("no/such/repo"), ctx())).rejects.toMatchObject({ code: "ERR_IMAGE_NOT_FOUND" });
    });

    it("uploads a large blob in chunks and reads it back", async () => {
      const data = randomBytes(300_000);
      const digest = digestOf(data);
      const client = new RegistryClient(reg.host, contextFor(reg), { monolithicUploadMax: 64 * 1024, uploadChunkSize: 64 * 1024, log: () => {} });
      const logged: string[] = [];
      const client2 = new RegistryClient(reg.host, contextFor(reg), { monolithicUploadMax: 64 * 1024, uploadChunkSize: 100_000, log: (l) => logged.push(l) });
      try {
        await client.repository("chunked/blob", "push").putBlob({ digest, size: data.length }, Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
        expect(await client.repository("chunked/blob").headBlob(digest)).toBe(data.length);
        const { stream } = await client.repository("chunked/blob").getBlob(digest);
        expect(digestOf(await readAll(stream))).toBe(digest);
        const other = randomBytes(250_000);
        await client2.repository("chunked/blob2", "push").putBlob({ digest: digestOf(other), size: other.length }, Readable.from([other]));
        expect(logged.filter((l) => l.startsWith("PATCH")).length).toBe(3);
      } finally {
        await client.close();
        await client2.close();
      }
    });

    it("refuses a blob whose stream does not match its size, and stores nothing under its digest", async () => {
      const data = randomBytes(5000);
      const digest = digestOf(data);
      const client = new RegistryClient(reg.host, contextFor(reg));
      try {
        const repo = client.repository("bad/blob", "push");
        await expect(repo.putBlob({ digest, size: 6000 }, Readable.from([data]))).rejects.toMatchObject({ code: "ERR_SIZE_MISMATCH" });
        // A wrong digest is refused by the registry itself.
        await expect(repo.putBlob({ digest: unknownDigest(), size: 5000 }, Readable.from([data]))).rejects.toBeInstanceOf(AirlockError);
        expect(await repo.headBlob(digest)).toBeUndefined();
      } finally {
        await client.close();
      }
    });

    it("reads referrers through the tag schema fallback (distribution 2.8 has no referrers API)", async () => {
      const image = makeImage([20]);
      const d = await ref("refs/app:v1").newDestination(ctx());
      await pushImage(d, image).finally(() => d.close());
      const client = new RegistryClient(reg.host, contextFor(reg));
      try {
        const repo = client.repository("refs/app", "push");
        expect(await repo.referrers(image.manifest.digest)).toEqual([]);
        const sbom = makeImage([30]);
        for (const desc of [sbom.config, ...sbom.layers]) await repo.putBlob(desc, Readable.from([sbom.blobs.get(desc.digest) as Buffer]));
        await repo.putManifest(sbom.manifest.digest, sbom.manifest.bytes, sbom.manifest.mediaType);
        const entry = { ...sbom.manifest.descriptor(), artifactType: "application/spdx+json" };
        const index = Manifest.fromJSON({ schemaVersion: 2, mediaType: MediaType.OCIIndex, manifests: [entry] }, MediaType.OCIIndex);
        await repo.putManifest(`sha256-${image.manifest.digest.slice(7)}`, index.bytes, index.mediaType);
        expect(await repo.referrers(image.manifest.digest)).toEqual([entry]);
        expect(await repo.referrers(image.manifest.digest, { artifactType: "application/spdx+json" })).toEqual([entry]);
        expect(await repo.referrers(image.manifest.digest, { artifactType: "application/other" })).toEqual([]);
      } finally {
        await client.close();
      }
    });

    it("logs in (checking the credentials first), uses the auth file, reports the login, logs out", async () => {
      const authFile = join(tmp, `auth-${randomBytes(3).toString("hex")}.json`);
      const tlsOpts = reg.certDir ? { certDir: reg.certDir } : {};
      if (mode === "basic" || mode === "token") {
        const bad = await login(reg.host, { username: reg.username!, password: "wrong" }, { authFile, ...tlsOpts }).catch((e: unknown) => e);
        expect(bad).toMatchObject({ code: "ERR_UNAUTHORIZED" });
        expect((bad as Error).message).toMatch(/rejected the credentials/);
        expect((bad as Error).message).not.toContain("wrong");
        await expect(fs.access(authFile)).rejects.toThrow();
      }
      const res = await login(reg.host, { username: reg.username ?? "someone", password: reg.password ?? "anything" }, { authFile, ...tlsOpts });
      expect(res.authFile).toBe(authFile);
      const st = await fs.stat(authFile);
      expect(st.mode & 0o777).toBe(0o600);
      const json = JSON.parse(await fs.readFile(authFile, "utf8"));
      expect(Buffer.from(json.auths[reg.host].auth, "base64").toString()).toBe(`${reg.username ?? "someone"}:${reg.password ?? "anything"}`);
      expect(await getLogin(reg.host, { authFile })).toBe(reg.username ?? "someone");

      // Credentials now come from the auth file alone.
      const image = makeImage([40]);
      const fileCtx = { docker: { authFile, retryDelayMs: 10, ...tlsOpts } };
      const d = await ref("login/app:v1").newDestination(fileCtx);
      await pushImage(d, image).finally(() => d.close());

      await logout(reg.host, { authFile });
      await expect(getLogin(reg.host, { authFile })).rejects.toThrow(/not logged into/);
      await expect(logout(reg.host, { authFile })).rejects.toThrow(/not logged into/);
      if (mode === "basic" || mode === "token") {
        const src = await ref("login/app:v1").newSource(fileCtx);
        try {
          const err = (await src.getManifest().catch((e: unknown) => e)) as AirlockError;
          expect(err.code).toBe("ERR_UNAUTHORIZED");
          expect(err.message).toContain("airlock login");
        } finally {
          await src.close();
        }
      }
    });
  });
}
