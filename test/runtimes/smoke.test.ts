/**
 * The round trip on every runtime airlock supports — Node, Bun, Deno — and as the single-file
 * executable that `npm run compile` builds: export the fixtures example
 * (manifests/examples/fixtures.yaml), verify the bundle, import it into a real registry
 * (docker-registry over TLS with its own CA, given by --dest-cert-dir / --cert-dir: Bun once
 * swapped undici for a stub that ignored TLS options), inspect the result. Every runtime must push the same manifests under the
 * same names with the same digests.
 *
 * Bun and Deno come from the npm dev dependencies (node_modules/.bin); a runtime whose binary is
 * absent is skipped, and the test name says so. The executable runs with a PATH that has no node;
 * it exports with --include-tool (itself), and the copy of it taken out of the bundle with tar
 * verifies the bundle and imports it.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, promises as fs, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { AIRLOCK_BIN, runCommand } from "../support/cli.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const BUN = bin("bun");
const DENO = bin("deno");
// Each round trip starts four processes; on a loaded CI machine a start-up can take seconds.
const TIMEOUT = 180_000;
const HOST_PLATFORM = `${process.platform}-${process.arch}`;

/** How to start airlock on one runtime: the program and the arguments before airlock's own. */
interface Runtime {
  name: string;
  command: () => string;
  prefix: string[];
  env?: () => NodeJS.ProcessEnv;
  /** Why the runtime cannot run here, or undefined. */
  absent?: string;
}

let registry: RunningRegistry;
let work: string;
let compiled: string | undefined;
let noNodeDir: string;
let certDir: string;
let agent: Agent;

const runtimes: Runtime[] = [
  { name: "node", command: () => process.execPath, prefix: [AIRLOCK_BIN] },
  { name: "bun", command: () => BUN, prefix: [AIRLOCK_BIN], absent: existsSync(BUN) ? undefined : "node_modules/.bin/bun is absent" },
  { name: "deno", command: () => DENO, prefix: ["run", "-A", AIRLOCK_BIN], absent: existsSync(DENO) ? undefined : "node_modules/.bin/deno is absent" },
];

/** Runs `command ARGS` in `cwd`. */
const run = (command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) => runCommand(command, args, { cwd, env });

/** Fetches the digest the registry holds for `repo:tag` (HEAD, every manifest media type). */
async function registryDigest(repo: string, tag: string): Promise<string | null> {
  const accept = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
  ].join(", ");
  const res = await request(`${registry.url}/v2/${repo}/manifests/${tag}`, { method: "HEAD", headers: { accept }, dispatcher: agent });
  await res.body.dump();
  const digest = res.headers["docker-content-digest"];
  return res.statusCode === 200 && typeof digest === "string" ? digest : null;
}

/**
 * Runs the round trip with `airlock` = `command prefix…`; returns NAME → digest as pushed. With
 * `includeTool` (the single-file executable), the bundle carries the executable and the copy
 * that `tar` takes out of it runs verify and import.
 */
