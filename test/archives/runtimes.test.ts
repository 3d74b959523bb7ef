/**
 * zstd compression and the archive transports on Bun and Deno, whose node:zlib has zstd (Node 20's
 * has not: there `--dest-compress-format zstd` says which runtime it needs, see convert.test.ts).
 * The CLI runs on each runtime; skopeo checks what it wrote. Both runtimes must write the same
 * zstd bytes (libzstd, level 3). A runtime whose binary is absent from node_modules/.bin is skipped.
 */
import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AIRLOCK_BIN } from "../support/cli.js";

const run = promisify(execFile);
const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args], { maxBuffer: 16 << 20 });
const root = fileURLToPath(new URL("../..", import.meta.url));
const FIX = join(root, "fixtures");
const runtimes = [
  { name: "bun", bin: join(root, "node_modules", ".bin", "bun"), prefix: [AIRLOCK_BIN] },
  { name: "deno", bin: join(root, "node_modules", ".bin", "deno"), prefix: ["run", "-A", AIRLOCK_BIN] },
];

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-runtimes-archive-"));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const digests = new Map<string, string>();

describe.each(runtimes)("$name", ({ name, bin, prefix }) => {
  it.skipIf(!existsSync(bin))(`${name}: --dest-compress-format zstd writes zstd layers skopeo reads back to the same image; docker-archive and oci-archive work`, { timeout: 120_000 }, async () => {
    const airlock = (...args: string[]) => run(bin, [...prefix, ...args], { cwd: root, maxBuffer: 16 << 20 });
    const out = join(dir, name);
    await airlock("copy", "-q", "--dest-compress-format", "zstd", "--digestfile", `${out}.digest`, `oci:${FIX}/oci:single`, `oci:${out}:z`);
    const raw = JSON.parse((await skopeo("inspect", "--raw", `oci:${out}:z`)).stdout) as { layers: { mediaType: string }[] };
    expect(raw.layers.map((l) => l.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.v1.tar+zstd"]);
    // skopeo decompresses them to exactly the image skopeo makes of the gzip original.
    await skopeo("copy", "--dest-decompress", "--digestfile", `${out}.a`, `oci:${out}:z`, `dir:${out}-a`);
    await skopeo("copy", "--dest-decompress", "--digestfile", `${out}.b`, `oci:${FIX}/oci:single`, `dir:${out}-b`);
    expect(await fs.readFile(`${out}.a`, "utf8")).toBe(await fs.readFile(`${out}.b`, "utf8"));
    digests.set(name, await fs.readFile(`${out}.digest`, "utf8"));
    // The archives on this runtime: skopeo reads them.
    await airlock("copy", "-q", `oci:${out}:z`, `docker-archive:${out}.tar:z:1`);
    expect(JSON.parse((await skopeo("inspect", `docker-archive:${out}.tar:z:1`)).stdout).Layers).toHaveLength(2);
    await airlock("copy", "-q", "--all", `oci:${FIX}/oci:multi`, `oci-archive:${out}-oci.tar:multi`);
    expect((await skopeo("inspect", "--raw", `oci-archive:${out}-oci.tar:multi`)).stdout).toBe(await fs.readFile(join(FIX, "oci/blobs/sha256/4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01"), "utf8"));
    if (digests.size === 2) expect(digests.get("bun")).toBe(digests.get("deno"));
  });
});
