/**
 * Table tests for Docker reference parsing and normalisation. Most cases are ported from
 * distribution/reference's reference_test.go and normalize_test.go (TestReferenceParse,
 * TestValidateReferenceName, TestValidateRemoteName, TestParseRepositoryInfo,
 * TestParseReferenceWithTagAndDigest, TestParseAnyReference, TestNormalizedSplitHostname), adapted
 * where airlock's parser always normalises (as ParseNormalizedNamed does), and where skopeo's
 * vendored copy (containers/image docker/reference) differs from upstream. The divergent cases
 * (Docker/docker, dock..er/docker, foo_bar.com/x, the 255-character boundary with and without
 * docker.io/) were checked against skopeo 1.9.3: it rejects the same ones, except foo_bar.com/x,
 * which it accepts with an empty registry host and then fails to connect to.
 */
import { describe, expect, it } from "vitest";
import type { Digest } from "../digest.js";
import { AirlockError } from "../errors.js";
import { DockerReference, isLoopbackHost, isValidDomain, isValidTag } from "./docker.js";

const F64 = "f".repeat(64);
const SHA_F = `sha256:${F64}` as Digest;
const SHA_BUSYBOX = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa" as Digest;
const SHA_REDIS = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c" as Digest;
const SHA512_F = `sha512:${"f".repeat(128)}` as Digest;
const HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

interface Accept {
  input: string;
  /** The normalised string, `domain/path[:tag][@digest]`. */
  full: string;
  domain: string;
  path: string;
  tag?: string;
  digest?: string;
  /** The familiar string; defaults to `full` (non-Docker-Hub references). */
  familiar?: string;
}

