#!/usr/bin/env node
/**
 * make-fixtures.mjs — writes airlock's test images, byte for byte the same on every run.
 *
 *   node scripts/make-fixtures.mjs [OUTDIR]      (OUTDIR defaults to ./fixtures; `npm run fixtures`)
 *
 * It replaces OUTDIR/oci, OUTDIR/dir, OUTDIR/corrupt and OUTDIR/README.md and nothing else.
 *
 * This writer is deliberately independent of airlock's own code (only node: built-ins, a
 * hand-written ustar header, JSON it builds itself), so tests that read its output with airlock
 * check airlock against a second implementation, and tests that read it with skopeo and umoci
 * check the writer against the real tools.
 *
 * Determinism: tar headers carry mtime 0, uid/gid 0, fixed modes and no user names; gzip is
 * node:zlib at level 9 (its header has mtime 0 and no file name); JSON is compact with keys in a
 * fixed order; every list is written in a fixed order. The gzip bytes depend on the zlib inside
 * Node (a different zlib could compress differently); test/fixtures.test.ts regenerates and compares.
 *
 * Specs: https://github.com/opencontainers/image-spec/blob/main/image-layout.md,
 * https://github.com/opencontainers/image-spec/blob/main/config.md,
 * https://distribution.github.io/distribution/spec/manifest-v2-2/
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const MT = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  unknown: "application/vnd.example.unknown+json",
};
const REF_NAME = "org.opencontainers.image.ref.name";
const CREATED = "2024-01-01T00:00:00Z";
const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------------------------
// tar (POSIX ustar), https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06

/** Writes `value` as a zero-padded octal field of `width` bytes (last byte NUL). */
function octal(header, offset, width, value) {
  header.write(value.toString(8).padStart(width - 1, "0"), offset, width - 1, "ascii");
  header[offset + width - 1] = 0;
}

/** One 512-byte ustar header for a regular file ("0") or a directory ("5"). */
function ustarHeader(name, type, mode, size) {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  const h = Buffer.alloc(512, 0);
  h.write(name, 0, 100, "utf8");
  octal(h, 100, 8, mode);
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  octal(h, 124, 12, size);
  octal(h, 136, 12, 0); // mtime
  h.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  h.write(type, 156, 1, "ascii");
  h.write("ustar\u000000", 257, 8, "ascii"); // magic "ustar\0", version "00"
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0"), 148, 6, "ascii");
  h[154] = 0;
  h[155] = 0x20;
  return h;
}

/**
 * An uncompressed tar of `entries` ({ path, mode?, content? }; a path ending in "/" is a
 * directory), ended by two zero blocks.
 */
function tar(entries) {
  const parts = [];
  for (const e of entries) {
    if (e.path.endsWith("/")) {
      parts.push(ustarHeader(e.path, "5", e.mode ?? 0o755, 0));
      continue;
    }
    const body = Buffer.from(e.content ?? "", "utf8");
    parts.push(ustarHeader(e.path, "0", e.mode ?? 0o644, body.length));
    parts.push(body, Buffer.alloc((512 - (body.length % 512)) % 512, 0));
  }
  parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// content-addressed blobs

const sha256 = (bytes) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

/** An in-memory OCI image layout: blobs by digest, and the top-level index entries in order. */
class Layout {
  blobs = new Map();
  entries = [];

  /** Stores `bytes` and returns its descriptor. */
  blob(mediaType, bytes, extra = {}) {
    const digest = sha256(bytes);
    this.blobs.set(digest, bytes);
    return { mediaType, digest, size: bytes.length, ...extra };
  }

  /** Stores `value` as compact JSON and returns its descriptor. */
  json(mediaType, value, extra = {}) {
    return this.blob(mediaType, Buffer.from(JSON.stringify(value), "utf8"), extra);
  }

  /** Names `desc` in index.json. */
  name(ref, desc) {
    this.entries.push({ ...desc, annotations: { [REF_NAME]: ref } });
  }

  /** Writes oci-layout, index.json and blobs/sha256/* under `dir`. */
  write(dir) {
    mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
    writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    const index = { schemaVersion: 2, mediaType: MT.ociIndex, manifests: this.entries };
    writeFileSync(join(dir, "index.json"), JSON.stringify(index));
    for (const digest of [...this.blobs.keys()].sort()) {
      writeFileSync(blobPath(dir, digest), this.blobs.get(digest));
    }
  }
}

const blobPath = (dir, digest) => join(dir, "blobs", "sha256", digest.slice("sha256:".length));

/** A gzipped layer: the stored blob's descriptor, and the diff_id of its uncompressed tar. */
function layer(layout, mediaType, entries) {
  const raw = tar(entries);
  const desc = layout.blob(mediaType, gzipSync(raw, { level: 9 }));
  return { desc, diffId: sha256(raw), entries };
}

/**
 * Builds one image (config + manifest) from `layers` and returns the manifest's descriptor.
 * `docker: true` writes a Docker v2 schema 2 image instead of an OCI one.
 */
function image(layout, { name, platform, layers, docker = false, annotations }) {
  const history = layers.map((_l, i) => ({
    created: CREATED,
    created_by: `/bin/sh -c #(nop) ADD layer ${i + 1} of ${name}`,
  }));
  history.push({
    created: CREATED,
    created_by: '/bin/sh -c #(nop) CMD ["/bin/sh"]',
    empty_layer: true,
  });
  const config = {
    created: CREATED,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: [PATH_ENV, `FIXTURE=${name}`],
      Cmd: ["/bin/sh"],
      WorkingDir: "/",
      Labels: {
        "org.opencontainers.image.title": `airlock fixture ${name}`,
        "org.airlock.fixture": name,
      },
    },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history,
  };
  const configDesc = layout.json(docker ? MT.dockerConfig : MT.ociConfig, config);
  const manifest = {
    schemaVersion: 2,
    mediaType: docker ? MT.dockerManifest : MT.ociManifest,
    config: configDesc,
    layers: layers.map((l) => l.desc),
    ...(annotations ? { annotations } : {}),
  };
  return { manifest, layers, desc: layout.json(manifest.mediaType, manifest) };
}

