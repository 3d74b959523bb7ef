import { describe, expect, it } from "vitest";
import { isRepositoryName, isTag, parseRefName, refNamesOf } from "./names.js";

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
