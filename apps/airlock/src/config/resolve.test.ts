import { AirlockError, type DockerReference, getTransport, isAirlockError, parseImageName, registerTransport, type SystemContext } from "@airlock/core";
import { describe, expect, it } from "vitest";
import { parseImagesConfig, type RegistryImageEntry } from "./images.js";
import { type ResolveFailure, resolveImages, systemContextFor } from "./resolve.js";

// The docker:// transport lives in @airlock/core; until it is registered, a stand-in that only
// parses (resolution does no I/O) lets these tests run.
if (getTransport("docker") === undefined) {
  const docker = {
    name: "docker",
    parseReference(spec: string) {
      return { transport: docker, toString: () => `docker:${spec}`, dockerReference: () => spec.slice(2), newSource: () => Promise.reject(new Error("stand-in")), newDestination: () => Promise.reject(new Error("stand-in")) };
    },
  };
  registerTransport(docker);
}

const FILE = "/srv/p/images.yaml";

/** A fake registry: tags per repository, and a record of the calls. */
function fakeRegistry(tags: Record<string, string[]>) {
  const calls: { repo: string; ctx: SystemContext }[] = [];
  return {
    calls,
    async listTags(repo: DockerReference, ctx: SystemContext): Promise<string[]> {
      calls.push({ repo: repo.name, ctx });
      const t = tags[repo.name];
      if (t === undefined) throw new AirlockError("ERR_IMAGE_NOT_FOUND", `repository ${repo.name} not found`);
      return t;
    },
  };
}

