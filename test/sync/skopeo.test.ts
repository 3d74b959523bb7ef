/**
 * `airlock sync` names images as the real `skopeo sync` (1.9.3) does: the same SOURCE,
 * DESTINATION and flags give the same destination references, for registry, YAML (regex and
 * semver selection included) and `dir:` sources. And where skopeo stops, airlock goes on: a
 * re-run into a `dir:` destination, a `--scoped` source registry with a port.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const execFileP = promisify(execFile);
const FIX = join(import.meta.dirname, "../../fixtures");
const tmp = mkdtempSync(join(tmpdir(), "airlock-sync-skopeo-"));
let reg: RunningRegistry;
let H: string;

beforeAll(async () => {
  reg = await startRegistry({ mode: "plain" });
  H = reg.host;
  const seed: [string, string][] = [
    ["src/app:1.0.0", "single"],
    ["src/app:1.1.0", "base-a"],
    ["src/app:1.2.0-rc1", "base-b"],
    ["src/app:2.0.0", "docker"],
    ["src/app:latest", "single"],
    ["src/ns/tool:1.0", "base-a"],
    ["src/ns/tool:v1.5", "base-b"],
    ["src/ns/tool:3.1", "single"],
    ["src/ns/tool:edge", "docker"],
  ];
  for (const [ref, img] of seed) {
    const r = await runCli(["copy", "-q", `oci:${FIX}/oci:${img}`, `docker://${H}/${ref}`]);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const TLS = ["--src-tls-verify=false", "--dest-tls-verify=false"];

async function skopeo(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await execFileP("skopeo", ["--insecure-policy", "sync", ...args], { encoding: "utf8" });
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? 1, stderr: e.stderr ?? "" };
  }
}

/** The destinations `skopeo sync --dry-run ARGS` would write, sorted. */
async function skopeoPlan(args: string[]): Promise<string[]> {
  const r = await skopeo(["--dry-run", ...TLS, ...args]);
  expect(r.code, r.stderr).toBe(0);
  return r.stderr
    .split("\n")
    .filter((l) => l.includes("Would have copied"))
    .map((l) => /to="([^"]+)"/.exec(l)?.[1] as string)
    .sort();
}

/** The destinations `airlock sync --dry-run ARGS` would write, sorted. */
async function airlockPlan(args: string[]): Promise<string[]> {
  const r = await runCli(["sync", "--dry-run", "--json", ...args]);
  expect(r.code, r.stderr).toBe(0);
  return r.stderr
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; destination?: string })
    .filter((e) => e.type === "sync-image")
    .map((e) => e.destination as string)
    .sort();
}

describe("same destination names as skopeo sync", () => {
  it("--src docker, a repository, to a registry", async () => {
    const args = ["--src", "docker", "--dest", "docker", `${H}/src/app`, `${H}/cmp/sub`];
    const want = await skopeoPlan(args);
    expect(want).toHaveLength(5);
    expect(want).toContain(`docker://${H}/cmp/sub/app:1.2.0-rc1`);
    expect(await airlockPlan(args)).toEqual(want);
  });

  it("--src docker, one tag, --scoped, to a directory", async () => {
    const args = ["--src", "docker", "--dest", "dir", "--scoped", `${H}/src/ns/tool:v1.5`, join(tmp, "scoped")];
    const want = await skopeoPlan(args);
    expect(want).toEqual([`dir:${join(tmp, "scoped", H, "src/ns/tool:v1.5")}`]);
    expect(await airlockPlan(args)).toEqual(want);
  });

  it("--src yaml: images and images-by-tag-regex select the same tags", async () => {
    // skopeo 1.9.3 predates images-by-semver (it ignores the key); the semver rules are unit-tested.
    const file = join(tmp, "sync.yaml");
    writeFileSync(
      file,
      [`"${H}":`, "  tls-verify: false", "  images:", '    src/app: ["latest", "1.0.0"]', "  images-by-tag-regex:", "    src/ns/tool: ^(v1|ed)", "    src/app: 1\\.[01]", ""].join("\n"),
    );
    const args = ["--src", "yaml", "--dest", "docker", file, `${H}/cmp-yaml`];
    const want = await skopeoPlan(args);
    expect(want).toEqual(
      [`app:latest`, `app:1.0.0`, `app:1.0.0`, `app:1.1.0`, `tool:v1.5`, `tool:edge`].map((n) => `docker://${H}/cmp-yaml/${n}`).sort(),
    );
    // skopeo copies an image selected by two sections twice; airlock once.
    expect(await airlockPlan(args)).toEqual([...new Set(want)]);
  });

  it("--src dir, from what both tools wrote with --dest dir", async () => {
    const bySkopeo = join(tmp, "by-skopeo");
    const byAirlock = join(tmp, "by-airlock");
    const r = await skopeo([...TLS, "--src", "docker", "--dest", "dir", `${H}/src/ns/tool`, bySkopeo]);
    expect(r.code, r.stderr).toBe(0);
    const a = await runCli(["sync", "-q", "--src", "docker", "--dest", "dir", `${H}/src/ns/tool`, byAirlock]);
    expect(a.code, a.stderr).toBe(0);
    expect(readdirSync(byAirlock).sort()).toEqual(readdirSync(bySkopeo).sort());
    expect(readdirSync(byAirlock).sort()).toEqual(["tool:1.0", "tool:3.1", "tool:edge", "tool:v1.5"]);

    for (const scoped of [[], ["--scoped"]]) {
      const args = ["--src", "dir", "--dest", "docker", ...scoped, bySkopeo, `${H}/cmp-dir`];
      const want = await skopeoPlan(args);
      expect(want).toHaveLength(4);
      expect(await airlockPlan(args)).toEqual(want);
    }
  });
});

describe("where skopeo stops, airlock goes on", () => {
  it("re-running into an existing dir: destination (skopeo: Refusing to overwrite destination directory)", async () => {
    const dir = join(tmp, "rerun");
    const args = ["--src", "docker", "--dest", "dir", `${H}/src/app:1.0.0`, dir];
    expect((await skopeo([...TLS, ...args])).code).toBe(0);
    const again = await skopeo([...TLS, ...args]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/Refusing to overwrite destination directory/);
    const r = await runCli(["sync", ...args]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/skipped: already present/);
  });

  it("--scoped from a registry with a port into a registry (skopeo: invalid reference)", async () => {
    const args = ["--src", "docker", "--dest", "docker", "--scoped", `${H}/src/app:1.1.0`, `${H}/scoped`];
    const sk = await skopeo([...TLS, ...args]);
    expect(sk.code).not.toBe(0);
    const r = await runCli(["sync", ...args]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`to=docker://${H}/scoped/${H.replace(":", "_")}/src/app:1.1.0`);
  });
});
