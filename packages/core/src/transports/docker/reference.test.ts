import { describe, expect, it } from "vitest";
import { digestOf } from "../../digest.js";
import { DockerImageReference } from "./reference.js";
import { parseDockerRepository } from "./operations.js";

const d = digestOf("x");

describe("docker:// references", () => {
  it.each([
    ["//busybox", "docker://busybox:latest", "docker.io/library/busybox:latest"],
    ["//busybox:1.36", "docker://busybox:1.36", "docker.io/library/busybox:1.36"],
    ["//docker.io/library/busybox", "docker://busybox:latest", "docker.io/library/busybox:latest"],
    ["//index.docker.io/org/app:v", "docker://org/app:v", "docker.io/org/app:v"],
    ["//quay.io/org/app", "docker://quay.io/org/app:latest", "quay.io/org/app:latest"],
    ["//localhost:5000/a/b/c:t", "docker://localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"],
    [`//127.0.0.1:5000/app@${d}`, `docker://127.0.0.1:5000/app@${d}`, `127.0.0.1:5000/app@${d}`],
  ])("%s → %s (%s), round-tripping", (spec, str, full) => {
    const r = DockerImageReference.parse(spec);
    expect(r.toString()).toBe(str);
    expect(r.dockerReference()).toBe(full);
    expect(DockerImageReference.parse(r.toString().slice("docker:".length)).toString()).toBe(str);
    expect(r.transport.name).toBe("docker");
  });

  it("names the tag or the digest it points at", () => {
    expect(DockerImageReference.parse("//a/b").tagOrDigest).toBe("latest");
    expect(DockerImageReference.parse(`//a/b@${d}`).tagOrDigest).toBe(d);
  });

  it.each([
    ["busybox", /must begin with "\/\/"/],
    ["/busybox", /must begin with "\/\/"/],
    [`//busybox:1@${d}`, /both a tag and digest/],
    ["//Busybox", /lowercase/],
    ["//", /empty/],
  ])("rejects %s", (spec, re) => {
    expect(() => DockerImageReference.parse(spec)).toThrow(re);
  });

  it("parses a repository for list-tags, without tag or digest", () => {
    expect(parseDockerRepository("docker://busybox").name).toBe("docker.io/library/busybox");
    expect(() => parseDockerRepository("docker://busybox:latest")).toThrow(/No tag or digest allowed/);
    expect(() => parseDockerRepository(`docker://busybox@${d}`)).toThrow(/No tag or digest allowed/);
    expect(() => parseDockerRepository("oci:/x")).toThrow(/does not start with docker:\/\//);
  });
});
