#!/usr/bin/env node
// Peak memory with one large layer: a generated image with a single layer of SIZE (default 1 GiB)
// is pushed into a docker-registry, exported to a bundle and imported into a second registry, each
// airlock step under `/usr/bin/time -f %M` (peak RSS). Nothing is kept: the data lives in a
// temporary directory that is removed at the end.
//   node scripts/bench-large-layer.mjs [--size-mib 1024] [--keep]
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const airlock = `node ${join(root, "apps/airlock/bin/airlock.js")}`;
const args = process.argv.slice(2);
const MiB = 1024 * 1024;
const sizeArg = args.indexOf("--size-mib");
const SIZE = (sizeArg >= 0 ? Number(args[sizeArg + 1]) : 1024) * MiB;
const work = mkdtempSync(join(tmpdir(), "airlock-large-"));

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRegistry(name) {
  const port = await freePort();
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const config = join(dir, "config.yml");
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: bench\n`);
  const proc = spawn("docker-registry", ["serve", config], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/v2/`)).ok) return { host: `127.0.0.1:${port}`, stop: () => proc.kill() };
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("docker-registry did not start");
}

/** An OCI layout with one image whose only layer is SIZE pseudo-random bytes, written as it is hashed. */
async function makeLayout(dir) {
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  const tmp = join(dir, "layer.tmp");
  const out = createWriteStream(tmp);
  const hash = createHash("sha256");
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16));
  const zeros = Buffer.alloc(4 * MiB);
  for (let left = SIZE; left > 0; left -= zeros.length) {
    const b = cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    hash.update(b);
    if (!out.write(b)) await new Promise((r) => out.once("drain", r));
  }
  await new Promise((r) => out.end(r));
  const layer = { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${hash.digest("hex")}`, size: SIZE };
  execFileSync("mv", [tmp, join(dir, "blobs/sha256", layer.digest.slice(7))]);
  const put = (obj) => {
    const buf = Buffer.from(JSON.stringify(obj));
    const digest = `sha256:${createHash("sha256").update(buf).digest("hex")}`;
    writeFileSync(join(dir, "blobs/sha256", digest.slice(7)), buf);
    return { digest, size: buf.length };
  };
  const config = { mediaType: "application/vnd.oci.image.config.v1+json", ...put({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [layer.digest] } }) };
  const manifest = { mediaType: "application/vnd.oci.image.manifest.v1+json", ...put({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config, layers: [layer] }) };
  writeFileSync(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": "big" } }] }));
}

/** Runs `cmd` under GNU time: seconds and peak RSS (MiB). */
function timed(cmd) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync("/usr/bin/time", ["-f", "%M", "bash", "-c", cmd], { encoding: "utf8" });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  const kib = Number(r.stderr.trim().split("\n").at(-1));
  return { secs: Number(secs.toFixed(2)), peakRssMiB: Math.round(kib / 1024) };
}

const regs = [];
try {
  console.error(`large-layer: generating a ${SIZE / MiB} MiB layer in ${work}…`);
  await makeLayout(join(work, "layout"));
  const src = await startRegistry("src");
  const dst = await startRegistry("dst");
  regs.push(src, dst);
  execFileSync("bash", ["-c", `skopeo copy -q --dest-tls-verify=false oci:${join(work, "layout")}:big docker://${src.host}/large/big:1`], { stdio: "inherit" });
  rmSync(join(work, "layout"), { recursive: true, force: true });
  const yaml = join(work, "images.yaml");
  writeFileSync(yaml, `version: 1\nregistries:\n  "${src.host}": {tlsVerify: false}\nimages:\n  - name: ${src.host}/large/big\n    tags: ["1"]\n`);
  const bundle = join(work, "bundle.tar");
  const results = {
    sizeMiB: SIZE / MiB,
    export: timed(`${airlock} export -q -f ${yaml} -o ${bundle}`),
    import: timed(`${airlock} import -q ${bundle} --to ${dst.host} --dest-tls-verify=false`),
  };
  console.log(JSON.stringify(results, null, 2));
} finally {
  for (const r of regs) r.stop();
  if (!args.includes("--keep")) rmSync(work, { recursive: true, force: true });
}
