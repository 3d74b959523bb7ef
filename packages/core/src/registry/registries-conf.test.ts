import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AirlockError } from "../errors.js";
import { DockerReference } from "../reference/docker.js";
import { endpointsFor, findRegistry, lookupConfiguredCredentials, matchPrefix, parseRegistriesConf, type RegistriesConf, readRegistriesConf, resolveRegistryEndpoints } from "./registries-conf.js";

const tmp = mkdtempSync(join(tmpdir(), "airlock-regconf-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(path: string, text: string): string {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
  return path;
}

async function conf(text: string): Promise<RegistriesConf> {
  const parsed = await parseRegistriesConf(text, "test.conf");
  return { files: ["test.conf"], registries: parsed.registries, credentialHelpers: parsed.credentialHelpers ?? ["containers-auth.json"] };
}

const ref = (s: string) => DockerReference.parse(s);

describe("matchPrefix (containers/image refMatchingPrefix)", () => {
  it.each([
    ["example.com/foo/bar", "example.com", 11],
    ["example.com/foo/bar", "example.com/foo", 15],
    ["example.com/foo/bar", "example.com/fo", -1],
    ["example.com:5000/foo", "example.com", 11], // as containers/image: ":" ends a prefix (a tag, here a port)
    ["example.com/foo@sha256:00", "example.com/foo", 15],
    ["example.comx/foo", "example.com", -1],
    ["a.example.com/foo", "*.example.com", 13],
    ["a.b.example.com/foo", "*.example.com", 15],
    ["example.com/foo", "*.example.com", -1],
    ["other.com/a.example.com", "*.example.com", -1],
    ["a.example.community/x", "*.example.com", -1],
  ])("%s against %s → %i", (r, p, n) => {
    expect(matchPrefix(r, p)).toBe(n);
  });
});

describe("parseRegistriesConf", () => {
  it("reads [[registry]] tables with defaults: prefix = location, mirrors with pull-from-mirror", async () => {
    const c = await conf(`
unqualified-search-registries = ["docker.io"]
credential-helpers = ["containers-auth.json", "ecr-login"]

[[registry]]
location = "registry.local:5000/"
insecure = true

[[registry]]
prefix = "example.com/team"
location = "mirror.local/team"
blocked = false

[[registry.mirror]]
location = "m1.local"
[[registry.mirror]]
location = "m2.local"
insecure = true
pull-from-mirror = "digest-only"

[aliases]
"app" = "example.com/team/app"
`);
    expect(c.credentialHelpers).toEqual(["containers-auth.json", "ecr-login"]);
    expect(c.registries).toEqual([
      { prefix: "registry.local:5000", location: "registry.local:5000", insecure: true, blocked: false, mirrorByDigestOnly: false, mirrors: [], file: "test.conf" },
      {
        prefix: "example.com/team",
        location: "mirror.local/team",
        insecure: false,
        blocked: false,
        mirrorByDigestOnly: false,
        mirrors: [
          { location: "m1.local", insecure: false, pullFromMirror: "all" },
          { location: "m2.local", insecure: true, pullFromMirror: "digest-only" },
        ],
        file: "test.conf",
      },
    ]);
  });

  it("reads the V1 format: [registries.insecure] and [registries.block]", async () => {
    const c = await conf(`
[registries.search]
registries = ["docker.io"]
[registries.insecure]
registries = ["a.local:5000", "b.local"]
[registries.block]
registries = ["b.local", "evil.example"]
`);
    expect(c.registries.map((r) => [r.prefix, r.location, r.insecure, r.blocked])).toEqual([
      ["a.local:5000", "a.local:5000", true, false],
      ["b.local", "b.local", true, true],
      ["evil.example", "evil.example", false, true],
    ]);
  });

  it("refuses malformed files, naming the file and line", async () => {
    const err = await parseRegistriesConf('[[registry]]\nlocation = "a.local"\ninsecure = yes\n', "/etc/x.conf").catch((e) => e);
    expect(err).toBeInstanceOf(AirlockError);
    expect(err.message).toMatch(/^registries configuration \/etc\/x\.conf:3:\d+ is not valid TOML/);
    expect(err.message).not.toContain("\n");
  });

  it.each([
    ['[[registry]]\ninsecure = true\n', /neither prefix nor location/],
    ['[[registry]]\nlocation = "a.local"\ninsecure = "yes"\n', /insecure must be true or false/],
    ['[[registry]]\nlocation = "http://a.local"\n', /URL scheme/],
    ['[[registry]]\nlocation = "a.local"\n[[registry.mirror]]\ninsecure = true\n', /mirror\]\] #1 location is not set/],
    ['[[registry]]\nlocation = "a.local"\n[[registry.mirror]]\nlocation = "m"\npull-from-mirror = "sometimes"\n', /"sometimes"; expected "all"/],
    ['[[registry]]\nlocation = "a.local"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = "m"\npull-from-mirror = "tag-only"\n', /both mirror-by-digest-only and pull-from-mirror/],
    ['[registries.insecure]\nregistries = ["a"]\n[[registry]]\nlocation = "b"\n', /mixing the V1 format/],
  ])("refuses %j", async (text, message) => {
    await expect(parseRegistriesConf(text, "bad.conf")).rejects.toThrow(message);
  });

  it("refuses the V1 format in a drop-in", async () => {
    await expect(parseRegistriesConf('[registries.block]\nregistries = ["a"]\n', "d.conf", { dropIn: true })).rejects.toThrow(/not supported in drop-in/);
  });
});

