/**
 * Every flag of skopeo's registry verbs (copy, sync, inspect, list-tags, delete, login, logout,
 * manifest-digest, standalone-sign, standalone-verify — skopeo's cmd/skopeo/*.go and man pages)
 * goes through airlock on a real invocation: a skopeo command line with `airlock` in its place
 * either works, or is refused by a message that names the flag and says what to do instead —
 * never "unknown option". A flag missing from airlock's parser fails its row here.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runBin, runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const KEYS = join(FIX, "keys");
const SINGLE = `oci:${FIX}/oci:single`;

const tmp = mkdtempSync(join(tmpdir(), "airlock-skopeo-flags-"));
const emptyDir = join(tmp, "empty");
mkdirSync(emptyDir);
const authFile = join(tmp, "auth.json");
writeFileSync(authFile, '{"auths":{}}\n');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** One skopeo flag: the arguments that give it (flag and value), and what airlock does with it. */
interface Row {
  args: string[];
  /** Refused on purpose: the message airlock prints (it must name the flag). */
  refused?: RegExp;
}

let n = 0;
const out = (kind: string) => join(tmp, `${kind}-${++n}`);

/** A row's run must never hit the parser's "unknown option"; refused rows print their reason, others succeed. */
function expectRow(row: Row, r: { code: number; stdout: string; stderr: string }): void {
  expect(r.stderr).not.toMatch(/unknown option|too many arguments/);
  if (row.refused) {
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(row.refused);
    expect(r.stderr).toContain(row.args[0]);
  } else {
    expect(r.stderr.replace(/^warning: .*\n/gm, "")).toBe("");
    expect(r.code).toBe(0);
  }
}

/** skopeo's docker image flags (utils.go dockerImageFlags) with `p` as prefix, with values that do not change a local copy. */
function dockerFlags(p: "" | "src-" | "dest-"): Row[] {
  return [
    ...(p ? [{ args: [`--${p}authfile`, authFile] }] : []),
    { args: [`--${p}creds`, "user:pass"] },
    { args: [`--${p}username`, "user", `--${p}password`, "pass"] },
    { args: [`--${p}password`, "pass", `--${p}username`, "user"] },
    { args: [`--${p}registry-token`, "token"] },
    { args: [`--${p}cert-dir`, emptyDir] },
    { args: [`--${p}tls-verify`] },
    { args: [`--${p}tls-verify=false`] },
    { args: [`--${p}no-creds`] },
  ];
}

/** skopeo's image flags (imageFlags): docker flags, shared-blob-dir and daemon-host. */
function imageFlags(p: "" | "src-" | "dest-"): Row[] {
  return [
    ...dockerFlags(p),
    { args: [`--${p}shared-blob-dir`, emptyDir], refused: /cannot use a shared blob directory/ },
    { args: [`--${p}daemon-host`, "unix:///var/run/docker.sock"] },
  ];
}

/** skopeo's retry flags. */
const retryFlags: Row[] = [{ args: ["--retry-times", "2"] }, { args: ["--retry-delay", "1s"] }];

/** skopeo's sharedCopyFlags (copy and sync); `signing` are the rows of airlock's --sign-by-key family that differ by verb. */
function sharedCopyFlags(signing: Row[]): Row[] {
  return [
    { args: ["--remove-signatures"] },
    { args: ["--sign-by", "0123456789ABCDEF"], refused: /--sign-by-key/ },
    { args: ["--sign-by-sq-fingerprint", "0123456789ABCDEF"], refused: /--sign-by-key/ },
    { args: ["--sign-by-sigstore", join(tmp, "params.yaml")], refused: /simple signing/ },
    { args: ["--sign-by-sigstore-private-key", join(tmp, "cosign.key")], refused: /simple signing/ },
    ...signing,
    { args: ["--format", "oci"] },
    { args: ["-f", "v2s2"] },
    { args: ["--preserve-digests"] },
  ];
}

