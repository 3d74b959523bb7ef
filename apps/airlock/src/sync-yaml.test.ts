import { describe, expect, it } from "vitest";
import { mastermindsVersion, parseSyncYaml, registryContext, selectBySemver, selectForEntry, semverRange } from "./sync-yaml.js";

// The example of skopeo-sync(1).
const SKOPEO_EXAMPLE = `
registry.example.com:
    images:
        busybox: []
        redis:
            - "1.0"
            - "2.0"
            - "sha256:0000000000000000000000000000000011111111111111111111111111111111"
    images-by-tag-regex:
        nginx: ^1\\.13\\.[12]-alpine-perl$
    images-by-semver:
        alpine: ">= 3.12.0"
    credentials:
        username: john
        password: this is a secret
    tls-verify: true
    cert-dir: /home/john/certs
quay.io:
    tls-verify: false
    images:
        coreos/etcd:
            - latest
`;

describe("parseSyncYaml", () => {
  it("reads skopeo's example with skopeo's meaning", () => {
    const { registries, warnings } = parseSyncYaml(SKOPEO_EXAMPLE, "sync.yaml");
    expect(warnings).toEqual([]);
    expect(registries.map((r) => r.name)).toEqual(["registry.example.com", "quay.io"]);
    const [ex, quay] = registries;
    expect(ex).toMatchObject({ tlsVerify: true, certDir: "/home/john/certs", credentials: { username: "john", password: "this is a secret" } });
    expect(ex?.repositories.map((r) => [r.repository.toString(), r.section, r.refs, r.regex, r.semver])).toEqual([
      ["registry.example.com/busybox", "images", [], undefined, undefined],
      ["registry.example.com/redis", "images", ["1.0", "2.0", "sha256:0000000000000000000000000000000011111111111111111111111111111111"], undefined, undefined],
      ["registry.example.com/nginx", "images-by-tag-regex", [], "^1\\.13\\.[12]-alpine-perl$", undefined],
      ["registry.example.com/alpine", "images-by-semver", [], undefined, ">= 3.12.0"],
    ]);
    expect(quay).toMatchObject({ tlsVerify: false });
    expect(quay?.credentials).toBeUndefined();
    expect(quay?.repositories.map((r) => [r.repository.toString(), r.refs, r.at])).toEqual([["quay.io/coreos/etcd", ["latest"], "sync.yaml:21:9"]]);
  });

  it("reads unquoted numbers as the tags they are written as (Go's yaml.v3 does); null = every tag; docker.io names are normalised", () => {
    const { registries } = parseSyncYaml("docker.io:\n  images:\n    redis: [1.0, 7, 6.2.1]\n    busybox:\n", "f.yaml");
    expect(registries[0]?.repositories.map((r) => [r.repository.toString(), r.refs])).toEqual([
      ["docker.io/library/redis", ["1.0", "7", "6.2.1"]],
      ["docker.io/library/busybox", []],
    ]);
  });

  it("reads airlock's per-repository destinations", () => {
    const text = `r.io:
  images:
    team/app: {tags: ["1.0"], destination: mirror/app}
    team/all: {destination: mirror/all}
  images-by-tag-regex:
    web/nginx: {regex: "^1\\\\.2", destination: web/nginx}
  images-by-semver:
    base/alpine: {semver: ">=3.19", destination: base/alpine}
`;
    const repos = parseSyncYaml(text, "f.yaml").registries[0]?.repositories;
    expect(repos?.map((r) => [r.repository.path, r.refs, r.regex, r.semver, r.destination])).toEqual([
      ["team/app", ["1.0"], undefined, undefined, "mirror/app"],
      ["team/all", [], undefined, undefined, "mirror/all"],
      ["web/nginx", [], "^1\\.2", undefined, "web/nginx"],
      ["base/alpine", [], undefined, ">=3.19", "base/alpine"],
    ]);
  });

  it("refuses a file with errors, listing every one at its line and column, never echoing a password", () => {
    const text = `r.io:
  images:
    UPPER/case: []
    ok: ["no/slash", "sha256:abc"]
    mapped: {tags: [], destination: "Bad/Dest:1"}
  images-by-tag-regex:
    app: "([a-"
  images-by-semver:
    app: "not a range"
    other: {destination: x}
  tls-verify: "yes"
  credentials:
    password: [hunter2-secret]
`;
    let message = "";
    try {
      parseSyncYaml(text, "bad.yaml");
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^bad\.yaml is not a valid sync file \(\d+ errors\):/);
    for (const re of [
      /bad\.yaml:3:5: r\.io: "UPPER\/case" is not a repository name/,
      /bad\.yaml:4:10: r\.io\.images\.ok\[0\]: "no\/slash" is neither a valid tag nor a valid digest/,
      /bad\.yaml:4:22: r\.io\.images\.ok\[1\]: "sha256:abc" is neither/,
      /bad\.yaml:5:37: r\.io\.images\.mapped\.destination "Bad\/Dest:1" is not a repository path/,
      /bad\.yaml:7:10: r\.io\.images-by-tag-regex\.app: "\(\[a-" is not a valid regular expression/,
      /bad\.yaml:9:10: r\.io\.images-by-semver\.app: "not a range" is not a valid semver constraint/,
      /bad\.yaml:10:12: r\.io\.images-by-semver\.other: "semver" is required/,
      /bad\.yaml:11:15: r\.io\.tls-verify must be true or false/,
      /bad\.yaml:13:15: r\.io\.credentials\.password must be a string/,
    ]) {
      expect(message).toMatch(re);
    }
    expect(message).not.toContain("hunter2");
  });

  it("warns about unknown keys and registries without images, as skopeo ignores them", () => {
    const { registries, warnings } = parseSyncYaml("r.io:\n  image:\n    app: []\n  credentials: {username: u, identitytoken: t}\n", "w.yaml");
    expect(registries[0]?.repositories).toEqual([]);
    expect(registries[0]?.credentials).toEqual({ username: "u", password: "" });
    expect(warnings).toEqual([
      'w.yaml:2:3: r.io: unknown key "image" ignored (keys: images, images-by-tag-regex, images-by-semver, credentials, tls-verify, cert-dir)',
      'w.yaml:4:30: r.io.credentials: key "identitytoken" ignored (keys: username, password)',
      "w.yaml:1:1: No images specified for registry r.io",
    ]);
  });
});