describe("findRegistry and endpointsFor", () => {
  it("picks the longest matching prefix; a wildcard matches subdomains", async () => {
    const c = await conf(`
[[registry]]
prefix = "example.com"
location = "one.local"
[[registry]]
prefix = "example.com/team"
location = "two.local/t"
[[registry]]
prefix = "*.corp.example"
insecure = true
`);
    expect(findRegistry(c, "example.com/team/app")?.location).toBe("two.local/t");
    expect(findRegistry(c, "example.com/teams/app")?.location).toBe("one.local");
    expect(findRegistry(c, "reg.corp.example/app")?.insecure).toBe(true);
    expect(findRegistry(c, "quay.io/app")).toBeUndefined();
    const registry = findRegistry(c, "example.com/team/app");
    expect(endpointsFor(registry, ref("example.com/team/app:1"), "pull").map((e) => e.ref.toString())).toEqual(["two.local/t/app:1"]);
    // A wildcard without a location leaves the reference alone.
    expect(endpointsFor(findRegistry(c, "reg.corp.example/app"), ref("reg.corp.example/app:1"), "pull").map((e) => [e.ref.toString(), e.insecure])).toEqual([["reg.corp.example/app:1", true]]);
  });

  it("docker.io prefixes match the normalised name (library/)", async () => {
    const c = await conf('[[registry]]\nprefix = "docker.io/library"\nlocation = "hub-cache.local/library"\n');
    const e = endpointsFor(findRegistry(c, ref("busybox").name), ref("busybox:1"), "pull");
    expect(e.map((x) => x.ref.toString())).toEqual(["hub-cache.local/library/busybox:1"]);
  });

  it("mirrors come first for pulls, honouring pull-from-mirror and mirror-by-digest-only, and never for pushes", async () => {
    const c = await conf(`
[[registry]]
prefix = "example.com"
location = "primary.local"
[[registry.mirror]]
location = "all.local/m"
[[registry.mirror]]
location = "digest.local"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag.local"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "byd.example"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.local"
`);
    const D = `sha256:${"a".repeat(64)}`;
    const names = (r: string, op: "pull" | "push") => endpointsFor(findRegistry(c, ref(r).name), ref(r), op).map((e) => `${e.mirror ? "mirror " : ""}${e.ref.toString()}`);
    expect(names("example.com/app:1", "pull")).toEqual(["mirror all.local/m/app:1", "mirror tag.local/app:1", "primary.local/app:1"]);
    expect(names(`example.com/app@${D}`, "pull")).toEqual([`mirror all.local/m/app@${D}`, `mirror digest.local/app@${D}`, `primary.local/app@${D}`]);
    // A push (and list-tags, delete) goes where the reference says, as in skopeo: no location rewrite, no mirror.
    expect(names("example.com/app:1", "push")).toEqual(["example.com/app:1"]);
    expect(names("byd.example/app:1", "pull")).toEqual(["byd.example/app:1"]);
    expect(names(`byd.example/app@${D}`, "pull")).toEqual([`mirror m.local/app@${D}`, `byd.example/app@${D}`]);
  });
});

