import { describe, expect, it } from "vitest";
import { daemonEndpoint } from "./client.js";
import { DockerDaemonReference } from "./reference.js";

const ID = `sha256:${"ab".repeat(32)}`;

describe("docker-daemon: references (containers/image's daemon_transport.go grammar)", () => {
  it.each([
    ["busybox:latest", "docker.io/library/busybox:latest"],
    ["quay.io/org/app:1.0", "quay.io/org/app:1.0"],
    ["localhost:5000/app:v2", "localhost:5000/app:v2"],
    [`busybox@${ID}`, `docker.io/library/busybox@${ID}`],
  ])("%s names %s and round-trips", (spec, normalised) => {
    const ref = DockerDaemonReference.parse(spec);
    expect(ref.dockerReference()).toBe(normalised);
    expect(ref.daemonName()).toBe(normalised);
    expect(ref.id).toBeUndefined();
    expect(String(ref)).toBe(`docker-daemon:${spec}`);
  });

  it("sha256:<64 hex> is an image ID, with no Docker reference", () => {
    const ref = DockerDaemonReference.parse(ID);
    expect(ref.id).toBe(ID);
    expect(ref.dockerReference()).toBeUndefined();
    expect(ref.daemonName()).toBe(ID);
    expect(String(ref)).toBe(`docker-daemon:${ID}`);
  });

  it.each([
    ["busybox", /neither a tag nor a digest; add one, e.g. docker-daemon:busybox:latest/],
    [`busybox:1@${ID}`, /both a tag and a digest/],
    ["sha256:abc", /repository name sha256 is reserved/],
    [`sha512:${"0".repeat(128)}`, /an image ID must be sha256/],
    ["", /invalid reference docker-daemon:/],
    ["UPPER:1", /invalid reference docker-daemon:UPPER:1/],
  ])("refuses %j", (spec, message) => {
    expect(() => DockerDaemonReference.parse(spec)).toThrow(message);
    try {
      DockerDaemonReference.parse(spec);
    } catch (err) {
      expect((err as { code?: string }).code).toBe("ERR_INVALID_REFERENCE");
    }
  });
});

describe("docker-daemon: which daemon", () => {
  it("--daemon-host wins over DOCKER_HOST, which wins over the default socket", () => {
    expect(daemonEndpoint({ dockerDaemonHost: "unix:///run/a.sock" }, { DOCKER_HOST: "unix:///run/b.sock" })).toMatchObject({ socketPath: "/run/a.sock", chosenBy: "--daemon-host", origin: "http://localhost", tls: false });
    expect(daemonEndpoint({}, { DOCKER_HOST: "unix:///run/b.sock" })).toMatchObject({ socketPath: "/run/b.sock", chosenBy: "DOCKER_HOST" });
    expect(daemonEndpoint({}, {})).toMatchObject({ host: "unix:///var/run/docker.sock", socketPath: "/var/run/docker.sock", chosenBy: "default" });
  });

  it("tcp:// means TLS from --daemon-host (skopeo) and plain HTTP from DOCKER_HOST unless DOCKER_TLS_VERIFY (docker CLI); default ports 2376/2375", () => {
    expect(daemonEndpoint({ dockerDaemonHost: "tcp://10.0.0.5" }, {})).toMatchObject({ origin: "https://10.0.0.5:2376", tls: true });
    expect(daemonEndpoint({ dockerDaemonHost: "http://10.0.0.5:2375" }, {})).toMatchObject({ origin: "http://10.0.0.5:2375", tls: false });
    expect(daemonEndpoint({}, { DOCKER_HOST: "tcp://10.0.0.5" })).toMatchObject({ origin: "http://10.0.0.5:2375", tls: false });
    expect(daemonEndpoint({}, { DOCKER_HOST: "tcp://10.0.0.5:9999", DOCKER_TLS_VERIFY: "1" })).toMatchObject({ origin: "https://10.0.0.5:9999", tls: true });
  });

  it.each(["/var/run/docker.sock", "unix://relative.sock", "npipe:////./pipe/docker_engine", "ssh://user@host", "tcp://h:1/path"])("refuses %j, saying what it takes", (host) => {
    expect(() => daemonEndpoint({ dockerDaemonHost: host }, {})).toThrow(/invalid Docker daemon host .*use unix:\/\/\/PATH, tcp:\/\/HOST:PORT or http:\/\/HOST:PORT/);
  });
});
