/**
 * The `docker-daemon:` transport against a real Docker daemon started for this file (its own data
 * root, exec root, pid file and socket in a temporary directory, so it meets no other daemon):
 * airlock loads images that `docker image inspect` and `docker save` then describe with the same
 * diff IDs and config digest (= image ID); airlock reads images `docker load` put there, and
 * skopeo reads the same image with the same digests; the daemon's TLS port (--tlsverify) works with
 * the cert dir skopeo reads; a load abandoned before commit or refused by the daemon leaves no
 * image; a missing image exits 2; a daemon that is not there is one clear error line.
 *
 * Skipped, saying why, when `dockerd` is not installed or the tests do not run as root (dockerd
 * needs root; CI installs docker.io and runs as root).
 */
import { execFile, type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { promises as fs, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  AirlockError,
  type BlobReader,
  copyImage,
  type Descriptor,
  type Digest,
  type ImageReference,
  type ImageSource,
  Manifest,
  parseImageName,
} from "@airlock/core";
import tarStream from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../../packages/core/src/transports/all.js";
import { runCli } from "../support/cli.js";
import { randomStream } from "../support/generated-image.js";

const run = promisify(execFile);
const FIX = fileURLToPath(new URL("../../fixtures", import.meta.url));

const hasDockerd = spawnSync("dockerd", ["--version"]).status === 0;
const isRoot = process.getuid?.() === 0;
const skipReason = !hasDockerd ? " (skipped: dockerd is not installed; apt-get install docker.io)" : !isRoot ? " (skipped: dockerd needs root)" : "";

let dir: string;
let sock: string;
let host: string;
/** The same daemon over TCP with TLS that wants a client certificate (dockerd --tlsverify). */
let tlsHost: string;
/** A cert dir as skopeo and airlock read it for a daemon: ca.pem, cert.pem, key.pem. */
let certDir: string;
let daemon: ChildProcess | undefined;

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, as dockerd --tlsverify needs them. */
async function makeCerts(d: string): Promise<void> {
  const ssl = (...args: string[]) => run("openssl", args);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await ssl("req", "-x509", ...ec, "-days", "2", "-subj", "/CN=airlock-test-ca", "-keyout", join(d, "ca-key.pem"), "-out", join(d, "ca.pem"));
  for (const [name, cn, ext] of [
    ["server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"],
    ["client", "client", "extendedKeyUsage=clientAuth\n"],
  ] as const) {
    await ssl("req", ...ec, "-subj", `/CN=${cn}`, "-keyout", join(d, `${name}-key.pem`), "-out", join(d, `${name}.csr`));
    await fs.writeFile(join(d, `${name}.ext`), ext);
    await ssl("x509", "-req", "-in", join(d, `${name}.csr`), "-CA", join(d, "ca.pem"), "-CAkey", join(d, "ca-key.pem"), "-CAcreateserial", "-days", "2", "-extfile", join(d, `${name}.ext`), "-out", join(d, `${name}-cert.pem`));
  }
  await fs.mkdir(join(d, "client"));
  await fs.copyFile(join(d, "ca.pem"), join(d, "client", "ca.pem"));
  await fs.copyFile(join(d, "client-cert.pem"), join(d, "client", "cert.pem"));
  await fs.copyFile(join(d, "client-key.pem"), join(d, "client", "key.pem"));
}

/** GET /_ping on the socket: true when the daemon answers OK. */
function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", method: "GET", timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** Runs the docker CLI against this file's daemon. */
const docker = (...args: string[]) => run("docker", args, { env: { ...process.env, DOCKER_HOST: host }, maxBuffer: 64 << 20 });
const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 64 << 20 });