describe("readRegistriesConf (lookup and drop-ins)", () => {
  const home = join(tmp, "home");
  const etc = join(tmp, "etc");
  const usr = join(tmp, "usr");
  const base = { home, env: {}, uid: 1000, systemDirs: [etc, usr] };

  it("reads the first existing main file, then drop-ins sorted by name (an earlier directory hides a same-named file), a later table replacing one with the same prefix", async () => {
    write(join(usr, "registries.conf"), '[[registry]]\nlocation = "ignored.local"\n');
    write(join(etc, "registries.conf"), 'credential-helpers = ["containers-auth.json"]\n[[registry]]\nlocation = "a.local"\ninsecure = true\n[[registry]]\nlocation = "b.local"\n');
    write(join(etc, "registries.conf.d", "10-b.conf"), '[[registry]]\nlocation = "b.local"\nblocked = true\n');
    write(join(usr, "registries.conf.d", "10-b.conf"), '[[registry]]\nlocation = "hidden.local"\n');
    write(join(usr, "registries.conf.d", "20-c.conf"), 'credential-helpers = ["pass"]\n[[registry]]\nlocation = "c.local"\n');
    write(join(etc, "registries.rootless.conf.d", "30-d.conf"), '[[registry]]\nlocation = "d.local"\n');
    write(join(etc, "registries.rootful.conf.d", "30-e.conf"), '[[registry]]\nlocation = "rootful.local"\n');
    write(join(etc, "registries.conf.d", "not-a-drop-in.txt"), "garbage [[");
    const c = await readRegistriesConf(base);
    expect(c.files).toEqual([join(etc, "registries.conf"), join(etc, "registries.conf.d", "10-b.conf"), join(usr, "registries.conf.d", "20-c.conf"), join(etc, "registries.rootless.conf.d", "30-d.conf")]);
    expect(c.registries.map((r) => `${r.prefix}${r.insecure ? " insecure" : ""}${r.blocked ? " blocked" : ""}`)).toEqual(["a.local insecure", "b.local blocked", "c.local", "d.local"]);
    expect(c.credentialHelpers).toEqual(["pass"]);

    // The user's file wins over the system's; --registries-conf wins over both, drop-ins still apply.
    write(join(home, ".config", "containers", "registries.conf"), '[[registry]]\nlocation = "user.local"\n');
    expect((await readRegistriesConf(base)).registries.map((r) => r.prefix)).toEqual(["user.local", "b.local", "c.local", "d.local"]);
    const own = write(join(tmp, "own.conf"), '[[registry]]\nlocation = "own.local"\n');
    expect((await readRegistriesConf({ ...base, path: own })).registries.map((r) => r.prefix)).toEqual(["own.local", "b.local", "c.local", "d.local"]);
    // $CONTAINERS_REGISTRIES_CONF: that file, without drop-ins; the override file comes last.
    const override = write(join(tmp, "override.conf"), '[[registry]]\nlocation = "own.local"\ninsecure = true\n');
    const env = await readRegistriesConf({ ...base, env: { CONTAINERS_REGISTRIES_CONF: own, CONTAINERS_REGISTRIES_CONF_OVERRIDE: override } });
    expect(env.files).toEqual([own, override]);
    expect(env.registries.map((r) => [r.prefix, r.insecure])).toEqual([["own.local", true]]);
    expect(env.credentialHelpers).toEqual(["containers-auth.json"]);
  });

  it("a missing --registries-conf file is an error; a missing default file is an empty configuration", async () => {
    await expect(readRegistriesConf({ home: join(tmp, "none"), env: {}, path: join(tmp, "missing.conf"), systemDirs: [] })).rejects.toThrow(/missing\.conf \(--registries-conf\) does not exist/);
    expect(await readRegistriesConf({ home: join(tmp, "none"), env: {}, systemDirs: [join(tmp, "none")] })).toEqual({ files: [], registries: [], credentialHelpers: ["containers-auth.json"] });
  });
});