describe("semantic versions as skopeo (Masterminds/semver) reads them", () => {
  it.each([
    ["1.2.3", "1.2.3"],
    ["v1.2", "1.2.0"],
    ["3.12", "3.12.0"],
    ["7", "7.0.0"],
    ["01.2", "1.2.0"],
    ["1.2.3-rc.1+build.5", "1.2.3-rc.1+build.5"],
    ["latest", undefined],
    ["1.2.3.4", undefined],
    ["1.2-", undefined],
  ])("%s → %s", (tag, want) => expect(mastermindsVersion(tag)).toBe(want));

  it("selects by constraint: commas are AND, pre-releases only when asked for", () => {
    const tags = ["1.0.0", "1.1.0", "1.2.0-rc1", "2.0.0", "latest", "dev", "v1.5", "3.1", "3"];
    expect(semverRange(">= 1.0, < 3")).toBe(">= 1.0 < 3");
    expect(selectBySemver(tags, ">= 1.0, < 3")).toEqual(["1.0.0", "1.1.0", "2.0.0", "v1.5"]);
    expect(selectBySemver(tags, ">= 1.2.0-rc0")).toEqual(["1.2.0-rc1", "2.0.0", "v1.5", "3.1", "3"]);
    expect(selectBySemver(tags, "^3")).toEqual(["3.1", "3"]);
  });

  it("selectForEntry applies the entry's regex (unanchored) or constraint", () => {
    const { registries } = parseSyncYaml('r.io:\n  images-by-tag-regex: {a: "1\\\\.[01]"}\n  images-by-semver: {a: "~1.1"}\n  images: {a: []}\n', "f.yaml");
    const [all, bySemver, byRegex] = (registries[0]?.repositories ?? []).sort((x, y) => x.section.localeCompare(y.section));
    const tags = ["1.0.0", "1.1.0", "1.1.5", "x1.1y", "2.0.0"];
    expect(all && selectForEntry(all, tags)).toEqual(tags);
    expect(byRegex && selectForEntry(byRegex, tags)).toEqual(["1.0.0", "1.1.0", "1.1.5", "x1.1y"]);
    expect(bySemver && selectForEntry(bySemver, tags)).toEqual(["1.1.0", "1.1.5"]);
  });
});

describe("registryContext", () => {
  it("puts the registry's settings over the --src-* flags", () => {
    const base = { tmpDir: "/t", docker: { noCreds: true, certDir: "/cli", tlsVerify: true, authFile: "/a.json" } };
    const reg = { name: "r.io", credentials: { username: "u", password: "p" }, tlsVerify: false, repositories: [] };
    expect(registryContext(base, reg)).toEqual({ tmpDir: "/t", docker: { certDir: "/cli", tlsVerify: false, authFile: "/a.json", credentials: { username: "u", password: "p" } } });
    expect(registryContext(base, { name: "q.io", certDir: "/yaml", repositories: [] }).docker).toEqual({ noCreds: true, certDir: "/yaml", tlsVerify: true, authFile: "/a.json" });
    expect(base.docker.noCreds).toBe(true);
  });
});
