/**
 * `airlock sync` end to end against the real CNCF distribution registry: registry → registry,
 * → dir, → oci, dir → registry, YAML sources (regex, semver, per-repository destinations,
 * credentials against a basic-auth registry), each run twice — the second run must move no blob
 * (counted by a proxy that sees every request) and say "skipped: already present" — plus dry runs,
 * digest files, --keep-going, platform lists and the concurrency limits.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultProxy, type ProxiedRequest, startFaultProxy } from "../harness/proxy.js";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { type CliRun, runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const D = {
  single: "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952",
  multi: "sha256:4d924f96074245986095765e6a34cc36000fbc330e4c823b37e66dc9ce137b01",
  multiAmd64: "sha256:0370dffc4771583cd14b72ad1516a0fcaaeba1f57f060275826459e73f6ffe3a",
  multiArm64: "sha256:0ab3a8db7abd02adb7b7609a37b8b35deb2c03d2e6a4f3b731d793fb8405533a",
  baseA: "sha256:ec3bbc6cac42279c72c4dab2711918c31ef1fb8917d7e95190983ad50a18776b",
  baseB: "sha256:25f5f9854655269565b0f3b51c958aaeca9561ed49726c1e5de4a871fcca8cef",
  docker: "sha256:f32e085ab4ef73529d0842b679703a7ab2e7418582181dce8cd4632e9feef625",
};
const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const tmp = mkdtempSync(join(tmpdir(), "airlock-sync-"));
let reg: RunningRegistry;
let proxy: FaultProxy;
/** The registry as the tests name it: through the proxy, which records every request. */
let H: string;

/** Tags of `src/app` and `src/ns/tool`, and the fixture image each one is. */
const APP: Record<string, keyof typeof FIXTURE_NAMES> = { "1.0.0": "single", "1.1.0": "baseA", "1.2.0-rc1": "baseB", "2.0.0": "docker", latest: "single", dev: "multi" };
const TOOL: Record<string, keyof typeof FIXTURE_NAMES> = { "1.0": "baseA", "v1.5": "baseB", "3.1": "single", edge: "docker" };
const FIXTURE_NAMES = { single: "single", multi: "multi", baseA: "base-a", baseB: "base-b", docker: "docker" } as const;

async function seed(repo: string, tags: Record<string, keyof typeof FIXTURE_NAMES>): Promise<void> {
  for (const [tag, img] of Object.entries(tags)) {
    const r = await runCli(["copy", "-q", ...(img === "multi" ? ["--all"] : []), `oci:${FIX}/oci:${FIXTURE_NAMES[img]}`, `docker://${H}/${repo}:${tag}`]);
    expect(r.code, r.stderr).toBe(0);
  }
}

beforeAll(async () => {
  reg = await startRegistry({ mode: "plain" });
  proxy = await startFaultProxy(reg.url, () => undefined);
  H = proxy.host;
  await seed("src/app", APP);
  await seed("src/ns/tool", TOOL);
});

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs `airlock sync ARGS` and returns what it printed and every request it made. */
async function sync(args: string[]): Promise<CliRun & { requests: ProxiedRequest[] }> {
  const before = proxy.requests.length;
  const r = await runCli(["sync", ...args]);
  return { ...r, requests: proxy.requests.slice(before) };
}

/** Requests that move or write content: any blob request, and any write. */
const moving = (reqs: ProxiedRequest[]) => reqs.filter((q) => q.url.includes("/blobs/") || !["GET", "HEAD"].includes(q.method) || (q.method === "GET" && q.url.includes("/manifests/")));

async function tags(repo: string): Promise<string[]> {
  const r = await runCli(["list-tags", `docker://${H}/${repo}`]);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout).Tags as string[]).sort();
}

async function digestOf(ref: string): Promise<string> {
  const r = await runCli(["inspect", "--raw", `docker://${H}/${ref}`]);
  expect(r.code, r.stderr).toBe(0);
  return sha(r.stdout);
}

const count = (s: string, re: RegExp) => (s.match(new RegExp(re, "g")) ?? []).length;

