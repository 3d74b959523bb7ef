import { isAirlockError } from "@airlock/core";
import { describe, expect, it } from "vitest";
import type { NamingMode } from "./naming.js";
import { destinationName, splitBundleName } from "./naming.js";

const D = `sha256:${"d".repeat(64)}`;

describe("destinationName", () => {
  const cases: [string, NamingMode, string, string][] = [
    ["docker.io/library/busybox:1.36", "keep-path", "registry.local:5000/mirror", "registry.local:5000/mirror/docker.io/library/busybox:1.36"],
    ["docker.io/library/busybox:1.36", "strip-registry", "registry.local:5000/mirror", "registry.local:5000/mirror/library/busybox:1.36"],
    ["docker.io/library/busybox:1.36", "keep-path", "registry.local:5000", "registry.local:5000/docker.io/library/busybox:1.36"],
    ["docker.io/library/busybox:1.36", "strip-registry", "registry.local:5000/", "registry.local:5000/library/busybox:1.36"],
    ["localhost:5000/team/app:v1", "strip-registry", "offline.example/m", "offline.example/m/team/app:v1"],
    ["localhost:5000/team/app:v1", "keep-path", "localhost:6000", "localhost:6000/localhost_5000/team/app:v1"],
    ["registry.example.com:5000/team/api:2", "keep-path", "r.local/m", "r.local/m/registry.example.com_5000/team/api:2"],
    [`quay.io/org/app@${D}`, "strip-registry", "r.local/p/q", `r.local/p/q/org/app@${D}`],
    ["example/single:1.0", "keep-path", "r.local/mirror", "r.local/mirror/example/single:1.0"],
    ["example/single:1.0", "strip-registry", "r.local/mirror", "r.local/mirror/example/single:1.0"],
    ["single:1.0", "strip-registry", "[::1]:5000", "[::1]:5000/single:1.0"],
  ];
  it.each(cases)("%s (%s) under %s", (bundle, naming, target, want) => {
    expect(destinationName(bundle, naming, target).toString()).toBe(want);
  });

  it("refuses a target that does not start with a registry host", () => {
    for (const target of ["mirror", "", "mirror/sub", "http://r.local"]) {
      let err: unknown;
      try {
        destinationName("a:1", "keep-path", target);
      } catch (e) {
        err = e;
      }
      expect(isAirlockError(err, "ERR_INVALID_ARGUMENT"), target).toBe(true);
    }
  });

  it("refuses a host that cannot be a path component (IPv6) with a message naming both", () => {
    expect(() => destinationName("[::1]:5000/app:1", "keep-path", "r.local")).toThrow(/cannot name "\[::1\]:5000\/app:1" under "r.local" \(keep-path\)/);
    expect(destinationName("[::1]:5000/app:1", "strip-registry", "r.local").toString()).toBe("r.local/app:1");
  });

  it("refuses a result longer than a reference may be", () => {
    expect(() => destinationName(`docker.io/${"a".repeat(240)}:1`, "keep-path", "r.local/mirror")).toThrow(/has 265 characters; at most 255 are allowed/);
  });
});

describe("splitBundleName", () => {
  it.each([
    ["docker.io/library/busybox:1", "docker.io", "library/busybox:1"],
    ["localhost/app:1", "localhost", "app:1"],
    ["r.io:5000/app:1", "r.io:5000", "app:1"],
    ["team/app:1", undefined, "team/app:1"],
    ["app:1", undefined, "app:1"],
    [`app@${D}`, undefined, `app@${D}`],
  ])("%s", (name, registry, rest) => {
    expect(splitBundleName(name)).toEqual({ registry, rest });
  });
});