const amd64 = { architecture: "amd64", os: "linux" };
const arm64 = { architecture: "arm64", os: "linux", variant: "v8" };

/** A small base layer: an os-release and a marker naming what it belongs to. */
function baseEntries(tag) {
  return [
    { path: "etc/" },
    { path: "etc/os-release", content: `NAME="airlock fixture"\nID=airlock\nVARIANT_ID=${tag}\n` },
    { path: "etc/hostname", content: "fixture\n" },
  ];
}

/** A small application layer. */
function appEntries(tag) {
  return [
    { path: "app/" },
    { path: "app/hello.txt", content: `hello from ${tag}\n` },
    { path: "app/run.sh", mode: 0o755, content: `#!/bin/sh\necho "hello from ${tag}"\n` },
  ];
}

// ---------------------------------------------------------------------------------------------
// the fixtures

/** Describes each named image for README.md: [name, digest, mediaType, summary]. */
const summary = [];

function buildMain() {
  const oci = new Layout();

  const single = image(oci, {
    name: "single",
    platform: amd64,
    layers: [
      layer(oci, MT.ociLayerGzip, baseEntries("single")),
      layer(oci, MT.ociLayerGzip, appEntries("single")),
    ],
  });
  oci.name("single", single.desc);
  summary.push(["single", single.desc, "OCI manifest, linux/amd64, 2 gzip layers"]);

  const children = [
    [amd64, "linux/amd64"],
    [arm64, "linux/arm64/v8"],
  ].map(([platform, label]) => {
    const tag = `multi-${platform.architecture}`;
    const img = image(oci, {
      name: tag,
      platform,
      layers: [
        layer(oci, MT.ociLayerGzip, [
          ...baseEntries(tag),
          { path: "etc/arch", content: `${label}\n` },
        ]),
      ],
    });
    return { ...img.desc, platform };
  });
  const multi = oci.json(MT.ociIndex, { schemaVersion: 2, mediaType: MT.ociIndex, manifests: children });
  oci.name("multi", multi);
  summary.push(["multi", multi, "OCI index: linux/amd64 and linux/arm64/v8, 1 gzip layer each"]);

  const shared = layer(oci, MT.ociLayerGzip, baseEntries("shared-base"));
  for (const tag of ["base-a", "base-b"]) {
    const img = image(oci, {
      name: tag,
      platform: amd64,
      layers: [shared, layer(oci, MT.ociLayerGzip, appEntries(tag))],
    });
    oci.name(tag, img.desc);
    summary.push([
      tag,
      img.desc,
      `OCI manifest, linux/amd64; layer 1 (${shared.desc.digest.slice(0, 19)}…) shared by base-a and base-b`,
    ]);
  }

  const docker = image(oci, {
    name: "docker",
    platform: amd64,
    docker: true,
    layers: [
      layer(oci, MT.dockerLayerGzip, baseEntries("docker")),
      layer(oci, MT.dockerLayerGzip, appEntries("docker")),
    ],
  });
  oci.name("docker", docker.desc);
  summary.push(["docker", docker.desc, "Docker v2 schema 2 manifest, linux/amd64, 2 gzip layers"]);
  return { oci, docker };
}

