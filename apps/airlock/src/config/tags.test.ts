import { describe, expect, it } from "vitest";
import { selectTags, type TagSelector, tagVersion } from "./tags.js";

const REPO = ["latest", "1.1.0", "v1.2.0", "1.2.1-rc1", "v1.3.0", "1.10.0", "1.9.5", "2.0.0", "2.0.0-beta.1", "1.2", "edge", "1.3.0-alpine", "v1.3.0"];

describe("selectTags", () => {
  const cases: [string, readonly string[], TagSelector, string[]][] = [
    ["a list keeps the listed tags that exist, in the registry's order", REPO, ["2.0.0", "nope", "latest"], ["latest", "2.0.0"]],
    ["include is unanchored", REPO, { include: ["rc"] }, ["1.2.1-rc1"]],
    ["include with ^$ matches whole tags", REPO, { include: ["^\\d+\\.\\d+$"] }, ["1.2"]],
    ["several includes are OR-ed", REPO, { include: ["^edge$", "^latest$"] }, ["latest", "edge"]],
    ["exclude drops any match", REPO, { include: ["^v"], exclude: ["1\\.2"] }, ["v1.3.0"]],
    ["exclude alone starts from every tag", ["a", "b-rc", "c"], { exclude: ["-rc"] }, ["a", "c"]],
    ["semver keeps versions in range, with or without v, no pre-releases", REPO, { semver: ">=1.2.0 <2" }, ["v1.2.0", "v1.3.0", "1.10.0", "1.9.5"]],
    ["semver does not coerce 1.2 to 1.2.0", ["1.2", "1.2.0"], { semver: "1.2.x" }, ["1.2.0"]],
    ["a range naming a pre-release lets that one match", REPO, { semver: ">=2.0.0-beta.0 <3" }, ["2.0.0", "2.0.0-beta.1"]],
    ["newest with semver ranks by version, keeps the input order", REPO, { semver: ">=1.0.0", newest: 2 }, ["1.10.0", "2.0.0"]],
    ["newest without semver ranks by version when every tag is one", ["1.9.0", "1.10.0", "1.2.0"], { newest: 1 }, ["1.10.0"]],
    ["newest over non-versions ranks them lexically (not in the registry's order)", ["a", "latest", "c", "b"], { newest: 2 }, ["latest", "c"]],
    // distribution 2.8.2 listed these in this order (it does not sort tags).
    ["newest over mixed tags ranks versions first, by their numbers", ["2.0.0", "latest", "1.0.0", "1.2.0", "dev-x", "2.1.0-rc1", "1.10.0"], { newest: 2 }, ["2.0.0", "2.1.0-rc1"]],
    ["newest ranks non-semver numbers one by one; a release above its suffixed builds", ["3.9", "3.19", "3.19-alpine", "edge", "20240101"], { newest: 3 }, ["3.19", "3.19-alpine", "20240101"]],
    ["newest larger than the set keeps everything", ["x", "y"], { newest: 5 }, ["x", "y"]],
    ["include then semver then newest", REPO, { include: ["^v"], semver: "^1", newest: 1 }, ["v1.3.0"]],
    ["duplicates from the registry appear once", ["a", "a", "b"], { include: ["."] }, ["a", "b"]],
    ["nothing matches: empty", REPO, { include: ["^nope$"] }, []],
  ];
  it.each(cases)("%s", (_what, all, selector, want) => {
    expect(selectTags(all, selector)).toEqual(want);
  });

  it("ranks equal versions (v1.3.0 and 1.3.0) by input order", () => {
    expect(selectTags(["v1.3.0", "1.3.0", "1.0.0"], { newest: 1 })).toEqual(["v1.3.0"]);
  });

  it("throws on an invalid regex or range (images.yaml checks them first)", () => {
    expect(() => selectTags(["a"], { include: ["("] })).toThrow(SyntaxError);
    expect(() => selectTags(["a"], { semver: "not a range" })).toThrow(TypeError);
  });
});

describe("tagVersion", () => {
  it.each([
    ["1.2.3", "1.2.3"],
    ["v1.2.3", "1.2.3"],
    ["1.2.3-rc.1", "1.2.3-rc.1"],
    ["1.2", undefined],
    ["1.2.3.4", undefined],
    ["latest", undefined],
    ["01.2.3", undefined],
  ])("%s → %s", (tag, want) => {
    expect(tagVersion(tag)?.version).toBe(want);
  });
});