const accept: Accept[] = [
  // TestValidateReferenceName (valid), TestParseRepositoryInfo, TestNormalizedSplitHostname
  { input: "docker/docker", full: "docker.io/docker/docker", domain: "docker.io", path: "docker/docker", familiar: "docker/docker" },
  { input: "library/debian", full: "docker.io/library/debian", domain: "docker.io", path: "library/debian", familiar: "debian" },
  { input: "debian", full: "docker.io/library/debian", domain: "docker.io", path: "library/debian", familiar: "debian" },
  { input: "docker.io/docker/docker", full: "docker.io/docker/docker", domain: "docker.io", path: "docker/docker", familiar: "docker/docker" },
  { input: "docker.io/library/debian", full: "docker.io/library/debian", domain: "docker.io", path: "library/debian", familiar: "debian" },
  { input: "docker.io/debian", full: "docker.io/library/debian", domain: "docker.io", path: "library/debian", familiar: "debian" },
  { input: "index.docker.io/docker/docker", full: "docker.io/docker/docker", domain: "docker.io", path: "docker/docker", familiar: "docker/docker" },
  { input: "index.docker.io/library/debian", full: "docker.io/library/debian", domain: "docker.io", path: "library/debian", familiar: "debian" },
  { input: "index.docker.io/debian", full: "docker.io/library/debian", domain: "docker.io", path: "library/debian", familiar: "debian" },
  { input: "127.0.0.1:5000/docker/docker", full: "127.0.0.1:5000/docker/docker", domain: "127.0.0.1:5000", path: "docker/docker" },
  { input: "127.0.0.1:5000/library/debian", full: "127.0.0.1:5000/library/debian", domain: "127.0.0.1:5000", path: "library/debian" },
  { input: "127.0.0.1:5000/debian", full: "127.0.0.1:5000/debian", domain: "127.0.0.1:5000", path: "debian" },
  { input: "192.168.0.1", full: "docker.io/library/192.168.0.1", domain: "docker.io", path: "library/192.168.0.1", familiar: "192.168.0.1" },
  { input: "192.168.0.1:80", full: "docker.io/library/192.168.0.1:80", domain: "docker.io", path: "library/192.168.0.1", tag: "80", familiar: "192.168.0.1:80" },
  { input: "192.168.0.1:8/debian", full: "192.168.0.1:8/debian", domain: "192.168.0.1:8", path: "debian" },
  { input: "192.168.0.2:25000/debian", full: "192.168.0.2:25000/debian", domain: "192.168.0.2:25000", path: "debian" },
  {
    input: "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    full: "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    domain: "docker.io",
    path: "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    familiar: "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
  },
  { input: "[fc00::1]:5000/docker", full: "[fc00::1]:5000/docker", domain: "[fc00::1]:5000", path: "docker" },
  { input: "[fc00::1]:5000/docker/docker", full: "[fc00::1]:5000/docker/docker", domain: "[fc00::1]:5000", path: "docker/docker" },
  { input: "[fc00:1:2:3:4:5:6:7]:5000/library/debian", full: "[fc00:1:2:3:4:5:6:7]:5000/library/debian", domain: "[fc00:1:2:3:4:5:6:7]:5000", path: "library/debian" },
  // A 64-hex name is fine once a domain removes the ambiguity with an image ID.
  { input: `docker.io/${HEX64}`, full: `docker.io/library/${HEX64}`, domain: "docker.io", path: `library/${HEX64}`, familiar: HEX64 },

  // TestValidateRemoteName (valid)
  { input: "docker-rules/docker", full: "docker.io/docker-rules/docker", domain: "docker.io", path: "docker-rules/docker", familiar: "docker-rules/docker" },
  { input: "docker---rules/docker", full: "docker.io/docker---rules/docker", domain: "docker.io", path: "docker---rules/docker", familiar: "docker---rules/docker" },
  { input: "d/docker", full: "docker.io/d/docker", domain: "docker.io", path: "d/docker", familiar: "d/docker" },
  { input: "jess/t", full: "docker.io/jess/t", domain: "docker.io", path: "jess/t", familiar: "jess/t" },
  { input: "dock__er/docker", full: "docker.io/dock__er/docker", domain: "docker.io", path: "dock__er/docker", familiar: "dock__er/docker" },

  // TestParseRepositoryInfo
  { input: "index.docker.io/fooo/bar", full: "docker.io/fooo/bar", domain: "docker.io", path: "fooo/bar", familiar: "fooo/bar" },
  { input: "other/library", full: "docker.io/other/library", domain: "docker.io", path: "other/library", familiar: "other/library" },
  { input: "127.0.0.1:8000/private/moonbase", full: "127.0.0.1:8000/private/moonbase", domain: "127.0.0.1:8000", path: "private/moonbase" },
  { input: "example.com/privatebase", full: "example.com/privatebase", domain: "example.com", path: "privatebase" },
  { input: "example.com:8000/private/moonbase", full: "example.com:8000/private/moonbase", domain: "example.com:8000", path: "private/moonbase" },
  { input: "index.docker.io/library/ubuntu-12.04-base", full: "docker.io/library/ubuntu-12.04-base", domain: "docker.io", path: "library/ubuntu-12.04-base", familiar: "ubuntu-12.04-base" },
  { input: "library/foo/bar", full: "docker.io/library/foo/bar", domain: "docker.io", path: "library/foo/bar", familiar: "library/foo/bar" },
  { input: "store/foo/bar", full: "docker.io/store/foo/bar", domain: "docker.io", path: "store/foo/bar", familiar: "store/foo/bar" },

  // TestParseReferenceWithTagAndDigest: both kept
  {
    input: `busybox:latest@${SHA_BUSYBOX}`,
    full: `docker.io/library/busybox:latest@${SHA_BUSYBOX}`,
    domain: "docker.io",
    path: "library/busybox",
    tag: "latest",
    digest: SHA_BUSYBOX,
    familiar: `busybox:latest@${SHA_BUSYBOX}`,
  },

  // TestParseAnyReference (the name forms)
  { input: "redis:latest", full: "docker.io/library/redis:latest", domain: "docker.io", path: "library/redis", tag: "latest", familiar: "redis:latest" },
  { input: `redis@${SHA_REDIS}`, full: `docker.io/library/redis@${SHA_REDIS}`, domain: "docker.io", path: "library/redis", digest: SHA_REDIS, familiar: `redis@${SHA_REDIS}` },
  { input: `dmcgowan/myapp@${SHA_REDIS}`, full: `docker.io/dmcgowan/myapp@${SHA_REDIS}`, domain: "docker.io", path: "dmcgowan/myapp", digest: SHA_REDIS, familiar: `dmcgowan/myapp@${SHA_REDIS}` },
  { input: "docker.io/mcgowan/myapp:latest", full: "docker.io/mcgowan/myapp:latest", domain: "docker.io", path: "mcgowan/myapp", tag: "latest", familiar: "mcgowan/myapp:latest" },
  { input: HEX64.slice(0, 63), full: `docker.io/library/${HEX64.slice(0, 63)}`, domain: "docker.io", path: `library/${HEX64.slice(0, 63)}`, familiar: HEX64.slice(0, 63) },
  { input: "dbcc1", full: "docker.io/library/dbcc1", domain: "docker.io", path: "library/dbcc1", familiar: "dbcc1" },

  // TestNormalizedSplitHostname
  { input: "test.com/foo", full: "test.com/foo", domain: "test.com", path: "foo" },
  { input: "test_com/foo", full: "docker.io/test_com/foo", domain: "docker.io", path: "test_com/foo", familiar: "test_com/foo" },
  { input: "test.com:8080/foo", full: "test.com:8080/foo", domain: "test.com:8080", path: "foo" },
  { input: "test-com:8080/foo", full: "test-com:8080/foo", domain: "test-com:8080", path: "foo" },
  { input: "xn--n3h.com:18080/foo", full: "xn--n3h.com:18080/foo", domain: "xn--n3h.com:18080", path: "foo" },
  { input: "docker.io/library/foo/bar", full: "docker.io/library/foo/bar", domain: "docker.io", path: "library/foo/bar", familiar: "library/foo/bar" },

  // TestReferenceParse (normalised)
  { input: "test_com", full: "docker.io/library/test_com", domain: "docker.io", path: "library/test_com", familiar: "test_com" },
  { input: "test.com:tag", full: "docker.io/library/test.com:tag", domain: "docker.io", path: "library/test.com", tag: "tag", familiar: "test.com:tag" },
  { input: "test.com:5000", full: "docker.io/library/test.com:5000", domain: "docker.io", path: "library/test.com", tag: "5000", familiar: "test.com:5000" },
  { input: "test.com/repo:tag", full: "test.com/repo:tag", domain: "test.com", path: "repo", tag: "tag" },
  { input: "test:5000/repo", full: "test:5000/repo", domain: "test:5000", path: "repo" },
  { input: "test:5000/repo:tag", full: "test:5000/repo:tag", domain: "test:5000", path: "repo", tag: "tag" },
  { input: `test:5000/repo@${SHA_F}`, full: `test:5000/repo@${SHA_F}`, domain: "test:5000", path: "repo", digest: SHA_F },
  { input: `test:5000/repo:tag@${SHA_F}`, full: `test:5000/repo:tag@${SHA_F}`, domain: "test:5000", path: "repo", tag: "tag", digest: SHA_F },
  { input: "lowercase:Uppercase", full: "docker.io/library/lowercase:Uppercase", domain: "docker.io", path: "library/lowercase", tag: "Uppercase", familiar: "lowercase:Uppercase" },
  { input: "sub-dom1.foo.com/bar/baz/quux", full: "sub-dom1.foo.com/bar/baz/quux", domain: "sub-dom1.foo.com", path: "bar/baz/quux" },
  { input: "sub-dom1.foo.com/bar/baz/quux:some-long-tag", full: "sub-dom1.foo.com/bar/baz/quux:some-long-tag", domain: "sub-dom1.foo.com", path: "bar/baz/quux", tag: "some-long-tag" },
  { input: "b.gcr.io/test.example.com/my-app:test.example.com", full: "b.gcr.io/test.example.com/my-app:test.example.com", domain: "b.gcr.io", path: "test.example.com/my-app", tag: "test.example.com" },
  { input: "xn--n3h.com/myimage:xn--n3h.com", full: "xn--n3h.com/myimage:xn--n3h.com", domain: "xn--n3h.com", path: "myimage", tag: "xn--n3h.com" },
  {
    input: `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512_F}`,
    full: `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512_F}`,
    domain: "xn--7o8h.com",
    path: "myimage",
    tag: "xn--7o8h.com",
    digest: SHA512_F,
  },
  { input: "foo_bar.com:8080", full: "docker.io/library/foo_bar.com:8080", domain: "docker.io", path: "library/foo_bar.com", tag: "8080", familiar: "foo_bar.com:8080" },
  { input: "foo/foo_bar.com:8080", full: "docker.io/foo/foo_bar.com:8080", domain: "docker.io", path: "foo/foo_bar.com", tag: "8080", familiar: "foo/foo_bar.com:8080" },
  { input: "192.168.1.1:tag", full: "docker.io/library/192.168.1.1:tag", domain: "docker.io", path: "library/192.168.1.1", tag: "tag", familiar: "192.168.1.1:tag" },
  { input: "192.168.1.1/repo", full: "192.168.1.1/repo", domain: "192.168.1.1", path: "repo" },
  { input: "192.168.1.1:5000/repo:5050", full: "192.168.1.1:5000/repo:5050", domain: "192.168.1.1:5000", path: "repo", tag: "5050" },
  { input: "[2001:db8::1]/repo", full: "[2001:db8::1]/repo", domain: "[2001:db8::1]", path: "repo" },
  { input: "[2001:db8:1:2:3:4:5:6]/repo:tag", full: "[2001:db8:1:2:3:4:5:6]/repo:tag", domain: "[2001:db8:1:2:3:4:5:6]", path: "repo", tag: "tag" },
  { input: "[2001:db8::1]:5000/repo", full: "[2001:db8::1]:5000/repo", domain: "[2001:db8::1]:5000", path: "repo" },
  { input: `[2001:db8::1]:5000/repo:tag@${SHA_F}`, full: `[2001:db8::1]:5000/repo:tag@${SHA_F}`, domain: "[2001:db8::1]:5000", path: "repo", tag: "tag", digest: SHA_F },
  { input: "[2001:db8::]:5000/repo", full: "[2001:db8::]:5000/repo", domain: "[2001:db8::]:5000", path: "repo" },
  { input: "[::1]:5000/repo", full: "[::1]:5000/repo", domain: "[::1]:5000", path: "repo" },

  // localhost, skopeo §2.1 and airlock's own cases
  { input: "localhost/foo", full: "localhost/foo", domain: "localhost", path: "foo" },
  { input: "localhost:5000/org/app:1.0", full: "localhost:5000/org/app:1.0", domain: "localhost:5000", path: "org/app", tag: "1.0" },
  { input: "localhost", full: "docker.io/library/localhost", domain: "docker.io", path: "library/localhost", familiar: "localhost" },
  { input: "localhost:5000", full: "docker.io/library/localhost:5000", domain: "docker.io", path: "library/localhost", tag: "5000", familiar: "localhost:5000" },
  { input: "quay.io/x/y:1", full: "quay.io/x/y:1", domain: "quay.io", path: "x/y", tag: "1" },
  { input: "quay.io/app", full: "quay.io/app", domain: "quay.io", path: "app" },
  { input: "registry-1.docker.io/library/busybox", full: "registry-1.docker.io/library/busybox", domain: "registry-1.docker.io", path: "library/busybox" },
  { input: "Registry.Example.com/app", full: "Registry.Example.com/app", domain: "Registry.Example.com", path: "app" },
  { input: "ghcr.io/a/b/c/d/e:v1.2.3-rc.1_x", full: "ghcr.io/a/b/c/d/e:v1.2.3-rc.1_x", domain: "ghcr.io", path: "a/b/c/d/e", tag: "v1.2.3-rc.1_x" },
  { input: "busybox:_", full: "docker.io/library/busybox:_", domain: "docker.io", path: "library/busybox", tag: "_", familiar: "busybox:_" },
  { input: `busybox:${"t".repeat(128)}`, full: `docker.io/library/busybox:${"t".repeat(128)}`, domain: "docker.io", path: "library/busybox", tag: "t".repeat(128), familiar: `busybox:${"t".repeat(128)}` },
  { input: "a--b/c", full: "docker.io/a--b/c", domain: "docker.io", path: "a--b/c", familiar: "a--b/c" },
  // The 255-character limit counts the whole normalised name: "a.b/" + 251 = 255.
  { input: `a.b/${"x".repeat(251)}`, full: `a.b/${"x".repeat(251)}`, domain: "a.b", path: "x".repeat(251) },
];

