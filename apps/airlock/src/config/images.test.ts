import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { isAirlockError } from "@airlock/core";
import { describe, expect, it } from "vitest";
import { type ImagesConfig, parseImagesConfig, type RegistryImageEntry, type TransportImageEntry } from "./images.js";
import { ConfigFileError } from "./yaml-check.js";

/** Parses and returns the ConfigFileError's issues as "LINE:COL message". */
function issues(text: string, file = "images.yaml"): string[] {
  try {
    parseImagesConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigFileError);
    return (err as ConfigFileError).issues.map((i) => `${i.line}:${i.col} ${i.message}`);
  }
  throw new Error("expected the file to be invalid");
}

const BRIEF = `version: 1
defaults:
  platforms: all
  keepIndex: false
registries:
  registry.example.com:5000:
    tlsVerify: false
    certDir: /etc/airlock/certs/example
    credentials:
      env: { username: EXAMPLE_USER, password: EXAMPLE_PASSWORD }
  index.docker.io:
    credentials: { none: true }
  ghcr.io:
    credentials: { authFile: ~/.docker/config.json }
destination:
  naming: keep-path
images:
  - name: docker.io/library/busybox
    tags: ["1.36", "1.37"]
  - name: quay.io/org/app
    tags: { include: ['^v\\d+\\.\\d+\\.\\d+$'], exclude: ['-rc'], semver: ">=1.2.0 <2", newest: 3 }
  - name: docker.io/library/alpine@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d
  - source: oci:./fixtures/oci:single
    as: example/single:1.0
    platforms: [linux/amd64]
`;