/**
 * Writes `img` (from `layout`) as skopeo's `dir:` layout: `version`, `manifest.json` (the same
 * bytes as the manifest blob) and one file per config/layer blob named by the digest's hex.
 * @see https://github.com/containers/image/blob/main/directory/directory_dest.go
 */
function writeDir(dir, layout, img) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "version"), "Directory Transport Version: 1.1\n");
  writeFileSync(join(dir, "manifest.json"), layout.blobs.get(img.desc.digest));
  for (const d of [img.manifest.config, ...img.manifest.layers]) {
    writeFileSync(join(dir, d.digest.slice("sha256:".length)), layout.blobs.get(d.digest));
  }
}

/**
 * The corrupt cases: each a layout with one image `bad` (2 layers), valid except for one fault.
 * Each entry: [case, description, fault(dir, built)].
 */
const CORRUPT = [
  [
    "digest-mismatch",
    "layer 2 replaced by another valid gzipped tar of the same size (one letter differs); file name unchanged",
    (dir, { manifest, layers }) => {
      const want = manifest.layers[1];
      const original = layers[1].entries;
      // Change one letter of app/hello.txt at a time until the gzip has the same size.
      const text = original.find((e) => e.path === "app/hello.txt").content;
      for (let i = 0; i < text.length - 1; i++) {
        for (const c of "abcdefghijklmnopqrstuvwxyz") {
          if (c === text[i]) continue;
          const content = text.slice(0, i) + c + text.slice(i + 1);
          const entries = original.map((e) => (e.path === "app/hello.txt" ? { ...e, content } : e));
          const bytes = gzipSync(tar(entries), { level: 9 });
          if (bytes.length === want.size) {
            writeFileSync(blobPath(dir, want.digest), bytes);
            return want.digest;
          }
        }
      }
      throw new Error("digest-mismatch: no same-size replacement found");
    },
  ],
  [
    "truncated-blob",
    "layer 2 cut to half its size",
    (dir, { manifest }) => {
      const p = blobPath(dir, manifest.layers[1].digest);
      const bytes = readFileSync(p);
      writeFileSync(p, bytes.subarray(0, bytes.length >> 1));
      return manifest.layers[1].digest;
    },
  ],
  [
    "missing-blob",
    "layer 2 deleted",
    (dir, { manifest }) => {
      rmSync(blobPath(dir, manifest.layers[1].digest));
      return manifest.layers[1].digest;
    },
  ],
  [
    "unknown-media-type",
    `manifest and its index.json entry say ${MT.unknown}`,
    null, // built differently, see buildCorrupt
  ],
  [
    "bad-manifest-digest",
    'manifest bytes changed (annotation "bad" → "BAD"; still valid JSON, same size)',
    (dir, { desc }) => {
      const p = blobPath(dir, desc.digest);
      const text = readFileSync(p).toString("utf8");
      const changed = text.replace('"org.airlock.fixture":"bad"', '"org.airlock.fixture":"BAD"');
      if (changed === text) throw new Error("bad-manifest-digest: annotation not found");
      writeFileSync(p, changed);
      return desc.digest;
    },
  ],
];

function buildCorrupt(name) {
  const layout = new Layout();
  const layers = [
    layer(layout, MT.ociLayerGzip, baseEntries(`corrupt-${name}`)),
    layer(layout, MT.ociLayerGzip, appEntries(`corrupt-${name}`)),
  ];
  const built = image(layout, {
    name: "bad",
    platform: amd64,
    layers,
    annotations: { "org.airlock.fixture": "bad" },
  });
  if (name === "unknown-media-type") {
    const manifest = { ...built.manifest, mediaType: MT.unknown };
    const desc = layout.json(MT.unknown, manifest);
    layout.blobs.delete(built.desc.digest); // only the unknown-typed manifest is stored
    layout.name("bad", desc);
    return { layout, built: { manifest, layers, desc }, faulty: desc.digest };
  }
  layout.name("bad", built.desc);
  return { layout, built };
}

// ---------------------------------------------------------------------------------------------
// main

