import { describe, expect, it } from "vitest";
import "../transports/all.js";
import { isAirlockError } from "../errors.js";
import { parseImageName } from "../transports/index.js";
import { goBase, goClean, goJoin, type SyncImage, type SyncNaming, syncDestination, syncDestinationName } from "./naming.js";
import { planSync } from "./sync.js";

const D = "sha256:0000000000000000000000000000000000000000000000000000000000001111";

describe("Go's path functions", () => {
  // Expected values are what Go's path.Base / path.Clean / path.Join return.
  it.each([
    ["", "."],
    ["/", "/"],
    ["a/b/", "b"],
    ["a//b", "b"],
    ["busybox:1.0", "busybox:1.0"],
    ["registry.example.com/ns/busybox:1.0", "busybox:1.0"],
    ["r.io/redis@sha256:abc", "redis@sha256:abc"],
    ["/busybox:1-glibc", "busybox:1-glibc"],
  ])("Base(%j) = %j", (p, want) => expect(goBase(p)).toBe(want));

  it.each([
    ["", "."],
    ["a/../b", "b"],
    ["/../a", "/a"],
    ["a//b/", "a/b"],
    ["./a", "a"],
    ["../a", "../a"],
    ["/", "/"],
  ])("Clean(%j) = %j", (p, want) => expect(goClean(p)).toBe(want));

  it.each([
    [["a", ""], "a"],
    [["", ""], ""],
    [["reg:5000/x", "/busybox:1"], "reg:5000/x/busybox:1"],
    [["a", "../b"], "b"],
    [["/media/usb/", "busybox:1.0"], "/media/usb/busybox:1.0"],
  ])("Join(%j) = %j", (parts, want) => expect(goJoin(...parts)).toBe(want));
});

const img = (source: string, suffix: string, name?: string): SyncImage => ({ source: parseImageName(source), suffix, ...(name ? { name } : {}) });
const bb = img("docker://registry.example.com/ns/busybox:1.0", "registry.example.com/ns/busybox:1.0");

describe("syncDestinationName (skopeo's algorithm, skopeo-sync(1) examples)", () => {
  const cases: [string, SyncImage, SyncNaming, string][] = [
    ["docker, base name", bb, { transport: "docker", destination: "my-registry.local.lan" }, "docker://my-registry.local.lan/busybox:1.0"],
    ["docker, --append-suffix", bb, { transport: "docker", destination: "my-registry.local.lan", appendSuffix: "-mirror" }, "docker://my-registry.local.lan/busybox:1.0-mirror"],
    ["docker, --scoped", bb, { transport: "docker", destination: "my-registry.local.lan", scoped: true }, "docker://my-registry.local.lan/registry.example.com/ns/busybox:1.0"],
    ["docker, DESTINATION with a path", bb, { transport: "docker", destination: "my-registry.local.lan/repo/" }, "docker://my-registry.local.lan/repo/busybox:1.0"],
    ["docker, a digest", img(`docker://r.io/redis@${D}`, `r.io/redis@${D}`), { transport: "docker", destination: "m.lan" }, `docker://m.lan/redis@${D}`],
    ["dir source to docker", img("dir:/src/busybox:1-glibc", "/busybox:1-glibc"), { transport: "docker", destination: "reg.lan/x" }, "docker://reg.lan/x/busybox:1-glibc"],
    ["dir dest", bb, { transport: "dir", destination: "/media/usb" }, "dir:/media/usb/busybox:1.0"],
    ["dir dest, --scoped", bb, { transport: "dir", destination: "/media/usb", scoped: true }, "dir:/media/usb/registry.example.com/ns/busybox:1.0"],
    ["oci dest", bb, { transport: "oci", destination: "/layout" }, "oci:/layout:busybox:1.0"],
    ["oci dest, --scoped, --append-suffix", bb, { transport: "oci", destination: "./layout", scoped: true, appendSuffix: "-x" }, "oci:./layout:registry.example.com/ns/busybox:1.0-x"],
    ["oci dest from a dir source, --scoped", img("dir:/src/sub/app", "/sub/app"), { transport: "oci", destination: "l", scoped: true }, "oci:l:sub/app"],
    ["per-repository name ignores --scoped", img("docker://q.io/a/b:2", "q.io/a/b:2", "tools/b:2"), { transport: "docker", destination: "m.lan", scoped: true }, "docker://m.lan/tools/b:2"],
    ["scoped registry with a port: _ in the path (skopeo fails)", img("docker://reg:5000/ns/app:1", "reg:5000/ns/app:1"), { transport: "docker", destination: "m.lan", scoped: true }, "docker://m.lan/reg_5000/ns/app:1"],
    ["a dir keeps the colon", img("docker://reg:5000/ns/app:1", "reg:5000/ns/app:1"), { transport: "dir", destination: "/d", scoped: true }, "dir:/d/reg:5000/ns/app:1"],
  ];
  it.each(cases)("%s", (_what, image, naming, want) => {
    expect(syncDestinationName(image, naming)).toBe(want);
    expect(syncDestination(image, naming).toString()).toBe(parseImageName(want).toString());
  });

  it("refuses names the destination cannot hold, naming the source", () => {
    const bad = (fn: () => unknown, code: string, re: RegExp) => {
      try {
        fn();
        expect.unreachable();
      } catch (err) {
        expect(isAirlockError(err) && err.code).toBe(code);
        expect((err as Error).message).toMatch(re);
      }
    };
    bad(() => syncDestination(bb, { transport: "docker", destination: "m.lan", appendSuffix: "!" }), "ERR_INVALID_REFERENCE", /docker:\/\/registry\.example\.com\/ns\/busybox:1\.0.*busybox:1\.0!/);
    bad(() => syncDestination(bb, { transport: "oci", destination: "/a:b" }), "ERR_INVALID_ARGUMENT", /contains a ":"/);
    bad(() => syncDestination(bb, { transport: "oci", destination: "/l", appendSuffix: "/" }), "ERR_INVALID_REFERENCE", /not a valid image name/);
  });
});

describe("planSync", () => {
  it("keeps one of the same source listed twice; refuses two sources for one destination", () => {
    const other = img("docker://quay.io/x/busybox:1.0", "quay.io/x/busybox:1.0");
    const naming: SyncNaming = { transport: "docker", destination: "m.lan" };
    const plan = planSync([bb, bb, img("docker://q.io/y:2", "q.io/y:2")], naming);
    expect(plan.map((t) => [t.index, t.destination.toString()])).toEqual([
      [0, "docker://m.lan/busybox:1.0"],
      [1, "docker://m.lan/y:2"],
    ]);
    expect(() => planSync([bb, other], naming)).toThrow(/registry\.example\.com\/ns\/busybox:1\.0 and docker:\/\/quay\.io\/x\/busybox:1\.0 would both be written to docker:\/\/m\.lan\/busybox:1\.0; .*--scoped/);
    expect(planSync([bb, other], { ...naming, scoped: true })).toHaveLength(2);
  });
});