beforeAll(async () => {
  if (skipReason) return;
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-dockerd-"));
  sock = join(dir, "docker.sock");
  host = `unix://${sock}`;
  await makeCerts(dir);
  certDir = join(dir, "client");
  tlsHost = `tcp://127.0.0.1:${await freePort()}`;
  const log = await fs.open(join(dir, "dockerd.log"), "w");
  daemon = spawn(
    "dockerd",
    [
      ...["--data-root", join(dir, "root"), "--exec-root", join(dir, "exec"), "--pidfile", join(dir, "pid"), "-H", host],
      ...["-H", tlsHost, "--tlsverify", "--tlscacert", join(dir, "ca.pem"), "--tlscert", join(dir, "server-cert.pem"), "--tlskey", join(dir, "server-key.pem")],
      ...["--storage-driver", "vfs", "--iptables=false", "--ip6tables=false", "--bridge=none"],
    ],
    { stdio: ["ignore", log.fd, log.fd] },
  );
  await log.close();
  const exited = new Promise<never>((_, reject) => daemon?.once("exit", (code) => reject(new Error(`dockerd exited (${code}); see ${join(dir, "dockerd.log")}`))));
  const ready = (async () => {
    for (let i = 0; i < 300 && !(await ping(sock)); i++) await new Promise((r) => setTimeout(r, 100));
    if (!(await ping(sock))) throw new Error(`dockerd did not answer /_ping on ${sock} within 30 s; see ${join(dir, "dockerd.log")}`);
  })();
  await Promise.race([ready, exited]);
}, 40_000);

afterAll(async () => {
  const d = daemon;
  if (d && d.exitCode === null) {
    const gone = new Promise((r) => d.once("exit", r));
    d.kill("SIGTERM");
    const timer = setTimeout(() => d.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(timer);
  }
  if (dir) await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
}, 20_000);

/**
 * A generated image whose one layer is a real tar (docker load unpacks it) holding `size`
 * pseudo-random bytes, uncompressed, under an OCI manifest; read through the transport contract.
 */
async function tarLayerImage(seed: string, size: number, options: { claimedDiffID?: Digest } = {}): Promise<ImageReference & { configDigest: Digest; diffID: Digest }> {
  const layerStream = () => {
    const pack = tarStream.pack();
    const entry = pack.entry({ name: `data-${seed}.bin`, size, mtime: new Date(0), mode: 0o644 }, (err) => {
      if (err) pack.destroy(err);
      else pack.finalize();
    });
    randomStream(seed, size).pipe(entry);
    return pack as unknown as Readable;
  };
  const h = createHash("sha256");
  let layerSize = 0;
  for await (const c of layerStream()) {
    h.update(c as Buffer);
    layerSize += (c as Buffer).length;
  }
  const diffID = `sha256:${h.digest("hex")}` as Digest;
  const layer: Descriptor = { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: diffID, size: layerSize };
  const configBytes = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Env: [`SEED=${seed}`] }, rootfs: { type: "layers", diff_ids: [options.claimedDiffID ?? diffID] } }));
  const configDigest = `sha256:${createHash("sha256").update(configBytes).digest("hex")}` as Digest;
  const config: Descriptor = { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: configBytes.length };
  const manifest = Manifest.parse(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config, layers: [layer] })));
  const ref: ImageReference & { configDigest: Digest; diffID: Digest } = {
    configDigest,
    diffID,
    transport: { name: "generated", parseReference: () => ref },
    toString: () => `generated:${seed}`,
    dockerReference: () => undefined,
    async newSource(): Promise<ImageSource> {
      return {
        reference: ref,
        getManifest: async () => manifest,
        async getBlob(desc: Descriptor): Promise<BlobReader> {
          if (desc.digest === diffID) return { stream: layerStream(), size: layerSize };
          if (desc.digest === configDigest) return { stream: Readable.from([configBytes]), size: configBytes.length };
          throw new AirlockError("ERR_BLOB_NOT_FOUND", `no blob ${desc.digest}`);
        },
        async close() {},
      };
    },
    async newDestination() {
      throw new AirlockError("ERR_UNSUPPORTED", "generated images are read-only");
    },
  };
  return ref;
}

