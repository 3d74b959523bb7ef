import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authFileLocations, authKeyFor, findCredentials, lookupCredentials, primaryAuthFile, removeAllCredentials, removeCredentials, runCredentialHelper, storeCredentials } from "./authfile.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-authfile-"));
  env = { HOME: join(dir, "home"), XDG_RUNTIME_DIR: join(dir, "run") };
  // A Docker credential helper speaking the protocol: server URL on stdin, JSON on stdout.
  const bin = join(dir, "bin");
  await fs.mkdir(bin);
  await fs.writeFile(
    join(bin, "docker-credential-airlocktest"),
    `#!/bin/sh
[ "$1" = get ] || exit 3
read url
case "$url" in
  helper.example) echo '{"ServerURL":"helper.example","Username":"hu","Secret":"hp"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"<token>","Secret":"id-token"}' ;;
  store.example) echo '{"ServerURL":"store.example","Username":"su","Secret":"sp"}' ;;
  broken.example) echo 'helper exploded' >&2; exit 2 ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
    { mode: 0o755 },
  );
  process.env.PATH = `${bin}:${process.env.PATH}`;
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function write(path: string, content: unknown): Promise<void> {
  await fs.mkdir(join(path, ".."), { recursive: true });
  await fs.writeFile(path, typeof content === "string" ? content : JSON.stringify(content));
}

describe("auth file locations", () => {
  it("follows skopeo's order; --authfile or REGISTRY_AUTH_FILE is the only file", () => {
    expect(authFileLocations({ env: { HOME: "/h", XDG_RUNTIME_DIR: "/run/user/1" } }).map((l) => l.path)).toEqual([
      "/run/user/1/containers/auth.json",
      "/h/.config/containers/auth.json",
      "/h/.docker/config.json",
      "/h/.dockercfg",
    ]);
    expect(authFileLocations({ env: { HOME: "/h", XDG_RUNTIME_DIR: "/r", XDG_CONFIG_HOME: "/cfg", DOCKER_CONFIG: "/dc" } }).map((l) => l.path)).toEqual([
      "/r/containers/auth.json",
      "/cfg/containers/auth.json",
      "/dc/config.json",
      "/h/.dockercfg",
    ]);
    expect(authFileLocations({ authFile: "/x.json", env: { HOME: "/h" } }).map((l) => l.path)).toEqual(["/x.json"]);
    expect(authFileLocations({ env: { HOME: "/h", REGISTRY_AUTH_FILE: "/y.json" } }).map((l) => l.path)).toEqual(["/y.json"]);
    expect(primaryAuthFile({ env: { HOME: "/h", XDG_RUNTIME_DIR: "/r" } })).toBe("/r/containers/auth.json");
  });
});

describe("lookupCredentials", () => {
  it("tries the most specific key first, then the host; normalises legacy and Docker Hub keys", async () => {
    const authFile = join(dir, "lookup.json");
    await write(authFile, {
      auths: {
        "r.example": { auth: b64("host:hp") },
        "r.example/team": { auth: b64("team:tp") },
        "r.example/team/app": { auth: b64("app:ap\0\0") },
        "https://legacy.example/v1/": { auth: b64("legacy:lp") },
        "https://index.docker.io/v1/": { auth: b64("hub:hubp") },
        "empty.example": {},
        "id.example": { identitytoken: "tok" },
      },
    });
    const look = (name: string) => lookupCredentials(name, { authFile });
    expect(await look("r.example/team/app")).toEqual({ username: "app", password: "ap" });
    expect(await look("r.example/team/other")).toEqual({ username: "team", password: "tp" });
    expect(await look("r.example/else/app")).toEqual({ username: "host", password: "hp" });
    expect(await look("r.example")).toEqual({ username: "host", password: "hp" });
    expect(await look("legacy.example/a")).toEqual({ username: "legacy", password: "lp" });
    expect(await look("docker.io/library/busybox")).toEqual({ username: "hub", password: "hubp" });
    expect(await look("empty.example/a")).toBeUndefined();
    expect(await look("id.example/a")).toEqual({ username: "", password: "", identityToken: "tok" });
    expect(await look("unknown.example/a")).toBeUndefined();
  });

  it("takes the first file with a match, in order", async () => {
    const e = { ...env, HOME: join(dir, "order-home"), XDG_RUNTIME_DIR: join(dir, "order-run") };
    await write(join(e.HOME, ".docker", "config.json"), { auths: { "a.example": { auth: b64("docker:d") }, "b.example": { auth: b64("docker:d") } } });
    await write(join(e.HOME, ".config", "containers", "auth.json"), { auths: { "a.example": { auth: b64("config:c") } } });
    await write(join(e.HOME, ".dockercfg"), { "c.example": { auth: b64("legacy:l") } });
    expect(await lookupCredentials("a.example/x", { env: e })).toEqual({ username: "config", password: "c" });
    expect(await lookupCredentials("b.example/x", { env: e })).toEqual({ username: "docker", password: "d" });
    expect(await lookupCredentials("c.example/x", { env: e })).toEqual({ username: "legacy", password: "l" });
    await write(join(e.XDG_RUNTIME_DIR, "containers", "auth.json"), { auths: { "a.example": { auth: b64("runtime:r") } } });
    expect(await findCredentials("a.example/x", { env: e })).toEqual({
      credentials: { username: "runtime", password: "r" },
      file: join(e.XDG_RUNTIME_DIR, "containers", "auth.json"),
      key: "a.example",
    });
  });

  it("asks credHelpers first and credsStore last, as Docker does", async () => {
    const authFile = join(dir, "helpers.json");
    await write(authFile, {
      auths: { "helper.example": { auth: b64("file:f") }, "store.example": {}, "plain.example": { auth: b64("file:p") } },
      credHelpers: { "helper.example": "airlocktest", "docker.io": "airlocktest", "none.example": "airlocktest" },
      credsStore: "airlocktest",
    });
    expect(await lookupCredentials("helper.example/a", { authFile })).toEqual({ username: "hu", password: "hp" });
    expect(await lookupCredentials("docker.io/library/alpine", { authFile })).toEqual({ username: "", password: "", identityToken: "id-token" });
    expect(await lookupCredentials("store.example/a", { authFile })).toEqual({ username: "su", password: "sp" });
    expect(await lookupCredentials("plain.example/a", { authFile })).toEqual({ username: "file", password: "p" });
    expect(await lookupCredentials("none.example/a", { authFile })).toBeUndefined();
    expect(await findCredentials("store.example/a", { authFile })).toMatchObject({ key: "credsStore:airlocktest" });
  });

  it("reports a failing or missing helper and a broken file clearly", async () => {
    await expect(runCredentialHelper("airlocktest", "broken.example")).rejects.toThrow(/docker-credential-airlocktest failed .*helper exploded/);
    await expect(runCredentialHelper("no-such-helper-xyz", "a.example")).rejects.toThrow(/not installed/);
    await expect(runCredentialHelper("../evil", "a.example")).rejects.toThrow(/invalid/);
    const authFile = join(dir, "broken.json");
    await write(authFile, "{not json");
    await expect(lookupCredentials("a.example", { authFile })).rejects.toThrow(/broken.json is not valid JSON/);
  });
});

describe("storing and removing credentials", () => {
  it("writes atomically with mode 0600, keeps other fields, and removes one key or all", async () => {
    const authFile = join(dir, "store", "nested", "auth.json");
    await write(authFile, { auths: { "keep.example": { auth: b64("k:k") } }, credHelpers: { "x.example": "y" }, other: 1 });
    await fs.chmod(authFile, 0o644);
    expect(await storeCredentials("https://r.example:5000/", { username: "u", password: "p:w" }, { authFile })).toBe(authFile);
    expect((await fs.stat(authFile)).mode & 0o777).toBe(0o600);
    let json = JSON.parse(await fs.readFile(authFile, "utf8"));
    expect(json.auths["r.example:5000"]).toEqual({ auth: b64("u:p:w") });
    expect(json.credHelpers).toEqual({ "x.example": "y" });
    expect(json.other).toBe(1);
    expect(await lookupCredentials("r.example:5000/a", { authFile })).toEqual({ username: "u", password: "p:w" });

    await storeCredentials("index.docker.io", { username: "hub", password: "h" }, { authFile });
    json = JSON.parse(await fs.readFile(authFile, "utf8"));
    expect(json.auths["docker.io"]).toEqual({ auth: b64("hub:h") });

    expect(await removeCredentials("r.example:5000", { authFile })).toBe(true);
    expect(await removeCredentials("r.example:5000", { authFile })).toBe(false);
    expect(await lookupCredentials("keep.example", { authFile })).toEqual({ username: "k", password: "k" });
    expect(await removeAllCredentials({ authFile })).toBe(true);
    expect(JSON.parse(await fs.readFile(authFile, "utf8")).auths).toEqual({});
    expect(await removeAllCredentials({ authFile: join(dir, "missing.json") })).toBe(false);
  });

  it("normalises login arguments into auth-file keys", () => {
    expect(authKeyFor("quay.io")).toBe("quay.io");
    expect(authKeyFor("quay.io/ns/repo")).toBe("quay.io/ns/repo");
    expect(authKeyFor("https://index.docker.io/v1/")).toBe("docker.io");
    expect(authKeyFor("registry-1.docker.io")).toBe("docker.io");
    expect(authKeyFor("localhost:5000/")).toBe("localhost:5000");
    expect(() => authKeyFor("quay.io/ns/repo:tag")).toThrow(/not a registry/);
    expect(() => authKeyFor("")).toThrow(/required/);
  });
});