describe("registry → registry", () => {
  it("syncs the tags --include/--exclude choose; the second run moves no blob and says skipped", async () => {
    const digests = join(tmp, "digests-1");
    const args = ["--src", "docker", "--dest", "docker", "--include", "^1\\.", "--include", "^2\\.", "--exclude", "-rc", "--digestfile", digests, `${H}/src/app`, `${H}/mirror1`];
    const first = await sync(args);
    expect(first.code, first.stderr).toBe(0);
    expect(await tags("mirror1/app")).toEqual(["1.0.0", "1.1.0", "2.0.0"]);
    for (const t of ["1.0.0", "1.1.0", "2.0.0"]) expect(await digestOf(`mirror1/app:${t}`)).toBe(D[APP[t] as keyof typeof D]);
    expect(first.stderr).toMatch(/Synced 3 images from 1 sources: 3 copied, 0 skipped: already present, 0 failed/);
    // skopeo's digest file: one "DIGEST TRANSPORT:REFERENCE" line per image (in the registry's tag order).
    expect(readFileSync(digests, "utf8").split("\n").sort()).toEqual(
      ["", ...["1.0.0", "1.1.0", "2.0.0"].map((t) => `${D[APP[t] as keyof typeof D]} docker://${H}/mirror1/app:${t}`)].sort(),
    );
    // Same registry: blobs were mounted from src/app, not uploaded.
    expect(first.requests.filter((q) => q.method === "POST" && q.url.includes("mount=")).length).toBeGreaterThan(0);
    expect(first.requests.filter((q) => q.method === "PATCH" || (q.method === "PUT" && q.url.includes("/blobs/uploads/")))).toEqual([]);

    const second = await sync(args);
    expect(second.code, second.stderr).toBe(0);
    expect(count(second.stderr, /skipped: already present \(sha256:/)).toBe(3);
    expect(second.stderr).toMatch(/0 copied, 3 skipped: already present, 0 failed; 0 B moved/);
    expect(moving(second.requests)).toEqual([]);
    // Two HEADs per image (source, destination) and the tag list: nothing else.
    expect(second.requests.filter((q) => q.method === "HEAD" && q.url.includes("/manifests/")).length).toBe(6);
    expect(readFileSync(digests, "utf8").split("\n").filter(Boolean)).toHaveLength(3);
  });

  it("a moved tag is copied again; an unchanged one is skipped", async () => {
    await seed("src/moving", { a: "single", b: "baseA" });
    const args = ["--src", "docker", "--dest", "docker", `${H}/src/moving`, `${H}/mirror-moving`];
    expect((await sync(args)).code).toBe(0);
    await seed("src/moving", { a: "baseB" });
    const r = await sync(args);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/1 copied, 1 skipped: already present/);
    expect(await digestOf("mirror-moving/moving:a")).toBe(D.baseB);
  });

  it("--scoped keeps the source path (a port's colon as _); --append-suffix is appended to the tag", async () => {
    const r = await sync(["--src", "docker", "--dest", "docker", "--scoped", "--append-suffix", "-m", `${H}/src/app:1.1.0`, `${H}/scoped`]);
    expect(r.code, r.stderr).toBe(0);
    expect(await tags(`scoped/${H.replace(":", "_")}/src/app`)).toEqual(["1.1.0-m"]);
  });

  it("--dry-run checks and reports, and writes nothing", async () => {
    const digests = join(tmp, "dry-digests");
    const r = await sync(["--src", "docker", "--dest", "docker", "--dry-run", "--digestfile", digests, `${H}/src/app`, `${H}/dry`]);
    expect(r.code, r.stderr).toBe(0);
    expect(count(r.stderr, /Would have copied image ref \d\/6 /)).toBe(6);
    expect(r.stderr).toMatch(/Would have synced 6 images from 1 sources: 6 to copy/);
    expect(r.requests.filter((q) => !["GET", "HEAD"].includes(q.method) || q.url.includes("/blobs/"))).toEqual([]);
    expect(await tags("dry/app")).toEqual([]);
    expect(existsSync(digests)).toBe(false);
    const dir = join(tmp, "dry-dir");
    expect((await sync(["--src", "docker", "--dest", "dir", "--dry-run", `${H}/src/app`, dir])).code).toBe(0);
    expect(existsSync(dir)).toBe(false);
    // A dry run against a synced destination says what is already there.
    const again = await sync(["--src", "docker", "--dest", "docker", "--dry-run", "--include", "^1\\.0\\.0$", `${H}/src/app`, `${H}/mirror1`]);
    expect(again.stderr).toMatch(/Would skip image ref 1\/1 .*: already present/);
  });

  it("stops at the first failure; --keep-going syncs the rest, lists the failures and exits non-zero", async () => {
    const file = join(tmp, "bad.yaml");
    writeFileSync(file, `"${H}":\n  images:\n    src/app: ["1.0.0", "nope", "1.1.0"]\n`);
    const stop = await sync(["--src", "yaml", "--dest", "docker", "--parallel", "1", file, `${H}/kg-stop`]);
    expect(stop.code).not.toBe(0);
    expect(stop.stderr).toMatch(/nope/);
    expect(await tags("kg-stop/app")).toEqual(["1.0.0"]);

    const go = await sync(["--src", "yaml", "--dest", "docker", "--keep-going", file, `${H}/kg`]);
    expect(go.code).not.toBe(0);
    expect(await tags("kg/app")).toEqual(["1.0.0", "1.1.0"]);
    expect(go.stderr).toMatch(/2 copied, 0 skipped: already present, 1 failed/);
    expect(go.stderr).toMatch(/1 failure\(s\):\n {2}docker:\/\/.*\/src\/app:nope → docker:\/\/.*\/kg\/app:nope: .*manifest unknown/);
    expect(go.stderr).toMatch(/Sync failed due to previous reported error/);
  });

  it("--retry-times retries an image whose check or copy failed with a retryable error", async () => {
    let failures = 0;
    const flaky = await startFaultProxy(reg.url, (q) => {
      if (q.method === "HEAD" && q.url.endsWith("/src/app/manifests/1.1.0") && failures < 2) {
        failures++;
        return { respond: { status: 503, body: "busy" } };
      }
      return undefined;
    });
    try {
      const args = ["--src", "docker", "--dest", "dir", "--retry-delay", "10ms", `${flaky.host}/src/app:1.1.0`, join(tmp, "retry")];
      // One attempt per request and no image retry: the second 503 is the end.
      const once = await runCli(["sync", "--retry-times", "0", ...args]);
      expect(once.code).not.toBe(0);
      expect(once.stderr).toMatch(/503|unavailable/i);
      failures = 0;
      // --retry-times 1: the request is tried twice (both 503), then the image once more (200).
      const r = await runCli(["sync", "--retry-times", "1", ...args]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/attempt 1 failed .*; retrying/);
      expect(sha(readFileSync(join(tmp, "retry", "app:1.1.0", "manifest.json")))).toBe(D.baseA);
    } finally {
      await flaky.stop();
    }
  });

  it("a destination that refuses the presence check (401/403 on the tag) is copied to anyway", async () => {
    const closed = await startFaultProxy(reg.url, (q) =>
      q.method === "HEAD" && /\/guarded\/app\/manifests\/[^/]*$/.test(q.url) && !q.url.includes("sha256:")
        ? { respond: { status: 403, headers: { "content-type": "application/json" }, body: '{"errors":[{"code":"DENIED","message":"no pull"}]}' } }
        : undefined,
    );
    try {
      const r = await runCli(["sync", "--src", "docker", "--dest", "docker", `${H}/src/app:1.1.0`, `${closed.host}/guarded`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/1 copied/);
      expect(closed.requests.some((q) => q.method === "HEAD" && q.url.endsWith("/guarded/app/manifests/1.1.0"))).toBe(true);
      expect(await digestOf("guarded/app:1.1.0")).toBe(D.baseA);
    } finally {
      await closed.stop();
    }
  });

  it("runs several images at once, never more than --max-per-registry against one registry", async () => {
    const inflight = async (args: string[]) => {
      const r = await sync(["--json", ...args]);
      expect(r.code, r.stderr).toBe(0);
      let now = 0;
      let max = 0;
      for (const line of r.stderr.split("\n").filter(Boolean)) {
        const e = JSON.parse(line) as { type: string };
        if (e.type === "sync-image-start") max = Math.max(max, ++now);
        if (e.type === "sync-image") now--;
      }
      return max;
    };
    expect(await inflight(["--src", "docker", "--dest", "dir", "--parallel", "6", "--max-per-registry", "2", `${H}/src/app`, join(tmp, "limit-a")])).toBeLessThanOrEqual(2);
    expect(await inflight(["--src", "docker", "--dest", "dir", "--parallel", "1", `${H}/src/app`, join(tmp, "limit-b")])).toBe(1);
  });
});

describe("YAML source", () => {
  it("images-by-tag-regex, images-by-semver (read as skopeo reads tags) and a per-repository destination; twice", async () => {
    const file = join(tmp, "sync.yaml");
    writeFileSync(
      file,
      [
        `"${H}":`,
        "  images-by-tag-regex:",
        "    src/app: ^1\\.[01]\\.",
        "  images-by-semver:",
        '    src/ns/tool: ">= 1.0, < 3"',
        "  images:",
        "    src/app:",
        '      tags: ["2.0.0"]',
        "      destination: renamed/application",
        "  tls-verify: false",
        "",
      ].join("\n"),
    );
    const args = ["--src", "yaml", "--dest", "docker", file, `${H}/mirror2`];
    const first = await sync(args);
    expect(first.code, first.stderr).toBe(0);
    expect(await tags("mirror2/app")).toEqual(["1.0.0", "1.1.0"]);
    expect(await tags("mirror2/tool")).toEqual(["1.0", "v1.5"]);
    expect(await tags("mirror2/renamed/application")).toEqual(["2.0.0"]);
    expect(await digestOf("mirror2/tool:v1.5")).toBe(D.baseB);
    expect(first.stderr).toMatch(/Synced 5 images from 3 sources: 5 copied/);

    const second = await sync(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/0 copied, 5 skipped: already present/);
    expect(moving(second.requests)).toEqual([]);
  });

  it("an invalid file is refused with every problem and its position, before anything is copied", async () => {
    const file = join(tmp, "invalid.yaml");
    writeFileSync(file, `"${H}":\n  images-by-tag-regex:\n    src/app: "([a-"\n  images-by-semver:\n    src/app: "not a range"\n`);
    const r = await sync(["--src", "yaml", "--dest", "docker", file, `${H}/never`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid\.yaml:3:14: .*not a valid regular expression/);
    expect(r.stderr).toMatch(/invalid\.yaml:5:14: .*not a valid semver constraint/);
    expect(r.requests).toEqual([]);
  });
});

describe("local destinations and sources", () => {
  it("registry → dir, twice: the second run touches no file; a moved tag updates the directory in place", async () => {
    const dir = join(tmp, "dir-dest");
    const args = ["--src", "docker", "--dest", "dir", "--include", "^1\\.[01]\\.0$", `${H}/src/app`, dir];
    const first = await sync(args);
    expect(first.code, first.stderr).toBe(0);
    expect(sha(readFileSync(join(dir, "app:1.0.0", "manifest.json")))).toBe(D.single);
    expect(sha(readFileSync(join(dir, "app:1.1.0", "manifest.json")))).toBe(D.baseA);
    const mtime = statSync(join(dir, "app:1.0.0", "manifest.json")).mtimeMs;

    const second = await sync(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/0 copied, 2 skipped: already present/);
    expect(moving(second.requests)).toEqual([]);
    expect(statSync(join(dir, "app:1.0.0", "manifest.json")).mtimeMs).toBe(mtime);

    // skopeo refuses an existing directory ("Refusing to overwrite destination directory"); airlock updates it.
    await seed("src/dirmove", { x: "single" });
    const moveArgs = ["--src", "docker", "--dest", "dir", `${H}/src/dirmove`, dir];
    expect((await sync(moveArgs)).code).toBe(0);
    await seed("src/dirmove", { x: "docker" });
    const third = await sync(moveArgs);
    expect(third.code, third.stderr).toBe(0);
    expect(sha(readFileSync(join(dir, "dirmove:x", "manifest.json")))).toBe(D.docker);
  });

  it("dir → registry, twice", async () => {
    const dir = join(tmp, "dir-dest");
    const args = ["--src", "dir", "--dest", "docker", dir, `${H}/fromdir`];
    const first = await sync(args);
    expect(first.code, first.stderr).toBe(0);
    expect(await tags("fromdir/app")).toEqual(["1.0.0", "1.1.0"]);
    expect(await digestOf("fromdir/app:1.1.0")).toBe(D.baseA);
    const second = await sync(args);
    expect(second.stderr).toMatch(/0 copied, 3 skipped: already present/);
    expect(moving(second.requests)).toEqual([]);
  });

  it("registry → oci, twice; --scoped names; one --platform copies that image, several copy the whole index", async () => {
    const layout = join(tmp, "layout");
    const args = ["--src", "docker", "--dest", "oci", "--scoped", "--exclude", "^dev$", `${H}/src/app`, layout];
    const first = await sync(args);
    expect(first.code, first.stderr).toBe(0);
    const names = () =>
      Object.fromEntries(
        (JSON.parse(readFileSync(join(layout, "index.json"), "utf8")).manifests as { digest: string; annotations?: Record<string, string> }[]).map((m) => [
          m.annotations?.["org.opencontainers.image.ref.name"],
          m.digest,
        ]),
      );
    expect(names()).toEqual({
      [`${H}/src/app:1.0.0`]: D.single,
      [`${H}/src/app:1.1.0`]: D.baseA,
      [`${H}/src/app:1.2.0-rc1`]: D.baseB,
      [`${H}/src/app:2.0.0`]: D.docker,
      [`${H}/src/app:latest`]: D.single,
    });
    const second = await sync(args);
    expect(second.stderr).toMatch(/0 copied, 5 skipped: already present/);
    expect(moving(second.requests)).toEqual([]);

    const one = await sync(["--src", "docker", "--dest", "oci", "--platform", "linux/arm64", `${H}/src/app:dev`, layout]);
    expect(one.code, one.stderr).toBe(0);
    expect(names()["app:dev"]).toBe(D.multiArm64);
    const oneAgain = await sync(["--src", "docker", "--dest", "oci", "--platform", "linux/arm64", `${H}/src/app:dev`, layout]);
    expect(oneAgain.stderr).toMatch(/skipped: already present \(sha256:0ab3a8db/);

    const two = await sync(["--src", "docker", "--dest", "oci", "--platform", "linux/arm64", "--platform", "linux/s390x", "--append-suffix", "-all", `${H}/src/app:dev`, layout]);
    expect(two.code, two.stderr).toBe(0);
    expect(two.stderr).toMatch(/has no image for linux\/s390x; its whole index is copied/);
    expect(names()["app:dev-all"]).toBe(D.multi);
  });

  it("oci → registry", async () => {
    const r = await sync(["--src", "oci", "--dest", "docker", `${FIX}/oci`, `${H}/fromoci`]);
    expect(r.code, r.stderr).toBe(0);
    expect(await digestOf("fromoci/base-b:latest")).toBe(D.baseB);
    expect(await digestOf("fromoci/single:latest")).toBe(D.single);
  });
});

describe("credentials", () => {
  let basic: RunningRegistry;
  beforeAll(async () => {
    basic = await startRegistry({ mode: "basic" });
    const creds = `${basic.username}:${basic.password}`;
    for (const [tag, img] of [["1.0", "single"], ["2.0", "base-a"]] as const) {
      const r = await runCli(["copy", "-q", "--dest-creds", creds, `oci:${FIX}/oci:${img}`, `docker://${basic.host}/private/app:${tag}`]);
      expect(r.code, r.stderr).toBe(0);
    }
  });
  afterAll(async () => {
    await basic?.stop();
  });

  it("a YAML source's credentials reach its registry; without them the listing is refused", async () => {
    const withCreds = join(tmp, "creds.yaml");
    writeFileSync(withCreds, `"${basic.host}":\n  images:\n    private/app: []\n  credentials:\n    username: ${basic.username}\n    password: "${basic.password}"\n`);
    const dest = `${basic.host}/mirror`;
    const args = ["--src", "yaml", "--dest", "docker", "--dest-creds", `${basic.username}:${basic.password}`, withCreds, dest];
    const first = await runCli(["sync", ...args]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/2 copied/);
    expect(first.stderr).not.toContain(basic.password as string);
    const second = await runCli(["sync", ...args]);
    expect(second.stderr).toMatch(/0 copied, 2 skipped: already present/);

    const without = join(tmp, "nocreds.yaml");
    writeFileSync(without, `"${basic.host}":\n  images:\n    private/app: []\n`);
    const denied = await runCli(["sync", "--src", "yaml", "--dest", "dir", "--src-no-creds", without, join(tmp, "never")]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/cannot enumerate .*private\/app.*(unauthorized|authentication|credentials)/i);
    expect(existsSync(join(tmp, "never"))).toBe(false);
  });
});