function main() {
  const here = dirname(fileURLToPath(import.meta.url));
  const out = resolve(process.argv[2] ?? join(here, "..", "fixtures"));
  for (const part of ["oci", "dir", "corrupt", "README.md"]) rmSync(join(out, part), { recursive: true, force: true });
  mkdirSync(out, { recursive: true });

  const { oci, docker } = buildMain();
  oci.write(join(out, "oci"));
  writeDir(join(out, "dir", "docker"), oci, docker);

  const corruptRows = [];
  for (const [name, description, fault] of CORRUPT) {
    const dir = join(out, "corrupt", name);
    const { layout, built, faulty } = buildCorrupt(name);
    layout.write(dir);
    const digest = fault ? fault(dir, built) : faulty;
    corruptRows.push([name, description, digest]);
  }

  writeFileSync(join(out, "README.md"), readme(corruptRows));

  for (const [name, desc] of summary) console.log(`oci:fixtures/oci:${name}\t${desc.digest}`);
  console.log(`dir:fixtures/dir/docker\t${docker.desc.digest}`);
  for (const [name, , digest] of corruptRows) console.log(`oci:fixtures/corrupt/${name}:bad\tfault in ${digest}`);
}

function readme(corruptRows) {
  const rows = summary.map(
    ([name, desc, what]) => `| \`${name}\` | \`${desc.digest}\` | \`${desc.mediaType}\` | ${what} |`,
  );
  const bad = corruptRows.map(([name, what, digest]) => `| \`corrupt/${name}\` | ${what} | \`${digest}\` |`);
  return `# Test fixtures

Generated by \`scripts/make-fixtures.mjs\` — do not edit by hand. Regenerate with

    npm run fixtures

The script is independent of airlock's code and deterministic (tar mtime 0, uid/gid 0, fixed modes;
gzip level 9 from the zlib built into Node). \`test/fixtures.test.ts\`
regenerates into a temporary directory and fails if the result differs from what is committed,
checks every digest and size independently of airlock, and reads the images with skopeo and umoci.

## \`oci/\` — one valid OCI image layout with several named images

Each image is an \`index.json\` entry named by \`${REF_NAME}\`, e.g. \`oci:fixtures/oci:single\`.
Configs carry Env, Cmd, Labels, history and \`created: ${CREATED}\`; \`rootfs.diff_ids\` are the
sha256 of the uncompressed layer tars. Layers hold \`etc/os-release\`, \`etc/hostname\` (base) and
\`app/hello.txt\`, \`app/run.sh\` (application); the \`multi\` children hold \`etc/arch\` too.

| name | digest | media type | what |
|---|---|---|---|
${rows.join("\n")}

## \`dir/docker/\` — the \`docker\` image in skopeo's \`dir:\` layout

The same manifest, config and layer bytes as \`oci:fixtures/oci:docker\` (same digest), as
\`version\`, \`manifest.json\` and one file per blob named by its hex digest. skopeo 1.9.3 skips
\`index.json\` entries with Docker media types in an OCI layout ("no descriptor found for
reference"), so \`skopeo inspect dir:fixtures/dir/docker\` is how the real tool reads this image.

## \`corrupt/<case>/\` — layouts valid except for one fault

Each holds one image named \`bad\` (OCI manifest, linux/amd64, 2 gzip layers, e.g.
\`oci:fixtures/corrupt/missing-blob:bad\`).

| layout | fault | digest of the faulty blob |
|---|---|---|
${bad.join("\n")}

## Where image signatures are kept

The committed fixtures carry no signatures (tests sign with \`fixtures/keys\` at run time), but the
same layouts hold them when airlock copies a signed image or signs one (\`airlock copy --sign-by-key\`).
Signatures are containers-signature(5) "simple signing" blobs (binary OpenPGP signed messages),
stored as opaque files numbered from 1 and read until the first missing number:

| where | files | who else reads them |
|---|---|---|
| \`dir:\` | \`signature-1\`, \`signature-2\`, … for the top-level manifest; \`<hex>.signature-N\` for an image an index lists | skopeo, podman (the \`dir:\` layout's own files) |
| \`docker://\` | lookaside storage per registries.d(5): \`BASE/REPOSITORY@sha256=<hex>/signature-N\`, written to \`lookaside-staging\` (a \`file://\` URL), read from \`lookaside\` | skopeo, podman, CRI-O with the same registries.d |
| \`oci:\` | \`signatures/<alg>/<hex>/signature-N\` in the layout directory, keyed by the digest of the manifest signed (the top-level one, or an index's image) | airlock only: skopeo 1.9.3 stores no signatures in \`oci:\`; other tools ignore the directory (it is outside \`blobs/\` and \`index.json\`) |

A signature names its image inside its payload, so one set per manifest digest serves every
\`index.json\` name that points at that manifest. Copying into \`oci:\` replaces that digest's set with
the one copied (none given: the stored ones stay); copying into \`dir:\` leaves exactly the copied ones.
`;
}

main();