describe("resolveRegistryEndpoints", () => {
  const file = write(
    join(tmp, "resolve.conf"),
    `
[[registry]]
prefix = "insecure.example"
insecure = true
[[registry]]
prefix = "blocked.example"
blocked = true
[[registry]]
prefix = "mirrored.example"
[[registry.mirror]]
location = "mirror.example"
insecure = true
[[registry.mirror]]
location = "mirrored.example/cache"
`,
  );

  it("insecure turns TLS verification off unless --tls-verify=true was given", async () => {
    const [e] = await resolveRegistryEndpoints(ref("insecure.example/app:1"), { registriesConf: file }, "pull");
    expect(e?.ctx.tlsVerify).toBe(false);
    const [explicit] = await resolveRegistryEndpoints(ref("insecure.example/app:1"), { registriesConf: file, tlsVerify: true }, "pull");
    expect(explicit?.ctx.tlsVerify).toBe(true);
  });

  it("blocked refuses pulls and pushes with skopeo's message", async () => {
    for (const op of ["pull", "push"] as const) {
      const err = await resolveRegistryEndpoints(ref("blocked.example/app:1"), { registriesConf: file }, op).catch((x) => x);
      expect(err).toBeInstanceOf(AirlockError);
      expect(err.message).toMatch(new RegExp(`^registry blocked\\.example is blocked in ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `));
    }
  });

  it("--creds go to the primary and to mirrors on the same registry, not to other registries", async () => {
    const credentials = { username: "u", password: "p" };
    const e = await resolveRegistryEndpoints(ref("mirrored.example/app:1"), { registriesConf: file, credentials }, "pull");
    expect(e.map((x) => [x.ref.toString(), x.ctx.credentials !== undefined, x.ctx.tlsVerify])).toEqual([
      ["mirror.example/app:1", false, false],
      ["mirrored.example/cache/app:1", true, undefined],
      ["mirrored.example/app:1", true, undefined],
    ]);
  });
});

describe("lookupConfiguredCredentials (credential-helpers)", () => {
  const bin = join(tmp, "helpers");
  const authFile = write(join(tmp, "auth.json"), JSON.stringify({ auths: { "reg.example": { auth: Buffer.from("fromfile:pw").toString("base64") } } }));
  write(join(bin, "docker-credential-good"), '#!/bin/sh\nread server\nprintf \'{"Username":"helper-%s","Secret":"pw"}\' "$server"\n');
  write(join(bin, "docker-credential-broken"), "#!/bin/sh\necho boom >&2\nexit 3\n");
  for (const h of ["good", "broken"]) chmodSync(join(bin, `docker-credential-${h}`), 0o755);
  const withPath = async <T>(f: () => Promise<T>): Promise<T> => {
    const saved = process.env.PATH;
    process.env.PATH = `${bin}:${saved}`;
    try {
      return await f();
    } finally {
      process.env.PATH = saved;
    }
  };
  const helpers = (list: string[]) => write(join(tmp, `helpers-${list.join("-")}.conf`), `credential-helpers = ${JSON.stringify(list)}\n`);

  it("asks the helpers in order, the first with credentials wins; the auth files are the containers-auth.json entry", async () => {
    const name = "reg.example/team/app";
    expect(await withPath(() => lookupConfiguredCredentials(name, { registriesConf: helpers(["containers-auth.json", "good"]), authFile }))).toEqual({ username: "fromfile", password: "pw" });
    expect(await withPath(() => lookupConfiguredCredentials(name, { registriesConf: helpers(["good", "containers-auth.json"]), authFile }))).toEqual({ username: "helper-reg.example", password: "pw" });
    // A failing helper is passed over when another has credentials, and reported when none has.
    expect(await withPath(() => lookupConfiguredCredentials(name, { registriesConf: helpers(["broken", "containers-auth.json"]), authFile }))).toEqual({ username: "fromfile", password: "pw" });
    await expect(withPath(() => lookupConfiguredCredentials("other.example/app", { registriesConf: helpers(["broken", "containers-auth.json"]), authFile }))).rejects.toThrow(/docker-credential-broken failed for other\.example \(exit 3\): boom/);
    expect(await withPath(() => lookupConfiguredCredentials("other.example/app", { registriesConf: helpers(["containers-auth.json"]), authFile }))).toBeUndefined();
  });
});
