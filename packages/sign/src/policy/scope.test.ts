import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parsePolicy } from "./config.js";
import { signedIdentityMatches } from "./identity.js";
import { dockerPolicyIdentity, dockerPolicyNamespaces, pathPolicyNamespaces, requirementsFor, resolvePolicyPath } from "./scope.js";

describe("policy scopes", () => {
  it("name a docker image by its normalised reference with a tag or digest", () => {
    expect(dockerPolicyIdentity("busybox")).toBe("docker.io/library/busybox:latest");
    expect(dockerPolicyIdentity("quay.io/a/b@sha256:" + "0".repeat(64))).toBe(`quay.io/a/b@sha256:${"0".repeat(64)}`);
    expect(() => dockerPolicyIdentity(`a:1@sha256:${"0".repeat(64)}`)).toThrow(/both a tag and a digest/);
  });

  it("list docker namespaces from the repository to wildcard domains, without the port", () => {
    expect(dockerPolicyNamespaces("registry.example.com:5000/ns/sub/app:1")).toEqual([
      "registry.example.com:5000/ns/sub/app",
      "registry.example.com:5000/ns/sub",
      "registry.example.com:5000/ns",
      "registry.example.com:5000",
      "*.example.com",
      "*.com",
    ]);
    expect(dockerPolicyNamespaces("busybox")).toEqual(["docker.io/library/busybox", "docker.io/library", "docker.io", "*.io"]);
    expect(dockerPolicyNamespaces("localhost:5000/app")).toEqual(["localhost:5000/app", "localhost:5000"]);
  });

  it("list path namespaces up to, not including, /", () => {
    expect(pathPolicyNamespaces("/srv/images/app")).toEqual(["/srv/images", "/srv"]);
    expect(pathPolicyNamespaces("/app")).toEqual([]);
  });

  it("select the most specific scope, then the transport's \"\", then default", () => {
    const r = (type: string) => [{ type }];
    const policy = parsePolicy(
      JSON.stringify({
        default: r("reject"),
        transports: {
          docker: {
            "": r("insecureAcceptAnything"),
            "registry.example.com/ns/app:1": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/tag" }],
            "registry.example.com/ns/app": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/repo" }],
            "registry.example.com/ns": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/ns" }],
            "registry.example.com": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/host" }],
            "*.example.com": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/wild" }],
          },
          dir: { "/srv/images": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/dir" }] },
        },
      }),
    );
    const pick = (transport: string, identity: string) => {
      const { scope, requirements } = requirementsFor(policy, transport, identity);
      const req = requirements[0] as { type: string; keyPath?: string };
      return `${scope} ${req.keyPath ?? req.type}`;
    };
    expect(pick("docker", "registry.example.com/ns/app:1")).toBe('transports.docker["registry.example.com/ns/app:1"] /tag');
    expect(pick("docker", "registry.example.com/ns/app:2")).toBe('transports.docker["registry.example.com/ns/app"] /repo');
    expect(pick("docker", "registry.example.com/ns/other:1")).toBe('transports.docker["registry.example.com/ns"] /ns');
    expect(pick("docker", "registry.example.com/x:1")).toBe('transports.docker["registry.example.com"] /host');
    expect(pick("docker", "mirror.example.com/x:1")).toBe('transports.docker["*.example.com"] /wild');
    expect(pick("docker", "registry.example.com:5000/x:1")).toBe('transports.docker["*.example.com"] /wild');
    expect(pick("docker", "docker.io/library/busybox:latest")).toBe('transports.docker[""] insecureAcceptAnything');
    expect(pick("dir", "/srv/images/app")).toBe('transports.dir["/srv/images"] /dir');
    expect(pick("dir", "/srv/imagesX")).toBe("default reject");
    expect(pick("oci", "/srv/images/app")).toBe("default reject");
  });

  it("resolve paths to absolute, symlink-free form, also for paths that do not exist yet", async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), "airlock-scope-")));
    try {
      mkdirSync(join(dir, "real"));
      symlinkSync(join(dir, "real"), join(dir, "link"));
      expect(await resolvePolicyPath(join(dir, "link"))).toBe(join(dir, "real"));
      expect(await resolvePolicyPath(join(dir, "link", "new", "image"))).toBe(join(dir, "real", "new", "image"));
      const rel = await resolvePolicyPath("relative-name");
      expect(rel.startsWith("/")).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("signedIdentity", () => {
  const D = `@sha256:${"1".repeat(64)}`;
  const D2 = `@sha256:${"2".repeat(64)}`;
  it.each([
    // [rule, image, signature, accepted]
    ["matchExact", "example.com/a:1", "example.com/a:1", true],
    ["matchExact", "example.com/a:1", "example.com/a:2", false],
    ["matchExact", "example.com/a" + D, "example.com/a" + D, true],
    ["matchExact", "example.com/a", "example.com/a", false],
    ["matchExact", "busybox:latest", "docker.io/library/busybox:latest", true],
    ["matchRepoDigestOrExact", "example.com/a:1", "example.com/a:1", true],
    ["matchRepoDigestOrExact", "example.com/a:1", "example.com/a:2", false],
    ["matchRepoDigestOrExact", "example.com/a" + D, "example.com/a:anything", true],
    ["matchRepoDigestOrExact", "example.com/a" + D, "example.com/a" + D2, true],
    ["matchRepoDigestOrExact", "example.com/a" + D, "example.com/b:1", false],
    ["matchRepoDigestOrExact", "example.com/a" + D, "example.com/a", false],
    ["matchRepository", "example.com/a:1", "example.com/a:2", true],
    ["matchRepository", "example.com/a:1", "example.com/a", true],
    ["matchRepository", "example.com/a:1", "example.com/b:1", false],
    ["matchRepository", "example.com/a:1", "not a reference", false],
  ] as const)("%s: image %s, signature %s → %s", (type, image, signature, accepted) => {
    expect(signedIdentityMatches({ type }, image, signature)).toBe(accepted);
  });

  it("exactReference and exactRepository ignore the image and need no image reference", () => {
    const exact = { type: "exactReference", dockerReference: "example.com/a:1" } as const;
    expect(signedIdentityMatches(exact, undefined, "example.com/a:1")).toBe(true);
    expect(signedIdentityMatches(exact, "other.com/b:2", "example.com/a:2")).toBe(false);
    const repo = { type: "exactRepository", dockerRepository: "example.com/a" } as const;
    expect(signedIdentityMatches(repo, undefined, "example.com/a:7")).toBe(true);
    expect(signedIdentityMatches(repo, undefined, "example.com/b:7")).toBe(false);
    expect(signedIdentityMatches({ type: "matchRepository" }, undefined, "example.com/a:7")).toBe(false);
  });

  it("remapIdentity rewrites the image's prefix, then matches like matchRepoDigestOrExact", () => {
    const remap = { type: "remapIdentity", prefix: "mirror.local/upstream", signedPrefix: "registry.example.com/team" } as const;
    expect(signedIdentityMatches(remap, "mirror.local/upstream/app:1", "registry.example.com/team/app:1")).toBe(true);
    expect(signedIdentityMatches(remap, "mirror.local/upstream/app:1", "registry.example.com/team/app:2")).toBe(false);
    expect(signedIdentityMatches(remap, "mirror.local/upstream/app" + D, "registry.example.com/team/app:9")).toBe(true);
    // "upstream2" is not under the prefix "upstream": no rewrite, so the mirror name must match itself.
    expect(signedIdentityMatches(remap, "mirror.local/upstream2/app:1", "registry.example.com/team2/app:1")).toBe(false);
    expect(signedIdentityMatches(remap, "mirror.local/upstream2/app:1", "mirror.local/upstream2/app:1")).toBe(true);
    const toHub = { type: "remapIdentity", prefix: "mirror.local", signedPrefix: "docker.io" } as const;
    // "docker.io/busybox:1" is not canonical (library/ is missing): containers/image's ParseNamed refuses it.
    expect(signedIdentityMatches(toHub, "mirror.local/busybox:1", "docker.io/library/busybox:1")).toBe(false);
    expect(signedIdentityMatches(toHub, "mirror.local/library/busybox:1", "docker.io/library/busybox:1")).toBe(true);
  });
});