describe("skopeo copy's flags, copy oci: → oci:", () => {
  const rows: Row[] = [
    { args: ["--authfile", authFile] },
    ...imageFlags("src-"),
    ...imageFlags("dest-"),
    { args: ["--dest-compress"] },
    { args: ["--dest-decompress"] },
    { args: ["--dest-oci-accept-uncompressed-layers"] },
    { args: ["--dest-compress-format", "gzip"] },
    { args: ["--dest-compress-level", "6", "--dest-compress-format", "gzip"] },
    { args: ["--dest-force-compress-format", "--dest-compress-format", "gzip"] },
    { args: ["--dest-force-compress-format"], refused: /needs --dest-compress-format/ },
    { args: ["--dest-precompute-digests"] },
    ...retryFlags,
    ...sharedCopyFlags([
      { args: ["--sign-passphrase-file", join(KEYS, "protected.passphrase")], refused: /need --sign-by-key/ },
      { args: ["--sign-identity", "registry.example.com/app:1.0"], refused: /need --sign-by-key/ },
    ]),
    // Hidden in skopeo: old names, and the deprecated --tls-verify for both sides.
    { args: ["--screds", "user:pass"] },
    { args: ["--dcreds", "user:pass"] },
    { args: ["--tls-verify=false"] },
    { args: ["--additional-tag", "app:1.0"], refused: /applies to docker-archive/ },
    { args: ["--quiet"] },
    { args: ["-q"] },
    { args: ["--all"] },
    { args: ["-a"] },
    { args: ["--multi-arch", "system"] },
    { args: ["--multi-arch", "index-only"] },
    { args: ["--digestfile", join(tmp, "digest")] },
    { args: ["--encryption-key", "jwe:/nonexistent/pub.pem"], refused: /does not encrypt/ },
    { args: ["--encrypt-layer", "-1"], refused: /does not encrypt/ },
    { args: ["--decryption-key", "/nonexistent/key.pem"], refused: /does not decrypt/ },
    { args: ["--image-parallel-copies", "2"] },
  ];
  it.each(rows.map((r) => [r.args.join(" "), r] as const))("copy %s", async (_, row) => {
    expectRow(row, await runCli(["copy", "-q", ...row.args, SINGLE, `oci:${out("copy")}:single`]));
  });

  it("--dest-force-compress-format, --dest-precompute-digests, --dest-oci-accept-uncompressed-layers and the hidden --tls-verify are in the help, with what airlock does", async () => {
    const help = (await runCli(["copy", "--help"])).stdout;
    expect(help).toMatch(/--dest-precompute-digests\s+docker:\/\/: do not upload a layer the registry already has \(airlock always does/);
    expect(help).toMatch(/--dest-oci-accept-uncompressed-layers\s+oci: keep uncompressed layers uncompressed/);
    expect(help).toMatch(/--dest-force-compress-format\s/);
    expect(help).not.toMatch(/--screds|--dcreds|^\s+--tls-verify/m);
  });

  it("the hidden --tls-verify warns that it is deprecated; --screds with --src-creds is refused", async () => {
    const r = await runCli(["copy", "--tls-verify=false", SINGLE, `oci:${out("copy")}:single`]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("'--tls-verify' is deprecated, use --src-tls-verify and --dest-tls-verify");
    const both = await runCli(["copy", "--screds", "a:b", "--src-creds", "a:b", SINGLE, `oci:${out("copy")}:single`]);
    expect(both.code).toBe(1);
    expect(both.stderr).toContain("--screds is the old name of --src-creds");
  });

  it("--sign-by is refused before anything is written", async () => {
    const dest = out("copy");
    const r = await runCli(["copy", "--sign-by", "0123456789ABCDEF", SINGLE, `oci:${dest}:single`]);
    expect(r.code).toBe(1);
    expect(() => readFileSync(join(dest, "index.json"))).toThrow();
  });
});

describe("against docker-registry (plain HTTP): copy --dest-precompute-digests, list-tags, delete, login, logout", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "plain" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("pushes, and a second push with the flag uploads no layer the registry already has", async () => {
    const dest = `docker://${reg.host}/flags/precompute`;
    const first = await runCli(["copy", "--dest-precompute-digests", "--dest-tls-verify=false", SINGLE, `${dest}:1`]);
    expect(first.stderr).not.toMatch(/skipped/);
    expect(first.code).toBe(0);
    const second = await runCli(["copy", "--dest-precompute-digests", "--dest-tls-verify=false", SINGLE, `${dest}:2`]);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(/Copying blob sha256:[0-9a-f]{12,} skipped: already exists/);
    expect(second.stderr).not.toMatch(/Copying blob sha256:[0-9a-f]+ done/);
  });

  it("list-tags and delete take skopeo's flags (docker flags, shared-blob-dir for delete, retry)", async () => {
    const repo = `docker://${reg.host}/flags/verbs`;
    const listRows: Row[] = [{ args: ["--authfile", authFile] }, ...dockerFlags(""), ...retryFlags];
    for (const row of listRows) {
      expect((await runCli(["copy", "-q", "--dest-tls-verify=false", SINGLE, `${repo}:t`])).code).toBe(0);
      // Plain HTTP on 127.0.0.1 needs no flag (loopback, as Docker's insecure localhost); the rows add --tls-verify=false anyway.
      const tls = row.args.some((a) => a.startsWith("--tls-verify")) ? [] : ["--tls-verify=false"];
      const listed = await runCli(["list-tags", ...tls, ...row.args, repo]);
      expectRow(row, listed);
      expect(JSON.parse(listed.stdout).Tags).toEqual(["t"]);
    }
    const deleteRows: Row[] = [{ args: ["--authfile", authFile] }, ...imageFlags(""), ...retryFlags];
    for (const row of deleteRows) {
      expect((await runCli(["copy", "-q", "--dest-tls-verify=false", SINGLE, `${repo}:d`])).code).toBe(0);
      const tls = row.args.some((a) => a.startsWith("--tls-verify")) ? [] : ["--tls-verify=false"];
      expectRow(row, await runCli(["delete", ...tls, ...row.args, `${repo}:d`]));
      if (!row.refused) expect((await runCli(["inspect", "--tls-verify=false", `${repo}:d`])).code).toBe(2);
    }
  });

  it("login and logout take skopeo's flags", async () => {
    const file = join(tmp, "login-auth.json");
    const compat = join(tmp, "docker-config.json");
    const base = ["--tls-verify=false", "-u", "user", "-p", "pass"];
    const loginRows: Row[] = [
      { args: ["--authfile", file] },
      { args: ["--compat-auth-file", compat] },
      { args: ["--cert-dir", emptyDir, "--authfile", file] },
      { args: ["--username", "user", "--authfile", file] },
      { args: ["--password", "pass", "--authfile", file] },
      { args: ["--verbose", "--authfile", file] },
      { args: ["-v", "--authfile", file] },
      { args: ["--tls-verify=false", "--authfile", file] },
    ];
    for (const row of loginRows) expectRow(row, await runCli(["login", ...base, ...row.args, reg.host]));
    expect(JSON.parse(readFileSync(compat, "utf8")).auths[reg.host].auth).toBe(Buffer.from("user:pass").toString("base64"));
    const stdin = await runBin(["login", "--tls-verify=false", "-u", "user", "--password-stdin", "--authfile", file, reg.host], { input: "pass\n" });
    expect(stdin.stdout).toContain("Login Succeeded!");
    const get = await runCli(["login", "--get-login", "--authfile", file, reg.host]);
    expect(get.stdout).toBe("user\n");
    expect((await runCli(["login", "--authfile", file, "--compat-auth-file", compat, ...base, reg.host])).stderr).toContain("--authfile and --compat-auth-file cannot be used together");

    const logoutRows: Row[] = [
      { args: ["--tls-verify", "--authfile", file] },
      { args: ["--compat-auth-file", compat] },
    ];
    for (const row of logoutRows) expectRow(row, await runCli(["logout", ...row.args, reg.host]));
    expect(JSON.parse(readFileSync(compat, "utf8")).auths).toEqual({});
    expectRow({ args: ["--all", "--authfile", file] }, await runCli(["logout", "--all", "--authfile", file]));
    expectRow({ args: ["-a", "--authfile", file] }, await runCli(["logout", "-a", "--authfile", file]));
  });
});

describe("skopeo login --compat-auth-file writes Docker's key for Docker Hub", () => {
  it("docker.io is stored as https://index.docker.io/v1/, as docker login writes it", async () => {
    // No network: a docker.io login cannot be checked here, so the key rewrite is checked on
    // logout, which finds Docker's key for docker.io and removes it.
    const compat = join(tmp, "hub-config.json");
    writeFileSync(compat, JSON.stringify({ auths: { "https://index.docker.io/v1/": { auth: "dTpw" } }, credsStore: "" }));
    expect((await runCli(["logout", "--compat-auth-file", compat, "docker.io"])).code).toBe(0);
    expect(JSON.parse(readFileSync(compat, "utf8"))).toEqual({ auths: {}, credsStore: "" });
  });
});

describe("skopeo sync's flags, sync --src oci --dest oci", () => {
  // A layout of one small image keeps each of the many runs short.
  const layout = join(tmp, "sync-source");
  beforeAll(async () => {
    expect((await runCli(["copy", "-q", SINGLE, `oci:${layout}:single`])).code).toBe(0);
  });
  const rows: Row[] = [
    { args: ["--authfile", authFile] },
    ...dockerFlags("src-"),
    ...dockerFlags("dest-"),
    ...retryFlags,
    ...sharedCopyFlags([{ args: ["--sign-passphrase-file", join(KEYS, "protected.passphrase")] }]),
    { args: ["--screds", "user:pass"] },
    { args: ["--dcreds", "user:pass"] },
    { args: ["--tls-verify=false"] },
    { args: ["--scoped"] },
    { args: ["--append-suffix", "-mirror"] },
    { args: ["--digestfile", join(tmp, "sync-digests")] },
    { args: ["--all"] },
    { args: ["-a"] },
    { args: ["--dry-run"] },
    { args: ["--keep-going"] },
  ];
  it.each(rows.map((r) => [r.args.join(" "), r] as const))("sync %s", async (_, row) => {
    expectRow(row, await runCli(["sync", "-q", "-s", "oci", "-d", "oci", ...row.args, layout, out("sync")]));
  });

  it("sync --format v2s2 writes Docker manifests", async () => {
    const dest = out("sync");
    expect((await runCli(["sync", "-q", "--src", "oci", "--dest", "oci", "--format", "v2s2", `${FIX}/oci`, dest])).code).toBe(0);
    const index = JSON.parse(readFileSync(join(dest, "index.json"), "utf8"));
    expect(index.manifests.length).toBeGreaterThan(0);
    for (const m of index.manifests) expect(m.mediaType).toMatch(/^application\/vnd\.docker\.distribution\.manifest\.(v2|list\.v2)\+json$/);
  });
});

describe("skopeo inspect's flags, on an oci: image", () => {
  const rows: Row[] = [
    { args: ["--authfile", authFile] },
    ...imageFlags(""),
    ...retryFlags,
    { args: ["--raw"] },
    { args: ["--config"] },
    { args: ["--format", "{{.Digest}}"] },
    { args: ["-f", "json"] },
    { args: ["--no-tags"] },
    { args: ["-n"] },
    { args: ["--manifest-digest", "sha256"] },
    // skopeo's check, which commander's reading of --no-creds as "--creds false" used to lose.
    { args: ["--no-creds", "--creds", "user:pass"], refused: /--creds and --no-creds cannot be used together/ },
  ];
  it.each(rows.map((r) => [r.args.join(" "), r] as const))("inspect %s", async (_, row) => {
    expectRow(row, await runCli(["inspect", ...row.args, SINGLE]));
  });

  it("--manifest-digest sha512 reports the manifest's sha512 digest", async () => {
    const raw = (await runCli(["inspect", "--raw", SINGLE])).stdout;
    const { createHash } = await import("node:crypto");
    const r = await runCli(["inspect", "--manifest-digest", "sha512", "--format", "{{.Digest}}", SINGLE]);
    expect(r.stdout.trim()).toBe(`sha512:${createHash("sha512").update(raw).digest("hex")}`);
  });
});

describe("manifest-digest, standalone-sign and standalone-verify take skopeo's flags", () => {
  it("standalone-sign --output/-o --passphrase-file, standalone-verify --public-key-file", async () => {
    const manifest = join(tmp, "manifest.json");
    writeFileSync(manifest, (await runCli(["inspect", "--raw", SINGLE])).stdout);
    const digest = (await runCli(["manifest-digest", manifest])).stdout.trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const signature = join(tmp, "signature-1");
    for (const o of ["--output", "-o"]) {
      const r = await runCli(["standalone-sign", manifest, "registry.example.com/app:1.0", "--key", join(KEYS, "protected.sec.asc"), "--passphrase-file", join(KEYS, "protected.passphrase"), o, signature]);
      expectRow({ args: [o] }, r);
    }
    const v = await runCli(["standalone-verify", "--public-key-file", join(KEYS, "protected.pub.asc"), manifest, "registry.example.com/app:1.0", "any", signature]);
    expectRow({ args: ["--public-key-file"] }, v);
    expect(v.stdout).toContain(digest);
  });
});

describe("the help of the docker flags names the registry for each side", () => {
  const flat = async (verb: string) => (await runCli([verb, "--help"])).stdout.replace(/\s+/g, " ");
  it.each([
    ["inspect", ""],
    ["list-tags", ""],
    ["delete", ""],
    ["copy", "src-"],
    ["copy", "dest-"],
    ["sync", "src-"],
    ["sync", "dest-"],
  ] as const)("%s --%sFLAG", async (verb, p) => {
    const help = await flat(verb);
    const registry = p === "src-" ? "the source registry" : p === "dest-" ? "the destination registry" : "the registry";
    expect(help).toContain(`--${p}creds <user[:password]> credentials for ${registry}; prompts for nothing`);
    expect(help).toContain(`--${p}username <name> username for ${registry} (with --${p}password)`);
    expect(help).toContain(`--${p}password <password> password for ${registry} (with --${p}username)`);
    expect(help).toContain(`--${p}registry-token <token> bearer token for ${registry}, sent as is`);
    expect(help).toContain(`--${p}cert-dir <dir> directory with *.crt CAs and a *.cert/*.key client pair for ${registry}`);
    expect(help).toContain(`--${p}tls-verify <bool> verify the TLS certificate of ${registry}; false also allows plain HTTP`);
    expect(help).toContain(`--${p}no-creds access ${registry} anonymously`);
    if (p) expect(help).toContain(`--${p}authfile <path> auth file for ${registry} (overrides --authfile)`);
    // The old wording glued the side onto "registry": "credentials registry", "bearer token registry".
    expect(help).not.toMatch(/(credentials|username|password|token|pair|anonymously) registry\b|registry of the|of the (source|destination) registry registry/);
  });
});