describe("resolveImages", () => {
  it("expands tags, digests and filters into concrete images, in file order", async () => {
    const config = parseImagesConfig(
      `version: 1
images:
  - name: docker.io/library/busybox
    tags: ["1.36", "1.37"]
  - name: quay.io/org/app
    tags: { include: ['^v\\d+\\.\\d+\\.\\d+$'], exclude: ['-rc'], semver: ">=1.2.0 <2", newest: 2 }
    platforms: [linux/arm64]
  - name: alpine@sha256:${"b".repeat(64)}
  - source: oci:./layout:single
    as: example/single:1.0
`,
      FILE,
    );
    const registry = fakeRegistry({ "quay.io/org/app": ["v1.0.0", "v1.2.0", "v1.3.0-rc1", "v1.3.0", "v1.4.0", "v2.0.0", "latest"] });
    const planned = await resolveImages(config, registry);
    expect(planned.map((p) => [p.bundleName, p.sourceName, p.origin])).toEqual([
      ["docker.io/library/busybox:1.36", "docker://docker.io/library/busybox:1.36", `${FILE}:3:5`],
      ["docker.io/library/busybox:1.37", "docker://docker.io/library/busybox:1.37", `${FILE}:3:5`],
      ["quay.io/org/app:v1.3.0", "docker://quay.io/org/app:v1.3.0", `${FILE}:5:5`],
      ["quay.io/org/app:v1.4.0", "docker://quay.io/org/app:v1.4.0", `${FILE}:5:5`],
      [`docker.io/library/alpine@sha256:${"b".repeat(64)}`, `docker://docker.io/library/alpine@sha256:${"b".repeat(64)}`, `${FILE}:8:5`],
      ["example/single:1.0", "oci:./layout:single", `${FILE}:9:5`],
    ]);
    expect(planned[2]?.platforms).toEqual([{ os: "linux", architecture: "arm64" }]);
    expect(planned[0]?.dockerReference?.toString()).toBe("docker.io/library/busybox:1.36");
    expect(planned[5]?.source.toString()).toBe(parseImageName("oci:/srv/p/layout:single").toString());
    expect(planned[0]?.source.transport.name).toBe("docker");
    // Only the filtered repository was listed; lists and digests need no registry call.
    expect(registry.calls.map((c) => c.repo)).toEqual(["quay.io/org/app"]);
  });

  it("lists a repository once even when several entries filter it", async () => {
    const config = parseImagesConfig(`version: 1\nimages:\n  - name: r.io/a\n    tags: { include: ['^1'] }\n  - name: r.io/a\n    tags: { include: ['^2'] }\n`, FILE);
    const registry = fakeRegistry({ "r.io/a": ["1.0", "2.0"] });
    expect((await resolveImages(config, registry)).map((p) => p.bundleName)).toEqual(["r.io/a:1.0", "r.io/a:2.0"]);
    expect(registry.calls).toHaveLength(1);
  });

  it("names images with as: (keeping the tag or digest when as: has none)", async () => {
    const config = parseImagesConfig(
      `version: 1\nimages:\n  - name: r.io/a\n    tags: ['1', '2']\n    as: team/a\n  - name: r.io/b:1\n    as: team/bee:stable\n  - name: r.io/c@sha256:${"c".repeat(64)}\n    as: team/c\n`,
      FILE,
    );
    expect((await resolveImages(config, fakeRegistry({}))).map((p) => p.bundleName)).toEqual(["team/a:1", "team/a:2", "team/bee:stable", `team/c@sha256:${"c".repeat(64)}`]);
  });

  it("maps registry settings to a SystemContext, reading credentials from the environment now", async () => {
    const config = parseImagesConfig(
      `version: 1
registries:
  registry.example.com:5000:
    tlsVerify: false
    certDir: certs/example
    credentials:
      env: { username: EXAMPLE_USER, password: EXAMPLE_PASSWORD }
  ghcr.io:
    credentials: { authFile: /etc/auth.json }
  docker.io:
    credentials: { none: true }
images:
  - name: registry.example.com:5000/team/api
    tags: { newest: 1 }
  - name: ghcr.io/a/b:1
  - name: busybox:1
  - name: quay.io/x/y:1
  - source: dir:./img
    as: img:1
`,
      FILE,
    );
    const registry = fakeRegistry({ "registry.example.com:5000/team/api": ["a", "b"] });
    const env = { EXAMPLE_USER: "robot", EXAMPLE_PASSWORD: "s3cret" };
    const planned = await resolveImages(config, { listTags: registry.listTags, env });
    const creds = { username: "robot", password: "s3cret" };
    const withoutHints = ({ docker, ...rest }: SystemContext) => (docker === undefined ? rest : { ...rest, docker: { ...docker, hints: undefined } });
    expect(planned.map((p) => withoutHints(p.systemContext))).toEqual([
      { docker: { tlsVerify: false, certDir: "/srv/p/certs/example", credentials: creds } },
      { docker: { authFile: "/etc/auth.json" } },
      { docker: { noCreds: true } },
      { docker: {} },
      {},
    ]);
    expect(planned[0]?.bundleName).toBe("registry.example.com:5000/team/api:b");
    // listTags gets the same settings as the image.
    expect(registry.calls[0]?.ctx).toBe(planned[0]?.systemContext);
    // Error messages name the settings of images.yaml, never a credential.
    const hints = planned.map((p) => p.systemContext.docker?.hints);
    expect(hints[0]).toEqual({
      credentials: `registries."registry.example.com:5000".credentials at ${FILE}:3:3 (the environment variables EXAMPLE_USER and EXAMPLE_PASSWORD)`,
      tlsVerify: `registries."registry.example.com:5000".tlsVerify: false at ${FILE}:3:3`,
      certDir: `registries."registry.example.com:5000".certDir at ${FILE}:3:3`,
    });
    expect(hints[1]?.credentials).toBe(`registries."ghcr.io".credentials at ${FILE}:8:3 (the auth file /etc/auth.json)`);
    expect(hints[2]?.credentials).toBe(`registries."docker.io".credentials at ${FILE}:10:3 (now none: true)`);
    expect(hints[3]).toEqual({
      credentials: `registries."quay.io".credentials in ${FILE} (env: {username: VAR, password: VAR} or authFile: PATH)`,
      tlsVerify: `registries."quay.io".tlsVerify: false in ${FILE}`,
      certDir: `registries."quay.io".certDir in ${FILE}`,
    });
    expect(JSON.stringify(hints)).not.toContain("s3cret");
    // One value per registry: the images of a registry share one client.
    expect(systemContextFor(config, config.images[0] as RegistryImageEntry, env).docker?.hints).toEqual(hints[0]);
  });

  it("names the variable and the image when a credential variable is not set", async () => {
    const config = parseImagesConfig(
      `version: 1\nregistries:\n  r.io:\n    credentials:\n      env: { username: R_USER, password: R_PASS }\nimages:\n  - name: r.io/a:1\n`,
      FILE,
    );
    const err = await resolveImages(config, { listTags: async () => [], env: { R_USER: "u", R_PASS: "" } }).catch((e) => e);
    expect(isAirlockError(err, "ERR_INVALID_ARGUMENT")).toBe(true);
    expect(err.message).toBe(
      `${FILE}:7:5: r.io/a needs the environment variable R_PASS (credentials of r.io, set at ${FILE}:3:3), which is not set; export it before running airlock`,
    );
  });

  it("fails clearly when a filter selects nothing, showing some of the tags", async () => {
    const config = parseImagesConfig(`version: 1\nimages:\n  - name: r.io/a\n    tags: { semver: '>=5' }\n`, FILE);
    const err = await resolveImages(config, fakeRegistry({ "r.io/a": ["1.0.0", "latest"] })).catch((e) => e);
    expect(isAirlockError(err, "ERR_IMAGE_NOT_FOUND")).toBe(true);
    expect(err.message).toMatch(/^\/srv\/p\/images\.yaml:3:5: the tag filter \{"semver":">=5"\} matched none of the 2 tags of r\.io\/a \("1\.0\.0", "latest"\)/);
  });

  it("keeps the code of a listTags failure and names the entry", async () => {
    const config = parseImagesConfig(`version: 1\nimages:\n  - name: r.io/missing\n    tags: { newest: 1 }\n`, FILE);
    const err = await resolveImages(config, fakeRegistry({})).catch((e) => e);
    expect(isAirlockError(err, "ERR_IMAGE_NOT_FOUND")).toBe(true);
    expect(err.message).toBe(`${FILE}:3:5: cannot list the tags of r.io/missing: repository r.io/missing not found`);
  });

  it("tries every entry, then throws one error listing all failures, or reports them to onError", async () => {
    const text = `version: 1\nimages:\n  - name: r.io/a\n    tags: { newest: 1 }\n  - name: r.io/ok:1\n  - name: r.io/b\n    tags: { newest: 1 }\n`;
    const config = parseImagesConfig(text, FILE);
    const err = await resolveImages(config, fakeRegistry({})).catch((e) => e);
    expect(err.message.split("\n")).toEqual([
      "2 images could not be resolved:",
      `${FILE}:3:5: cannot list the tags of r.io/a: repository r.io/a not found`,
      `${FILE}:6:5: cannot list the tags of r.io/b: repository r.io/b not found`,
    ]);
    const failures: ResolveFailure[] = [];
    const planned = await resolveImages(config, fakeRegistry({}), { onError: (f) => failures.push(f) });
    expect(planned.map((p) => p.bundleName)).toEqual(["r.io/ok:1"]);
    expect(failures.map((f) => f.entry.index)).toEqual([0, 2]);
  });

  it("merges an image two filters both select; refuses the same name with different settings", async () => {
    const registry = fakeRegistry({ "r.io/a": ["1.0.0", "1.1.0", "2.0.0"] });
    const same = parseImagesConfig(`version: 1\nimages:\n  - name: r.io/a\n    tags: { semver: '^1' }\n  - name: r.io/a\n    tags: { newest: 2 }\n`, FILE);
    expect((await resolveImages(same, registry)).map((p) => p.bundleName)).toEqual(["r.io/a:1.0.0", "r.io/a:1.1.0", "r.io/a:2.0.0"]);
    const different = parseImagesConfig(`version: 1\nimages:\n  - name: r.io/a\n    tags: { semver: '^1' }\n  - name: r.io/a\n    tags: { newest: 2 }\n    platforms: [linux/amd64]\n`, FILE);
    const err = await resolveImages(different, registry).catch((e) => e);
    expect(err.message).toBe(`${FILE}:5:5: "r.io/a:1.1.0" is also selected at ${FILE}:3:5 with a different source, platforms or keepIndex; give one of them another name with as:`);
  });

  it("refuses two images that strip-registry would give the same destination name", async () => {
    const config = parseImagesConfig(`version: 1\ndestination: { naming: strip-registry }\nimages:\n  - name: quay.io/org/app:1\n  - name: ghcr.io/org/app:1\n`, FILE);
    const err = await resolveImages(config, fakeRegistry({})).catch((e) => e);
    expect(err.message).toMatch(/"ghcr\.io\/org\/app:1" and "quay\.io\/org\/app:1" \(.*:4:5\) both become "org\/app:1" at the destination with naming: strip-registry/);
    const keep = parseImagesConfig(`version: 1\nimages:\n  - name: quay.io/org/app:1\n  - name: ghcr.io/org/app:1\n`, FILE);
    expect(await resolveImages(keep, fakeRegistry({}))).toHaveLength(2);
  });

  it("runs at most `concurrency` tag listings at once", async () => {
    const repos = Array.from({ length: 6 }, (_, i) => `r.io/repo${i}`);
    const config = parseImagesConfig(`version: 1\nimages:\n${repos.map((r) => `  - name: ${r}\n    tags: { newest: 1 }\n`).join("")}`, FILE);
    let running = 0;
    let peak = 0;
    const listTags = async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return ["1"];
    };
    expect(await resolveImages(config, { listTags }, { concurrency: 2 })).toHaveLength(6);
    expect(peak).toBe(2);
  });
});