interface Reject {
  input: string;
  /** What the message must say, besides naming the input. */
  message: RegExp;
}

const LOWERCASE = /must be lowercase/;
const PATH = /repository path .* expected lowercase components/;
const HOST = /is not a valid host; expected a host name/;
const DIGEST = /digest .* is invalid/;
const TAG = /tag .* is invalid; expected/;
const HOST_ONLY = /a registry host alone is not an image reference; expected HOST\/PATH/;

const reject: Reject[] = [
  // TestValidateReferenceName (invalid)
  { input: "https://github.com/docker/docker", message: HOST },
  { input: "docker/Docker", message: LOWERCASE },
  { input: "-docker", message: PATH },
  { input: "-docker/docker", message: PATH },
  { input: "-docker.io/docker/docker", message: HOST },
  { input: "docker///docker", message: /empty component/ },
  { input: "docker.io/docker/Docker", message: LOWERCASE },
  { input: "docker.io/docker///docker", message: /empty component/ },
  { input: "[fc00::1]", message: HOST_ONLY },
  { input: "[fc00::1]:5000", message: HOST_ONLY },
  { input: "fc00::1:5000/debian", message: HOST },
  { input: "[fe80::1%eth0]:5000/debian", message: HOST },
  { input: "[2001:db8:3:4::192.0.2.33]:5000/debian", message: HOST },
  { input: HEX64, message: /cannot specify 64-byte hexadecimal strings/ },
  // Upstream's newer normalize.go takes an uppercase first component for a domain; skopeo's
  // containers/image does not, and neither does airlock.
  { input: "Docker/docker", message: LOWERCASE },
  { input: "DOCKER/docker", message: LOWERCASE },
  { input: "Uppercase/lowercase:tag", message: LOWERCASE },

  // TestValidateRemoteName (invalid)
  { input: "docker-/docker", message: PATH },
  { input: "-docker-/docker", message: PATH },
  { input: "____/____", message: PATH },
  { input: "_docker/_docker", message: PATH },
  // A first component with a "." is read as a registry host, so these fail as hosts; the same
  // components later in the path fail as path components.
  { input: "dock..er/docker", message: HOST },
  { input: "dock_.er/docker", message: HOST },
  { input: "dock-.er/docker", message: HOST },
  { input: "docker/dock..er", message: PATH },
  { input: "docker/dock_.er", message: PATH },
  { input: "docker/dock-.er", message: PATH },
  { input: "docker/", message: /empty component/ },
  { input: `${"this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_".repeat(4)}x/docker`, message: /at most 255 are allowed/ },

  // TestReferenceParse (invalid)
  { input: "", message: /the reference is empty; expected NAME/ },
  { input: ":justtag", message: /repository name is empty/ },
  { input: `@${SHA_F}`, message: /repository name is empty/ },
  { input: `repo@sha256:${"f".repeat(34)}`, message: /expected 64 lowercase hex digits/ },
  { input: `validname@invaliddigest:${F64}`, message: /unsupported digest algorithm/ },
  { input: "Uppercase:tag", message: LOWERCASE },
  { input: "test:5000/Uppercase/lowercase:tag", message: LOWERCASE },
  { input: `${"a/".repeat(128)}a:tag`, message: /at most 255 are allowed/ },
  { input: "aa/asdf$$^/aa", message: PATH },
  { input: "[2001:db8::1]", message: HOST_ONLY },
  { input: "[2001:db8::1]:5000", message: HOST_ONLY },
  { input: "[2001:db8::1]:tag", message: HOST_ONLY },
  { input: "[fe80::1%eth0]:5000/repo", message: HOST },
  { input: "[fe80::1%@invalidzone]:5000/repo", message: HOST },

  // Tags, digests, domains, lengths
  { input: "busybox:", message: TAG },
  { input: "busybox:-x", message: TAG },
  { input: "busybox:.x", message: TAG },
  { input: "busybox:a+b", message: TAG },
  { input: "busybox:a:b", message: TAG },
  { input: `busybox:${"t".repeat(129)}`, message: /has 129 characters; at most 128 are allowed/ },
  { input: "busybox@", message: DIGEST },
  { input: `busybox@sha256:${F64.toUpperCase()}`, message: /lowercase hex/ },
  { input: `busybox@md5:${"f".repeat(32)}`, message: /unsupported digest algorithm/ },
  { input: `busybox@${SHA_F}@${SHA_F}`, message: DIGEST },
  { input: "foo_bar.com/x", message: HOST },
  { input: "-bad.com/x", message: HOST },
  { input: "bad-.com/x", message: HOST },
  { input: "host:port/x", message: HOST },
  { input: "localhost:/x", message: HOST },
  { input: "/busybox", message: /empty component/ },
  { input: " busybox", message: PATH },
  { input: "busybox ", message: PATH },
  { input: "docker://busybox", message: HOST },
  { input: `a.b/${"x".repeat(252)}`, message: /has 256 characters; at most 255 are allowed/ },
  // docker.io/ counts: 127 "a/" + "a" is 255 characters of path, 265 normalised.
  { input: `${"a/".repeat(127)}a:tag-puts-this-over-max`, message: /has 265 characters; at most 255 are allowed/ },
];