describe("parseImagesConfig: a valid file", () => {
  const config: ImagesConfig = parseImagesConfig(BRIEF, "/srv/project/images.yaml");

  it("reads defaults, destination and registries (Docker Hub aliases normalised)", () => {
    expect(config.defaults).toEqual({ platforms: "all", keepIndex: false });
    expect(config.destination.naming).toBe("keep-path");
    expect([...config.registries.keys()]).toEqual(["registry.example.com:5000", "docker.io", "ghcr.io"]);
    expect(config.registries.get("registry.example.com:5000")).toMatchObject({
      tlsVerify: false,
      certDir: "/etc/airlock/certs/example",
      credentials: { kind: "env", usernameVar: "EXAMPLE_USER", passwordVar: "EXAMPLE_PASSWORD" },
      at: "/srv/project/images.yaml:6:3",
    });
    expect(config.registries.get("docker.io")?.credentials).toEqual({ kind: "none" });
    expect(config.registries.get("ghcr.io")?.credentials).toEqual({ kind: "authFile", path: join(homedir(), ".docker/config.json") });
  });

  it("reads each kind of image entry", () => {
    const [busybox, app, alpine, single] = config.images as [RegistryImageEntry, RegistryImageEntry, RegistryImageEntry, TransportImageEntry];
    expect(busybox.repository.name).toBe("docker.io/library/busybox");
    expect(busybox.selection).toEqual({ kind: "tags", tags: ["1.36", "1.37"] });
    expect(busybox.at).toBe("/srv/project/images.yaml:18:5");
    expect(app.selection).toEqual({ kind: "filter", filter: { include: ["^v\\d+\\.\\d+\\.\\d+$"], exclude: ["-rc"], semver: ">=1.2.0 <2", newest: 3 } });
    expect(alpine.selection).toEqual({ kind: "digest", digest: "sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d" });
    expect(single).toMatchObject({
      kind: "transport",
      sourceAsWritten: "oci:./fixtures/oci:single",
      source: "oci:/srv/project/fixtures/oci:single",
      as: { repository: "example/single", tag: "1.0" },
      platforms: [{ os: "linux", architecture: "amd64" }],
    });
  });

  it("resolves relative paths of path transports against the file's directory", () => {
    const text = `version: 1\nimages:\n  - source: dir:../img\n    as: a:1\n  - source: oci:/abs/layout:x\n    as: b:1\n  - source: oci:layout\n    as: c:1\n`;
    const c = parseImagesConfig(text, "conf/images.yaml");
    expect(c.images.map((i) => (i as TransportImageEntry).source)).toEqual([`dir:${resolve("img")}`, "oci:/abs/layout:x", `oci:${resolve("conf/layout")}`]);
  });

  it("applies defaults unless an image overrides them", () => {
    const c = parseImagesConfig(
      `version: 1\ndefaults: { platforms: [linux/amd64, linux/arm64/v8], keepIndex: true }\nimages:\n  - name: a:1\n  - name: b:1\n    platforms: linux/s390x\n    keepIndex: false\n`,
      "i.yaml",
    );
    expect(c.images[0]).toMatchObject({ keepIndex: true, platforms: [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64", variant: "v8" }] });
    expect(c.images[1]).toMatchObject({ keepIndex: false, platforms: [{ os: "linux", architecture: "s390x" }] });
  });

  it("follows YAML aliases", () => {
    const c = parseImagesConfig(`version: 1\ndefaults:\n  platforms: &p [linux/arm64]\nimages:\n  - name: a:1\n    platforms: *p\n    keepIndex: &k true\n  - name: b:1\n    keepIndex: *k\n`, "i.yaml");
    expect(c.images.map((i) => [i.platforms, i.keepIndex])).toEqual([
      [[{ os: "linux", architecture: "arm64" }], true],
      [[{ os: "linux", architecture: "arm64" }], true],
    ]);
    expect(issues("version: 1\nimages:\n  - name: a:1\n    keepIndex: *nowhere\n")).toEqual([expect.stringMatching(/^4:16 /)]);
  });

  it("accepts source: docker://… as a registry image, with tags", () => {
    const c = parseImagesConfig(`version: 1\nimages:\n  - source: docker://quay.io/org/app\n    tags: [v1]\n    as: team/app\n`, "i.yaml");
    expect(c.images[0]).toMatchObject({ kind: "registry", selection: { kind: "tags", tags: ["v1"] }, as: { repository: "team/app" } });
    expect((c.images[0] as RegistryImageEntry).repository.name).toBe("quay.io/org/app");
  });
});

describe("parseImagesConfig: errors name file, line and column", () => {
  const cases: [string, string, string[]][] = [
    ["YAML syntax error", "version: 1\nimages:\n  - name: [a\n", ["4:1 YAML syntax"]],
    ["duplicate key", "version: 1\nversion: 1\nimages: [{name: a:1}]\n", ["2:1 YAML syntax: Map keys must be unique"]],
    ["a second document", "version: 1\nimages: [{name: a:1}]\n---\nversion: 1\n", ["3:1 YAML syntax: Source contains multiple documents"]],
    ["empty file", "\n# nothing\n", ["1:1 the file is empty"]],
    ["not a mapping", "- a\n", ["1:1 the file must be a mapping, found a list"]],
    ["version 2", "version: 2\nimages: [{name: a:1}]\n", ["1:10 version must be 1"]],
    ["version as a string", "version: '1'\nimages: [{name: a:1}]\n", ["1:10 version must be 1"]],
    ["version and images missing", "defaults: {}\n", ['1:1 the file: "version" is required', '1:1 the file: "images" is required']],
    ["unknown top-level key, with a suggestion", "version: 1\nimage: []\nimages: [{name: a:1}]\n", ['2:1 the file: unknown key "image" (did you mean "images"?)']],
    ["skopeo spelling of a key", "version: 1\nregistries:\n  quay.io:\n    tls-verify: false\nimages: [{name: a:1}]\n", ['4:5 registries.quay.io: unknown key "tls-verify" (did you mean "tlsVerify"?)']],
    ["wrong type", "version: 1\ndefaults:\n  keepIndex: yes\nimages: [{name: a:1}]\n", ['3:14 defaults.keepIndex must be true or false, found the string "yes"']],
    ["a number where a tag belongs", "version: 1\nimages:\n  - name: busybox\n    tags: [1.36, 1.10]\n", ['4:12 images[0].tags[0] must be a string, found the number "1.36"; quote it: "1.36"', '4:18 images[0].tags[1] must be a string, found the number "1.10" (YAML reads 1.10 as the number 1.1); quote it: "1.10"']],
    ["bad reference, with core's message", "version: 1\nimages:\n  - name: Quay.io/Org/App:1\n", ['3:11 images[0]: invalid image reference "Quay.io/Org/App:1": repository name "Org/App" must be lowercase']],
    ["a transport in name:", "version: 1\nimages:\n  - name: oci:./x:y\n", ['3:11 images[0]: name: "oci:./x:y" starts with the transport "oci:"; name: takes a registry reference, write source: oci:./x:y']],
    ["bad source", "version: 1\nimages:\n  - source: nope:x\n    as: a:1\n", ['3:13 images[0]: source: unknown transport "nope"']],
    ["a registry source without docker://", "version: 1\nimages:\n  - source: 127.0.0.1:15001/x:1\n    as: a:1\n", ['3:13 images[0]: source: unknown transport "127.0.0.1" in "127.0.0.1:15001/x:1"; for a registry image write docker://127.0.0.1:15001/x:1']],
    ["bad platform", "version: 1\nimages:\n  - name: a:1\n    platforms: [linux/amd64, linux, Linux/ARM64, linux/amd64]\n", ['4:30 images[0].platforms[1]: invalid platform "linux"', '4:37 images[0].platforms[2]: invalid platform "Linux/ARM64"', '4:50 images[0].platforms[3]: platform "linux/amd64" is listed twice']],
    ["all inside a platform list", "version: 1\ndefaults:\n  platforms: [all]\nimages: [{name: a:1}]\n", ['3:15 defaults.platforms[0]: "all" cannot be part of a list']],
    ["bad regex", "version: 1\nimages:\n  - name: a\n    tags:\n      include: ['^v(']\n", ['5:17 images[0].tags.include: invalid regular expression "^v("']],
    ["bad semver range", "version: 1\nimages:\n  - name: a\n    tags: { semver: '>=1.x.y.z' }\n", ['4:21 images[0].tags.semver: ">=1.x.y.z" is not a valid semver range']],
    ["newest not a positive integer", "version: 1\nimages:\n  - name: a\n    tags: { newest: 0 }\n", ["4:21 images[0].tags.newest must be an integer of at least 1"]],
    ["empty filter", "version: 1\nimages:\n  - name: a\n    tags: {}\n", ["4:11 images[0].tags is empty"]],
    ["tags and a digest", `version: 1\nimages:\n  - name: a@sha256:${"a".repeat(64)}\n    tags: ["1"]\n`, ["4:5 images[0]: tags: cannot be combined with a digest in the name"]],
    ["a tag and a digest", `version: 1\nimages:\n  - name: a:1@sha256:${"a".repeat(64)}\n`, [`3:11 images[0]: "a:1@sha256:${"a".repeat(64)}" has both a tag and a digest; write docker.io/library/a@sha256:`]],
    ["no tag at all", "version: 1\nimages:\n  - name: quay.io/org/app\n", ['3:11 images[0]: "quay.io/org/app" has no tag']],
    ["name and source", "version: 1\nimages:\n  - name: a:1\n    source: oci:x\n", ["4:5 images[0]: has both name and source"]],
    ["neither name nor source", "version: 1\nimages:\n  - tags: [a]\n", ["3:5 images[0]: needs name:"]],
    ["a bare string as an image", "version: 1\nimages:\n  - busybox:1.36\n", ["3:5 images[0] must be a mapping; write - name: busybox:1.36"]],
    ["source without as:", "version: 1\nimages:\n  - source: oci:./l:x\n", ['3:5 images[0]: source "oci:./l:x" needs as:']],
    ["as: without a tag on a source", "version: 1\nimages:\n  - source: oci:./l:x\n    as: team/x\n", ['4:9 images[0]: as: "team/x" needs a tag']],
    ["as: with a registry host", "version: 1\nimages:\n  - name: a:1\n    as: quay.io/a:1\n", ['4:9 images[0]: as: "quay.io/a:1" starts with a registry host']],
    ["as: with a tag on several tags", "version: 1\nimages:\n  - name: a\n    tags: ['1', '2']\n    as: b:3\n", ['5:9 images[0]: as: "b:3" has a tag, but the entry selects several tags']],
    ["tags: on a non-registry source", "version: 1\nimages:\n  - source: oci:./l:x\n    as: x:1\n    tags: [a]\n", ['5:5 images[0]: tags: selects tags of a registry image']],
    ["duplicate tag in a list", "version: 1\nimages:\n  - name: a\n    tags: ['1', '1']\n", ['4:17 images[0].tags[1]: tag "1" is listed twice']],
    ["a pattern in a tag list", "version: 1\nimages:\n  - name: a\n    tags: ['v1.*']\n", ['4:12 images[0].tags[0]: "v1.*" is not a valid tag (1 to 128 of [A-Za-z0-9_.-], not starting with . or -); to select tags by pattern write tags: { include: [...] }']],
    ["duplicate images", "version: 1\nimages:\n  - name: busybox:1.36\n  - name: docker.io/library/busybox\n    tags: ['1.37', '1.36']\n", ['4:5 images[1]: "docker.io/library/busybox:1.36" is already listed by images[0] at images.yaml:3:5']],
    ["duplicate as: names", "version: 1\nimages:\n  - source: oci:./l:x\n    as: x:1\n  - name: a:1\n    as: x\n", ['5:5 images[1]: "x:1" is already listed by images[0]']],
    ["bad registry host", "version: 1\nregistries:\n  quay.io/org: {}\nimages: [{name: a:1}]\n", ['3:3 registries.quay.io/org: "quay.io/org" is not a registry host']],
    ["registry configured twice", "version: 1\nregistries:\n  docker.io: {}\n  index.docker.io: {}\nimages: [{name: a:1}]\n", ['4:3 registries.index.docker.io: registry "docker.io" is already configured at images.yaml:3:3']],
    ["two credential sources", "version: 1\nregistries:\n  r.io:\n    credentials: { none: true, authFile: x }\nimages: [{name: a:1}]\n", ["4:18 registries.r.io.credentials must have exactly one of env, authFile, none; found none and authFile"]],
    ["none: false", "version: 1\nregistries:\n  r.io:\n    credentials: { none: false }\nimages: [{name: a:1}]\n", ["4:26 registries.r.io.credentials.none must be true"]],
    ["env missing a variable", "version: 1\nregistries:\n  r.io:\n    credentials:\n      env: { username: U }\nimages: [{name: a:1}]\n", ['5:12 registries.r.io.credentials.env: "password" is required']],
    ["bad naming mode", "version: 1\ndestination: { naming: flat }\nimages: [{name: a:1}]\n", ['2:24 destination.naming must be one of keep-path, strip-registry, found "flat"']],
    ["empty images", "version: 1\nimages: []\n", ["2:9 images must list at least one image"]],
  ];
  it.each(cases)("%s", (_what, text, want) => {
    const got = issues(text);
    expect(got).toHaveLength(want.length);
    for (const [i, w] of want.entries()) expect(got[i]).toContain(w);
  });

  it("lists every problem in one ERR_INVALID_ARGUMENT, summary first, FILE:LINE:COL per line", () => {
    const text = "version: 3\nimages:\n  - name: a\n    tags: { semver: nope }\n  - name: b:1\n    platforms: [linux]\n";
    let err: unknown;
    try {
      parseImagesConfig(text, "conf/images.yaml");
    } catch (e) {
      err = e;
    }
    expect(isAirlockError(err, "ERR_INVALID_ARGUMENT")).toBe(true);
    const lines = (err as Error).message.split("\n");
    expect(lines[0]).toBe("conf/images.yaml is not a valid images file (3 errors):");
    expect(lines.slice(1).map((l) => l.split(" ")[0])).toEqual(["conf/images.yaml:1:10:", "conf/images.yaml:4:21:", "conf/images.yaml:6:17:"]);
  });
});

describe("parseImagesConfig: secrets never go in the file, nor in its errors", () => {
  it("refuses a literal password and does not echo it", () => {
    const text = "version: 1\nregistries:\n  quay.io:\n    credentials:\n      username: bob\n      password: hunter2-Secret\nimages: [{name: a:1}]\n";
    const got = issues(text);
    expect(got.some((m) => m.startsWith('6:7 registries.quay.io.credentials: "password" looks like a secret'))).toBe(true);
    expect(got.join("\n")).not.toContain("hunter2");
  });

  it("refuses a token anywhere, e.g. on an image", () => {
    const got = issues("version: 1\nimages:\n  - name: a:1\n    token: abc.def.ghi\n");
    expect(got).toEqual([expect.stringMatching(/^4:5 images\[0\]: "token" looks like a secret/)]);
    expect(got[0]).not.toContain("abc.def");
  });

  it("refuses an env: value that is not a variable name, without echoing it", () => {
    const got = issues("version: 1\nregistries:\n  r.io:\n    credentials:\n      env: { username: USER, password: 'p@ss w0rd!' }\nimages: [{name: a:1}]\n");
    expect(got).toEqual([expect.stringMatching(/^5:40 registries\.r\.io\.credentials\.env\.password must be the NAME of an environment variable/)]);
    expect(got[0]).not.toContain("p@ss");
  });

  it("does not echo a secret on a YAML syntax error", () => {
    const got = issues("version: 1\nregistries:\n  r.io:\n    credentials: { password: \"s3cr3t\n");
    expect(got.join("\n")).not.toContain("s3cr3t");
  });
});
