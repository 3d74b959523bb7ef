/**
 * Hand-built Docker schema 1 images for tests: real gzip tar layers, a v1Compatibility history
 * as Docker 1.x wrote it (newest first, the top entry carrying the whole config, `throwaway`
 * entries for instructions that add no files), and — for `v1+prettyjws` — a real JWS signature
 * block made the way libtrust makes one (ES256 over `protected.payload`, the JWK in the header).
 * @see https://github.com/distribution/distribution/blob/v2.8.2/docs/spec/manifest-v2-1.md
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";

/** One blob of a generated image. */
export interface Schema1Blob {
  digest: string;
  /** sha256 of the uncompressed tar. */
  diffID: string;
  bytes: Buffer;
}

/** A generated schema 1 image. */
export interface Schema1Image {
  /** The manifest bytes as stored (signed or not). */
  manifest: Buffer;
  /** What its digest is computed over: the JWS payload for a signed manifest, else the bytes. */
  payload: Buffer;
  digest: string;
  mediaType: string;
  /** The distinct blobs (fsLayers), base layer first. */
  blobs: Schema1Blob[];
  /** The non-empty layers, base first (what a converted image has). */
  layers: Schema1Blob[];
}

const sha256 = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function tarOf(files: Record<string, string>): Promise<Buffer> {
  const p = pack();
  for (const [name, content] of Object.entries(files)) p.entry({ name, mtime: new Date(0), mode: 0o644 }, content);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function blob(files: Record<string, string>): Promise<Schema1Blob> {
  const tar = await tarOf(files);
  const bytes = gzipSync(tar);
  return { digest: sha256(bytes), diffID: sha256(tar), bytes };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** libtrust's key ID: the SHA-256 of the DER public key, first 240 bits, base32, in groups of 4. */
function libtrustKeyID(key: KeyObject): string {
  const der = key.export({ format: "der", type: "spki" });
  const bits = createHash("sha256").update(der).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let out = "";
  let buffer = 0;
  let n = 0;
  for (const byte of bits) {
    buffer = (buffer << 8) | byte;
    n += 8;
    while (n >= 5) {
      out += alphabet[(buffer >> (n - 5)) & 31];
      n -= 5;
    }
  }
  return out.match(/.{4}/g)?.join(":") ?? out;
}

/** Signs `payload` (3-space indented JSON ending in `\n}`) as libtrust's PrettySignature does. */
export function signSchema1(payload: Buffer, time = "2017-01-01T00:00:00Z"): Buffer {
  const text = payload.toString("utf8");
  const close = text.lastIndexOf("}");
  const formatLength = text.slice(0, close).trimEnd().length;
  const tail = text.slice(formatLength);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicKey.export({ format: "jwk" });
  const protectedHeader = b64url(JSON.stringify({ formatLength, formatTail: b64url(tail), time }));
  const signature = sign("sha256", Buffer.from(`${protectedHeader}.${b64url(payload)}`), { key: privateKey, dsaEncoding: "ieee-p1363" });
  const block = [{ header: { jwk: { crv: jwk.crv, kid: libtrustKeyID(publicKey), kty: jwk.kty, x: jwk.x, y: jwk.y }, alg: "ES256" }, signature: b64url(signature), protected: protectedHeader }];
  const sigs = JSON.stringify(block, null, 3).replaceAll("\n", "\n   ");
  return Buffer.from(`${text.slice(0, formatLength)},\n   "signatures": ${sigs}\n}`);
}

/**
 * Builds a schema 1 image of three history entries (newest first): a throwaway `CMD`, a layer
 * adding `/etc/motd`, and a base layer adding `/hello.txt`. `seed` varies the content.
 */
export async function makeSchema1Image(options: { name?: string; tag?: string; signed?: boolean; seed?: string; architecture?: string } = {}): Promise<Schema1Image> {
  const seed = options.seed ?? "one";
  const base = await blob({ "hello.txt": `hello ${seed}\n` });
  const second = await blob({ "etc/motd": `welcome ${seed}\n` });
  const empty = await blob({});
  const arch = options.architecture ?? "amd64";
  const ids = ["a", "b", "c"].map((x) => createHash("sha256").update(`${seed}${x}`).digest("hex"));
  const history = [
    {
      architecture: arch,
      config: {
        Hostname: "",
        User: "65534:65534",
        ExposedPorts: { "8080/tcp": {}, "53/udp": {} },
        Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", `SEED=${seed}`],
        Cmd: ["/bin/sh"],
        ArgsEscaped: true,
        Volumes: { "/data": {} },
        WorkingDir: "/srv",
        Entrypoint: null,
        Labels: { "org.example.b": "2", "org.example.a": "1 <&> 2" },
      },
      container: "3b2a1c0d",
      container_config: { Cmd: ["/bin/sh", "-c", '#(nop) CMD ["/bin/sh"]'] },
      created: "2017-01-02T03:04:05.123456789Z",
      docker_version: "1.13.1",
      id: ids[2],
      os: "linux",
      parent: ids[1],
      throwaway: true,
    },
    { id: ids[1], parent: ids[0], created: "2017-01-02T04:04:04.500+01:00", container_config: { Cmd: ["/bin/sh", "-c", "echo welcome > /etc/motd && true"] }, author: "airlock tests", Size: 17 },
    { id: ids[0], created: "2017-01-02T03:04:03.000Z", container_config: { Cmd: ["/bin/sh", "-c", "#(nop) ADD file:hello in /"] }, comment: "base" },
  ];
  const json = {
    schemaVersion: 1,
    name: options.name ?? "library/s1",
    tag: options.tag ?? "latest",
    architecture: arch,
    fsLayers: [{ blobSum: empty.digest }, { blobSum: second.digest }, { blobSum: base.digest }],
    history: history.map((h) => ({ v1Compatibility: JSON.stringify(h) })),
  };
  const payload = Buffer.from(JSON.stringify(json, null, 3));
  const manifest = options.signed ? signSchema1(payload) : payload;
  return {
    manifest,
    payload,
    digest: sha256(payload),
    mediaType: options.signed ? "application/vnd.docker.distribution.manifest.v1+prettyjws" : "application/vnd.docker.distribution.manifest.v1+json",
    blobs: [base, second, empty],
    layers: [base, second],
  };
}

/** Writes `image` as a skopeo `dir:` layout (manifest.json, one file per blob, version). */
export async function writeSchema1Dir(dir: string, image: Schema1Image): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(join(dir, "version"), "Directory Transport Version: 1.1\n");
  await fs.writeFile(join(dir, "manifest.json"), image.manifest);
  for (const b of image.blobs) await fs.writeFile(join(dir, b.digest.slice("sha256:".length)), b.bytes);
}