async function roundTrip(label: string, command: string, prefix: string[], env?: NodeJS.ProcessEnv, includeTool = false): Promise<Map<string, string>> {
  const dir = join(work, label);
  await fs.mkdir(dir);
  await fs.cp(join(root, "manifests"), join(dir, "manifests"), { recursive: true });
  await fs.cp(join(root, "fixtures"), join(dir, "fixtures"), { recursive: true });
  let airlockCommand = command;
  const airlock = async (...args: string[]) => {
    const r = await run(airlockCommand, [...prefix, ...args], dir, env);
    expect(r.code, `${label}: airlock ${args.join(" ")}\n${r.stderr}`).toBe(0);
    return r;
  };

  await airlock("export", "-f", "manifests/examples/fixtures.yaml", "-o", "bundle.tar", "-q", ...(includeTool ? ["--include-tool"] : []));
  if (includeTool) {
    // The air-gapped side has only the bundle: it takes the executable out with tar and uses it.
    const name = `airlock-${HOST_PLATFORM}`;
    const untar = await run("tar", ["-xf", "bundle.tar", "--strip-components=2", `airlock/tool/${name}`], dir);
    expect(untar.code, untar.stderr).toBe(0);
    const carried = join(dir, name);
    expect(((await fs.stat(carried)).mode & 0o777).toString(8)).toBe("755");
    const sha256 = async (f: string) => createHash("sha256").update(await fs.readFile(f)).digest("hex");
    expect(await sha256(carried)).toBe(await sha256(command));
    airlockCommand = carried;
  }
  const verified = await airlock("verify", "bundle.tar");
  if (includeTool) expect(verified.stdout).toMatch(new RegExp(`^ok +tool airlock/tool/airlock-${HOST_PLATFORM} \\(linux/(amd64|arm64), [^)]+\\) sha256:[0-9a-f]{64}$`, "m"));
  // verify prints "ok  NAME DIGEST" for every image it checked.
  const inBundle = new Map([...verified.stdout.matchAll(/^ok\s+(\S+)\s+(sha256:[0-9a-f]{64})$/gm)].map((m) => [m[1], m[2]]));
  expect(inBundle.size, `${label}: verify output\n${verified.stdout}`).toBe(7);

  await airlock("import", "bundle.tar", "--to", `${registry.host}/${label}`, "--dest-cert-dir", certDir, "-q");
  const pushed = new Map<string, string>();
  for (const [name, digest] of inBundle) {
    const [repo, tag] = name.split(":");
    const got = await registryDigest(`${label}/${repo}`, tag);
    expect(got, `${label}: ${name} in the registry`).toBe(digest);
    pushed.set(name, digest);
  }
  // inspect through the runtime itself: the raw manifest's bytes hash to the digest it reports.
  const ref = `docker://${registry.host}/${label}/fixtures/single:1.0`;
  const inspected = await airlock("inspect", "--cert-dir", certDir, "--format", "{{.Digest}} {{.Architecture}} {{len .Layers}}", ref);
  expect(inspected.stdout.trim()).toBe(`${inBundle.get("fixtures/single:1.0")} amd64 2`);
  return pushed;
}

const results = new Map<string, Map<string, string>>();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "airlock-runtimes-"));
  noNodeDir = join(work, "empty-path");
  await fs.mkdir(noNodeDir);
  registry = await startRegistry({ mode: "tls" });
  certDir = registry.certDir ?? "";
  agent = new Agent({ connect: { ca: await fs.readFile(registry.caFile ?? "") } });
});

afterAll(async () => {
  await agent?.close();
  await registry?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe.concurrent("the round trip on every runtime", () => {
  for (const rt of runtimes) {
    const name = rt.absent ? `${rt.name} (skipped: ${rt.absent})` : `${rt.name}: export, verify, import, inspect`;
    it.skipIf(Boolean(rt.absent))(name, async () => {
      results.set(rt.name, await roundTrip(rt.name, rt.command(), rt.prefix));
    }, TIMEOUT);
  }

  const compileName = existsSync(BUN) ? `the single-file executable (airlock-${HOST_PLATFORM}, PATH without node): export, verify, import, inspect` : "the single-file executable (skipped: node_modules/.bin/bun is absent)";
  it.skipIf(!existsSync(BUN))(compileName, async () => {
    const out = join(work, "exe");
    const built = await run(process.execPath, [join(root, "scripts", "compile.mjs"), "--host-only", "--no-tsc", "--out-dir", out], root);
    expect(built.code, built.stderr).toBe(0);
    compiled = join(out, `airlock-${HOST_PLATFORM}`);
    // The build prints the executable's size in bytes.
    const size = (await fs.stat(compiled)).size;
    expect(built.stdout).toContain(`(${size} bytes)`);
    const env = { PATH: noNodeDir, HOME: work, TMPDIR: tmpdir() };
    expect(spawnSync("/bin/sh", ["-c", "command -v node"], { env }).status, "node must not be on the PATH").not.toBe(0);
    results.set("compiled", await roundTrip("compiled", compiled, [], env, true));
  }, TIMEOUT);
});

describe("every runtime", () => {
  it("pushed the same images with the same digests", () => {
    const node = results.get("node");
    expect(node?.size).toBe(7);
    for (const [name, pushed] of results) expect(Object.fromEntries(pushed), name).toEqual(Object.fromEntries(node ?? []));
    // Node plus every runtime that is installed here.
    expect(results.size).toBe(1 + runtimes.filter((r) => r.name !== "node" && !r.absent).length + (existsSync(BUN) ? 1 : 0));
  });
});
