import { describe, expect, it } from "vitest";
import { bundleRefNameParser, isRepositoryName, isTag, parseRefName, refNamesOf, servedBundleName } from "./names.js";

describe("repository names and tags (distribution spec grammar)", () => {
  it.each(["a", "library/busybox", "a.b/c_d/e__f/g-h/i--j", "docker.io/library/busybox", "0/1", `${"a".repeat(255)}`])("accepts the name %s", (n) => {
    expect(isRepositoryName(n)).toBe(true);
  });

  it.each(["", "A", "a/", "/a", "a//b", "a/../b", "..", ".", "a/.b", "-a", "a-", "a_", "a___b", "a%2Fb", "a:b", "a b", `${"a".repeat(256)}`, "a/./b"])("refuses the name %j", (n) => {
    expect(isRepositoryName(n)).toBe(false);
  });

  it.each(["latest", "v1.0", "_x", "A-b.c_d", "a".repeat(128)])("accepts the tag %s", (t) => {
    expect(isTag(t)).toBe(true);
  });

  it.each(["", ".x", "-x", "a/b", "a:b", "../x", "a".repeat(129), "sha256:abc"])("refuses the tag %j", (t) => {
    expect(isTag(t)).toBe(false);
  });

  it("reads index.json names as REPOSITORY:TAG, a bare repository as latest, and skips the rest", () => {
    expect(parseRefName("team/app:1.0")).toEqual({ repository: "team/app", tag: "1.0", implicit: false });
    expect(parseRefName("docker.io/library/busybox:1.36")).toEqual({ repository: "docker.io/library/busybox", tag: "1.36", implicit: false });
    expect(parseRefName("single")).toEqual({ repository: "single", tag: "latest", implicit: true });
    expect(parseRefName("localhost:5000/app:1")).toBeUndefined();
    expect(parseRefName("App:1")).toBeUndefined();
    expect(parseRefName("app:")).toBeUndefined();
    expect(parseRefName("app@sha256:abc")).toBeUndefined();
    expect(refNamesOf("app", "latest")).toEqual(["app:latest", "app"]);
    expect(refNamesOf("app", "v1")).toEqual(["app:v1"]);
  });
});

describe("bundle image names, served as import --to HOST names them", () => {
  const D = `sha256:${"a".repeat(64)}`;
  it.each<[string, string, unknown]>([
    ["127.0.0.1:5000/team/app:1", "keep-path", { repository: "127.0.0.1_5000/team/app", tag: "1", digest: undefined }],
    ["127.0.0.1:5000/team/app:1", "strip-registry", { repository: "team/app", tag: "1", digest: undefined }],
    ["Registry.Example.com:5000/x/y:v2", "keep-path", { repository: "registry.example.com_5000/x/y", tag: "v2", digest: undefined }],
    ["localhost:5000/app", "keep-path", { repository: "localhost_5000/app", tag: undefined, digest: undefined }],
    ["localhost/app:1", "strip-registry", { repository: "app", tag: "1", digest: undefined }],
    ["docker.io/library/busybox:1.36", "keep-path", { repository: "docker.io/library/busybox", tag: "1.36", digest: undefined }],
    ["docker.io/library/busybox:1.36", "strip-registry", { repository: "library/busybox", tag: "1.36", digest: undefined }],
    [`quay.io:443/org/app@${D}`, "keep-path", { repository: "quay.io_443/org/app", tag: undefined, digest: D }],
    [`quay.io/org/app:1@${D}`, "strip-registry", { repository: "org/app", tag: "1", digest: D }],
    ["team/app:1.0", "keep-path", { repository: "team/app", tag: "1.0", digest: undefined }],
    ["team/app:1.0", "strip-registry", { repository: "team/app", tag: "1.0", digest: undefined }],
    ["Team/App:1", "keep-path", undefined],
    ["127.0.0.1:5000/app:", "keep-path", undefined],
    ["127.0.0.1:5000/app@nodigest", "keep-path", undefined],
  ])("%s with %s is %j", (name, naming, want) => {
    expect(servedBundleName(name, naming as "keep-path" | "strip-registry")).toEqual(want);
  });

  it("serves a tagged name by its tag, a digest-only name by digest, a bare name as latest", () => {
    const parse = bundleRefNameParser("keep-path");
    expect(parse("127.0.0.1:5000/team/app:1")).toEqual({ repository: "127.0.0.1_5000/team/app", tag: "1", implicit: false });
    expect(parse(`127.0.0.1:5000/team/app@${D}`)).toEqual({ repository: "127.0.0.1_5000/team/app", tag: undefined, implicit: false });
    expect(parse("127.0.0.1:5000/team/app")).toEqual({ repository: "127.0.0.1_5000/team/app", tag: "latest", implicit: true });
    expect(parse("UPPER/case:1")).toBeUndefined();
  });
});
