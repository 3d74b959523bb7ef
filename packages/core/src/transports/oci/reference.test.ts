import { describe, expect, it } from "vitest";
import { parseImageName } from "../index.js";
import "../all.js";
import { isValidOciRefName, OciReference } from "./reference.js";

describe("oci: references", () => {
  it.each([
    ["/srv/layout", "/srv/layout", undefined, undefined, "oci:/srv/layout"],
    ["/srv/layout:app", "/srv/layout", "app", undefined, "oci:/srv/layout:app"],
    // The path ends at the FIRST colon; the rest (colons included) is the name.
    ["/srv/layout:app:1.0", "/srv/layout", "app:1.0", undefined, "oci:/srv/layout:app:1.0"],
    ["layout:registry.example.com/org/app:v1.2+build", "layout", "registry.example.com/org/app:v1.2+build", undefined, "oci:layout:registry.example.com/org/app:v1.2+build"],
    ["./l:a--b", "./l", "a--b", undefined, "oci:./l:a--b"],
    ["l:App@sha", "l", "App@sha", undefined, "oci:l:App@sha"],
    ["/srv/layout:@0", "/srv/layout", undefined, 0, "oci:/srv/layout:@0"],
    ["/srv/layout:@12", "/srv/layout", undefined, 12, "oci:/srv/layout:@12"],
    ["/srv/layout:", "/srv/layout", undefined, undefined, "oci:/srv/layout"],
  ])("parses %s", (spec, path, name, position, str) => {
    const ref = OciReference.parse(spec);
    expect(ref.path).toBe(path);
    expect(ref.name).toBe(name);
    expect(ref.position).toBe(position);
    expect(ref.toString()).toBe(str);
    expect(OciReference.parse(ref.toString().slice("oci:".length))).toEqual(ref);
    expect(ref.dockerReference()).toBeUndefined();
    expect(ref.transport.name).toBe("oci");
  });

  it.each([
    ["", /layout directory is missing/],
    [":app", /layout directory is missing/],
    ["/l:@", /not an integer/],
    ["/l:@x", /not an integer/],
    ["/l:@1.5", /not an integer/],
    ["/l:@-1", /non-negative/],
    ["/l:-app", /not a valid image name/],
    ["/l:app-", /not a valid image name/],
    ["/l:a b", /not a valid image name/],
    ["/l:a//b", /not a valid image name/],
    ["/l:a/", /not a valid image name/],
    ["/l:a---b", /not a valid image name/],
    ["/l:a..b", /not a valid image name/],
    ["/l:ünicode", /not a valid image name/],
  ])("rejects %j", (spec, message) => {
    expect(() => OciReference.parse(spec)).toThrow(message);
    expect(() => OciReference.parse(spec)).toThrow(expect.objectContaining({ code: "ERR_INVALID_REFERENCE" }));
  });

  it("validates names with containers/image's ref.name grammar", () => {
    for (const ok of ["a", "A1", "a.b", "a_b", "a-b", "a--b", "a:b", "a@b", "a+b", "a/b/c", "localhost:5000/x:latest"]) expect(isValidOciRefName(ok)).toBe(true);
    for (const bad of ["", "_a", "a_", "a__b", "a-_b", "/a", "a/", "a b", "a/./b", "a%b"]) expect(isValidOciRefName(bad)).toBe(false);
  });

  it("is registered as the oci transport", () => {
    const ref = parseImageName("oci:/srv/l:app:1");
    expect(ref).toBeInstanceOf(OciReference);
    expect(String(ref)).toBe("oci:/srv/l:app:1");
  });
});