function expectRejected(input: string, message: RegExp): AirlockError {
  let caught: unknown;
  try {
    DockerReference.parse(input);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${JSON.stringify(input)} to be rejected`).toBeInstanceOf(AirlockError);
  const err = caught as AirlockError;
  expect(err.code).toBe("ERR_INVALID_REFERENCE");
  // Inputs longer than any valid reference (520 characters) are shown cut short.
  const shown = input.length > 520 ? `${input.slice(0, 256)}…` : input;
  expect(err.message).toContain(`invalid image reference ${JSON.stringify(shown)}`);
  expect(err.message.length).toBeLessThan(1200);
  expect(err.message).toMatch(message);
  return err;
}

describe("DockerReference.parse accepts and normalises", () => {
  it("has a table of at least 60 cases in all", () => {
    expect(accept.length + reject.length).toBeGreaterThanOrEqual(60);
  });

  it.each(accept)("$input", (c) => {
    const ref = DockerReference.parse(c.input);
    expect(ref.domain).toBe(c.domain);
    expect(ref.path).toBe(c.path);
    expect(ref.tag).toBe(c.tag);
    expect(ref.digest).toBe(c.digest);
    expect(ref.name).toBe(`${c.domain}/${c.path}`);
    expect(ref.toString()).toBe(c.full);
    expect(String(ref)).toBe(c.full);
    expect(ref.familiarString()).toBe(c.familiar ?? c.full);
    // Both the normalised and the familiar string parse back to the same reference.
    expect(DockerReference.parse(ref.toString())).toEqual(ref);
    // (Except that the familiar form of docker.io/library/<64 hex> is a bare image-ID-like string, as in Docker.)
    if (!/^[a-f0-9]{64}$/.test(ref.familiarString())) expect(DockerReference.parse(ref.familiarString())).toEqual(ref);
  });
});

describe("DockerReference.parse rejects with a message that names the input", () => {
  it.each(reject)("$input", (c) => {
    expectRejected(c.input, c.message);
  });

  it("suggests the lowercase name, as typed (without the added library/)", () => {
    const err = expectRejected("docker.io/BusyBox:1", LOWERCASE);
    expect(err.message).toContain(`repository name "BusyBox" must be lowercase (use "busybox")`);
  });

  it("says what an identifier-looking name is and how to use a digest instead", () => {
    const err = expectRejected(HEX64, /cannot specify 64-byte hexadecimal strings/);
    expect(err.message).toContain(`invalid repository name (${HEX64})`);
    expect(err.message).toContain("NAME@sha256:");
  });

  it("keeps the digest error as the cause", () => {
    const err = expectRejected(`busybox@sha256:abc`, DIGEST);
    expect(err.cause).toBeInstanceOf(AirlockError);
    expect((err.cause as AirlockError).code).toBe("ERR_INVALID_DIGEST");
  });

  it("rejects long adversarial inputs quickly (no catastrophic backtracking)", () => {
    expectRejected(`${"a-".repeat(50_000)}!`, /at most 255 are allowed/);
    expectRejected(`x.io/${"a-".repeat(100)}!`, PATH);
    expectRejected(`${"a".repeat(100)}-${"a".repeat(100)}-.com/x`, HOST);
  });
});

describe("DockerReference methods", () => {
  const plain = DockerReference.parse("busybox");
  const tagged = DockerReference.parse("quay.io/org/app:1.0");
  const digested = DockerReference.parse(`org/app@${SHA_F}`);
  const both = DockerReference.parse(`localhost:5000/app:v1@${SHA_F}`);

  it("withTag replaces the tag, keeps a digest and validates", () => {
    expect(plain.withTag("1.36").toString()).toBe("docker.io/library/busybox:1.36");
    expect(tagged.withTag("2.0").toString()).toBe("quay.io/org/app:2.0");
    expect(digested.withTag("TAG5").toString()).toBe(`docker.io/org/app:TAG5@${SHA_F}`);
    expect(() => plain.withTag("-foo")).toThrow(/cannot tag "docker.io\/library\/busybox": tag "-foo" is invalid/);
    expect(() => plain.withTag("")).toThrow(AirlockError);
    expect(() => plain.withTag("t".repeat(129))).toThrow(/at most 128/);
  });

  it("withDigest replaces the digest, keeps a tag and validates", () => {
    expect(plain.withDigest(SHA_REDIS).toString()).toBe(`docker.io/library/busybox@${SHA_REDIS}`);
    expect(tagged.withDigest(SHA_F).toString()).toBe(`quay.io/org/app:1.0@${SHA_F}`);
    expect(both.withDigest(SHA_REDIS).digest).toBe(SHA_REDIS);
    let caught: unknown;
    try {
      plain.withDigest("foo" as Digest);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AirlockError);
    expect((caught as AirlockError).code).toBe("ERR_INVALID_REFERENCE");
    expect((caught as AirlockError).message).toContain(`cannot add digest "foo" to "docker.io/library/busybox"`);
  });

  it("withoutTagOrDigest keeps the repository only", () => {
    expect(both.withoutTagOrDigest().toString()).toBe("localhost:5000/app");
    expect(tagged.withoutTagOrDigest().tag).toBeUndefined();
    expect(digested.withoutTagOrDigest().digest).toBeUndefined();
    expect(plain.withoutTagOrDigest()).toBe(plain);
  });

  it("withDefaultTag adds :latest only when there is neither tag nor digest", () => {
    expect(plain.withDefaultTag().toString()).toBe("docker.io/library/busybox:latest");
    expect(plain.withDefaultTag().familiarString()).toBe("busybox:latest");
    expect(plain.tag).toBeUndefined(); // immutable
    expect(tagged.withDefaultTag().toString()).toBe("quay.io/org/app:1.0");
    expect(digested.withDefaultTag().toString()).toBe(`docker.io/org/app@${SHA_F}`);
  });

  it("registryHost maps docker.io to registry-1.docker.io only", () => {
    expect(plain.registryHost).toBe("registry-1.docker.io");
    expect(DockerReference.parse("index.docker.io/org/app").registryHost).toBe("registry-1.docker.io");
    expect(tagged.registryHost).toBe("quay.io");
    expect(both.registryHost).toBe("localhost:5000");
    expect(DockerReference.parse("[::1]:5000/x").registryHost).toBe("[::1]:5000");
    expect(DockerReference.parse("registry-1.docker.io/library/x").registryHost).toBe("registry-1.docker.io");
  });

  it("references are frozen values", () => {
    expect(Object.isFrozen(both)).toBe(true);
    expect(() => {
      (both as { tag: string | undefined }).tag = "x";
    }).toThrow(TypeError);
  });
});

describe("isValidTag", () => {
  it.each([
    ["latest", true],
    ["1.0", true],
    ["v1.2.3-rc.1", true],
    ["_", true],
    ["UPPER_lower", true],
    ["9", true],
    ["t".repeat(128), true],
    ["", false],
    ["-x", false],
    [".x", false],
    ["a/b", false],
    ["a:b", false],
    ["a@b", false],
    ["ünïcode", false],
    ["t".repeat(129), false],
  ])("%s → %s", (tag, ok) => {
    expect(isValidTag(tag)).toBe(ok);
  });
});

describe("isValidDomain", () => {
  it.each([
    ["docker.io", true],
    ["localhost:5000", true],
    ["127.0.0.1:5000", true],
    ["[::1]:5000", true],
    ["[2001:db8::1]", true],
    ["a", true],
    ["foo_bar.com", false],
    ["-a.com", false],
    ["a.com:", false],
    ["a.com:http", false],
    ["::1", false],
    ["[fe80::1%eth0]", false],
    ["", false],
  ])("%s → %s", (domain, ok) => {
    expect(isValidDomain(domain)).toBe(ok);
  });
});

describe("isLoopbackHost", () => {
  it.each([
    ["localhost", true],
    ["localhost:5000", true],
    ["LocalHost:5000", true],
    ["127.0.0.1", true],
    ["127.0.0.1:5000", true],
    ["127.255.3.4:80", true],
    ["[::1]", true],
    ["[::1]:5000", true],
    ["::1", true],
    ["[0:0:0:0:0:0:0:1]:5000", true],
    ["[::ffff:127.0.0.1]:5000", true],
    ["localhost.example.com", false],
    ["mylocalhost:5000", false],
    ["127.0.0.1.nip.io", false],
    ["127.0.0.256", false],
    ["128.0.0.1", false],
    ["10.0.0.1:5000", false],
    ["0.0.0.0", false],
    ["[::2]:5000", false],
    ["[::1]x", false],
    ["[::1", false],
    ["localhost:http", false],
    ["docker.io", false],
    ["", false],
  ])("%s → %s", (domain, ok) => {
    expect(isLoopbackHost(domain)).toBe(ok);
  });

  it("agrees with parsed references", () => {
    expect(isLoopbackHost(DockerReference.parse("localhost:5000/app").domain)).toBe(true);
    expect(isLoopbackHost(DockerReference.parse("[::1]:5000/app").domain)).toBe(true);
    expect(isLoopbackHost(DockerReference.parse("app").domain)).toBe(false);
  });
});