/** Runs `fn` with environment variables set (airlock runs in this process), restoring them after. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

interface DockerInspect {
  Id: string;
  RepoTags: string[];
  RootFS: { Layers: string[] };
}

async function dockerInspect(name: string): Promise<DockerInspect> {
  return (JSON.parse((await docker("image", "inspect", name)).stdout) as DockerInspect[])[0] as DockerInspect;
}

describe.skipIf(skipReason !== "")(`docker-daemon: against a real dockerd${skipReason}`, () => {
  it("loads a generated 8 MiB image: docker image inspect and docker save show its config digest as the ID and its diff ID", async () => {
    const img = await tarLayerImage("daemon-gen", 8 * 1024 * 1024);
    await copyImage(img, parseImageName("docker-daemon:airlock/gen:1"), { destinationContext: { dockerDaemonHost: host } });
    const info = await dockerInspect("airlock/gen:1");
    expect(info.Id).toBe(img.configDigest);
    expect(info.RootFS.Layers).toEqual([img.diffID]);
    expect(info.RepoTags).toEqual(["airlock/gen:1"]);
    // docker save writes the config as stored: its bytes hash to the same ID.
    const tar = join(dir, "gen-save.tar");
    await docker("save", "-o", tar, "airlock/gen:1");
    const items = JSON.parse((await run("tar", ["-xOf", tar, "manifest.json"])).stdout) as { Config: string }[];
    const config = (await run("tar", ["-xOf", tar, items[0]?.Config as string], { encoding: "buffer", maxBuffer: 1 << 20 })).stdout;
    expect(`sha256:${createHash("sha256").update(config).digest("hex")}`).toBe(img.configDigest);
  });

  it("airlock copy oci: → docker-daemon: with gzip layers (--dest-daemon-host), then back out to oci: with the same config and diff IDs", async () => {
    const r = await runCli(["copy", "-q", "--dest-daemon-host", host, `oci:${FIX}/oci:single`, "docker-daemon:airlock/single:1"]);
    expect(r.code, r.stderr).toBe(0);
    const index = JSON.parse(await fs.readFile(join(FIX, "oci", "index.json"), "utf8")) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const single = index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === "single");
    const blob = (d: string) => fs.readFile(join(FIX, "oci", "blobs", "sha256", d.slice("sha256:".length)), "utf8");
    const manifest = JSON.parse(await blob(single?.digest as string)) as { config: { digest: string } };
    const config = JSON.parse(await blob(manifest.config.digest)) as { rootfs: { diff_ids: string[] } };
    const info = await dockerInspect("airlock/single:1");
    expect(info.Id).toBe(manifest.config.digest);
    expect(info.RootFS.Layers).toEqual(config.rootfs.diff_ids);

    const out = join(dir, "out-layout");
    const back = await runCli(["copy", "-q", "--src-daemon-host", host, "docker-daemon:airlock/single:1", `oci:${out}:back`]);
    expect(back.code, back.stderr).toBe(0);
    const outIndex = JSON.parse(await fs.readFile(join(out, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    const outManifest = JSON.parse(await fs.readFile(join(out, "blobs", "sha256", String(outIndex.manifests[0]?.digest).slice(7)), "utf8")) as { config: { digest: string } };
    expect(outManifest.config.digest).toBe(manifest.config.digest);
  });

  it("reads what docker load put there (by name and by image ID, DOCKER_HOST honoured); skopeo reads the same digests", async () => {
    const tar = join(dir, "docker.tar");
    const w = await runCli(["copy", "-q", `oci:${FIX}/oci:docker`, `docker-archive:${tar}:loaded/app:2`]);
    expect(w.code, w.stderr).toBe(0);
    await docker("load", "-i", tar);
    const info = await dockerInspect("loaded/app:2");

    const byName = await withEnv({ DOCKER_HOST: host }, () => runCli(["inspect", "--raw", "docker-daemon:loaded/app:2"]));
    expect(byName.code, byName.stderr).toBe(0);
    const ours = JSON.parse(byName.stdout) as { config: { digest: string }; layers: { digest: string }[] };
    expect(ours.config.digest).toBe(info.Id);
    expect(ours.layers.map((l) => l.digest)).toEqual(info.RootFS.Layers);

    const byID = await runCli(["inspect", "--raw", "--daemon-host", host, `docker-daemon:${info.Id}`]);
    expect(byID.code, byID.stderr).toBe(0);
    expect(byID.stdout).toBe(byName.stdout);

    const theirs = (await skopeo("inspect", "--raw", "--daemon-host", host, "docker-daemon:loaded/app:2")).stdout;
    // skopeo labels the uncompressed layers gzip (containers/image#1270); otherwise the same manifest.
    const digest = (s: string) => `sha256:${createHash("sha256").update(s.trim()).digest("hex")}`;
    expect(digest(theirs.replaceAll("rootfs.diff.tar.gzip", "rootfs.diff.tar"))).toBe(digest(byName.stdout));

    // The same blobs come out of both tools' copies to dir:.
    const a = join(dir, "dir-airlock");
    const s = join(dir, "dir-skopeo");
    const c = await runCli(["copy", "-q", "--src-daemon-host", host, "docker-daemon:loaded/app:2", `dir:${a}`]);
    expect(c.code, c.stderr).toBe(0);
    await skopeo("copy", "-q", "--src-daemon-host", host, "docker-daemon:loaded/app:2", `dir:${s}`);
    const blobs = async (d: string) => (await fs.readdir(d)).filter((f) => /^[0-9a-f]{64}$/.test(f)).sort();
    expect(await blobs(a)).toEqual(await blobs(s));
    expect(await blobs(a)).toEqual([info.Id.slice(7), ...info.RootFS.Layers.map((l) => l.slice(7))].sort());
  });

  it("over tcp:// with TLS and a client certificate (--dest-cert-dir / --cert-dir with ca.pem, cert.pem, key.pem), as skopeo; without one, a TLS error that says what is missing", async () => {
    const w = await runCli(["copy", "-q", "--dest-daemon-host", tlsHost, "--dest-cert-dir", certDir, `oci:${FIX}/oci:base-a`, "docker-daemon:airlock/tls:1"]);
    expect(w.code, w.stderr).toBe(0);
    const ours = await runCli(["inspect", "--raw", "--daemon-host", tlsHost, "--cert-dir", certDir, "docker-daemon:airlock/tls:1"]);
    expect(ours.code, ours.stderr).toBe(0);
    const theirs = (await skopeo("inspect", "--raw", "--daemon-host", tlsHost, "--cert-dir", certDir, "docker-daemon:airlock/tls:1")).stdout;
    const configOf = (raw: string) => (JSON.parse(raw) as { config: { digest: string } }).config.digest;
    expect(configOf(ours.stdout)).toBe(configOf(theirs));
    expect(configOf(ours.stdout)).toBe((await dockerInspect("airlock/tls:1")).Id);

    // The docker CLI's environment: tcp:// is TLS with DOCKER_TLS_VERIFY, certificates from DOCKER_CERT_PATH.
    const env = await withEnv({ DOCKER_HOST: tlsHost, DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: certDir }, () => runCli(["inspect", "--raw", "docker-daemon:airlock/tls:1"]));
    expect(env.code, env.stderr).toBe(0);
    expect(env.stdout).toBe(ours.stdout);

    const noCA = await runCli(["inspect", "--daemon-host", tlsHost, "docker-daemon:airlock/tls:1"]);
    expect(noCA.code).toBe(1);
    expect(noCA.stderr).toMatch(/certificate airlock cannot verify.*ca\.pem in --cert-dir/);
    const noClient = await runCli(["inspect", "--daemon-host", tlsHost, "--tls-verify=false", "docker-daemon:airlock/tls:1"]);
    expect(noClient.code).toBe(1);
    expect(noClient.stderr).toMatch(/wants a client certificate: cert\.pem and key\.pem/);

    // --tls-details applies to the daemon's TLS as to registries': a TLS 1.3 minimum works; only
    // X448, which Go's crypto/tls (dockerd) lacks, fails the handshake, naming the file.
    const min13 = join(certDir, "..", "min13.yaml");
    writeFileSync(min13, 'minVersion: "1.3"\n');
    const ok13 = await runCli(["--tls-details", min13, "inspect", "--raw", "--daemon-host", tlsHost, "--cert-dir", certDir, "docker-daemon:airlock/tls:1"]);
    expect(ok13.code, ok13.stderr).toBe(0);
    const x448 = join(certDir, "..", "x448.yaml");
    writeFileSync(x448, "namedGroups: [x448]\n");
    const refused = await runCli(["--tls-details", x448, "inspect", "--daemon-host", tlsHost, "--cert-dir", certDir, "docker-daemon:airlock/tls:1"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`TLS with the Docker daemon at .* failed: .*handshake failure.*allowed by ${x448.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(--tls-details\\)`, "i"));
  });

  it("a load closed before commit, or refused by the daemon, leaves no image; a missing image exits 2", async () => {
    const img = await tarLayerImage("daemon-abandoned", 64 * 1024);
    const dest = await parseImageName("docker-daemon:airlock/abandoned:1").newDestination({ dockerDaemonHost: host });
    const src = await img.newSource();
    const m = await src.getManifest();
    for (const d of [m.image.config, ...m.image.layers]) await dest.putBlob(d, (await src.getBlob(d)).stream);
    await dest.close();
    await expect(docker("image", "inspect", "airlock/abandoned:1")).rejects.toThrow(/No such image/i);

    // docker load refuses a layer that is not what the config's rootfs.diff_ids says: the commit fails with its words.
    const lying = await tarLayerImage("daemon-lying", 1024, { claimedDiffID: `sha256:${"0".repeat(64)}` as Digest });
    const refused = copyImage(lying, parseImageName("docker-daemon:airlock/lying:1"), { destinationContext: { dockerDaemonHost: host } });
    await expect(refused).rejects.toMatchObject({ code: "ERR_DESTINATION", message: expect.stringMatching(/docker-daemon:airlock\/lying:1: docker load failed in the Docker daemon at unix:.*: invalid diffID for layer 0/) });
    await expect(docker("image", "inspect", "airlock/lying:1")).rejects.toThrow(/No such image/i);

    const r = await runCli(["copy", "-q", "--src-daemon-host", host, "docker-daemon:airlock/nope:1", `oci:${join(dir, "nope")}:x`]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("docker-daemon:airlock/nope:1");
  });
});

describe("docker-daemon: no daemon", () => {
  it("a socket that does not exist is one error line naming it and --daemon-host / DOCKER_HOST; exit 1", async () => {
    const gone = join(tmpdir(), `airlock-no-daemon-${process.pid}.sock`);
    const r = await runCli(["copy", "-q", "--src-daemon-host", `unix://${gone}`, "docker-daemon:busybox:latest", `oci:${join(tmpdir(), `airlock-no-daemon-${process.pid}`)}:x`]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toContain(gone);
    expect(lines[0]).toMatch(/--daemon-host/);
    expect(lines[0]).toMatch(/DOCKER_HOST/);
    const w = await runCli(["copy", "-q", "--dest-daemon-host", `unix://${gone}`, `oci:${FIX}/oci:single`, "docker-daemon:app:1"]);
    expect(w.code).toBe(1);
    expect(w.stderr.trim().split("\n")).toHaveLength(1);
    expect(w.stderr).toContain(gone);
  });
});
