/**
 * Docker image references (`[DOMAIN/]PATH[:TAG][@DIGEST]`), parsed and normalised as the Docker CLI,
 * skopeo and containers/image do it.
 *
 * The grammar is distribution/reference's (reference.go, regexp.go):
 *
 *     reference        := name [ ":" tag ] [ "@" digest ]
 *     name             := [domain "/"] path
 *     domain           := host [":" port-number]
 *     host             := domain-name | IPv4address | "[" IPv6address "]"
 *     domain-name      := domain-component ["." domain-component]*
 *     domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
 *     port-number      := /[0-9]+/
 *     path             := path-component ["/" path-component]*
 *     path-component   := alpha-numeric [separator alpha-numeric]*
 *     alpha-numeric    := /[a-z0-9]+/
 *     separator        := /[_.]|__|[-]+/
 *     tag              := /[\w][\w.-]{0,127}/
 *
 * Normalisation is normalize.go's as vendored by containers/image (docker/reference), which is what
 * skopeo runs: the first `/`-separated component is a registry domain only when it contains `.` or
 * `:` or is exactly `localhost`; otherwise `docker.io` is the domain. The legacy `index.docker.io`
 * becomes `docker.io`, and a one-component path on `docker.io` gets `library/` in front. The whole
 * normalised name (`domain/path`) may have at most 255 characters.
 *
 * Deliberate differences from upstream distribution/reference, all towards skopeo's behaviour:
 * - newer distribution/reference treats an uppercase first component (`Foo/bar`) as a domain;
 *   containers/image (skopeo) does not, so `Foo/bar` is rejected here as not lowercase;
 * - newer distribution/reference limits only the path to 255 characters; containers/image limits
 *   the whole name, domain included;
 * - a first component that is taken for a domain but is not a valid host (`foo_bar.com/x`) is an
 *   error here; Go's regexp silently re-reads the whole name as a domain-less path there;
 * - digests must be of an algorithm airlock can verify (sha256, sha512), as go-digest requires a
 *   registered algorithm.
 *
 * A tag and a digest may both be present (`name:tag@digest`); both are kept. Rejecting that
 * combination is the docker transport's job, as in skopeo.
 *
 * @see https://github.com/distribution/reference/blob/main/reference.go
 * @see https://github.com/containers/image/blob/main/docker/reference/normalize.go
 */
import { type Digest, parseDigest } from "../digest.js";
import { AirlockError } from "../errors.js";

/** The domain of Docker Hub in normalised references (normalize.go `defaultDomain`). */
export const DOCKER_HUB_DOMAIN = "docker.io";

/** The host that serves Docker Hub's registry API, where clients connect for {@link DOCKER_HUB_DOMAIN}. */
export const DOCKER_HUB_REGISTRY_HOST = "registry-1.docker.io";

/** The legacy Docker Hub domain ("the Docker Index"), normalised to {@link DOCKER_HUB_DOMAIN}. */
const LEGACY_DOCKER_HUB_DOMAIN = "index.docker.io";

/** The namespace of Docker Hub's official images. */
const OFFICIAL_REPO_NAMESPACE = "library";

/** The tag a reference without tag or digest gets when a tag is needed. */
export const DEFAULT_TAG = "latest";

/** The maximum number of characters of a normalised repository name (`domain/path`). */
export const NAME_TOTAL_LENGTH_MAX = 255;

/** The maximum number of characters of a tag. */
export const TAG_LENGTH_MAX = 128;

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`;
const IPV6_ADDRESS = "\\[(?:[a-fA-F0-9:]+)\\]";
const DOMAIN_AND_PORT_RE = new RegExp(`^(?:${DOMAIN_NAME}|${IPV6_ADDRESS})(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;

const q = (s: string): string => JSON.stringify(s);

/** The longest valid reference: a 255-character name, ":" and a 128-character tag, "@" and a sha512 digest. */
const REFERENCE_LENGTH_MAX = NAME_TOTAL_LENGTH_MAX + 1 + TAG_LENGTH_MAX + 1 + 7 + 128;

function invalid(input: string, why: string, cause?: unknown): AirlockError {
  const shown = input.length > REFERENCE_LENGTH_MAX ? `${input.slice(0, 256)}…` : input;
  return new AirlockError("ERR_INVALID_REFERENCE", `invalid image reference ${q(shown)}: ${why}`, cause === undefined ? {} : { cause });
}

/** Reports whether `tag` is a valid Docker tag: `[\w][\w.-]{0,127}` (at most 128 characters). */
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** Reports whether `domain` is a valid registry domain: a host name, IPv4 address or `[IPv6]`, with an optional `:PORT`. */
export function isValidDomain(domain: string): boolean {
  return DOMAIN_AND_PORT_RE.test(domain);
}

/**
 * Reports whether a registry domain names the local machine: `localhost`, an address in
 * 127.0.0.0/8 or `::1` (also IPv4-mapped `::ffff:127.x.y.z`), with or without `:PORT` and, for IPv6,
 * with or without brackets.
 */
export function isLoopbackHost(domain: string): boolean {
  let host = domain.trim().toLowerCase();
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end < 0 || !/^(?::[0-9]+)?$/.test(host.slice(end + 1))) return false;
    return isLoopbackIPv6(host.slice(1, end));
  }
  const colons = host.split(":").length - 1;
  if (colons > 1) return isLoopbackIPv6(host); // a bare IPv6 address cannot carry a port
  if (colons === 1) {
    const [h, port] = host.split(":") as [string, string];
    if (!/^[0-9]+$/.test(port)) return false;
    host = h;
  }
  if (host === "localhost") return true;
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return m?.slice(1).every((o) => Number(o) <= 255) ?? false;
}

function isLoopbackIPv6(addr: string): boolean {
  let hostname: string;
  try {
    // The WHATWG URL parser canonicalises IPv6 (RFC 5952): "0:0::1" → "[::1]", "::ffff:127.0.0.1" → "[::ffff:7f00:1]".
    hostname = new URL(`http://[${addr}]/`).hostname;
  } catch {
    return false;
  }
  return hostname === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(hostname);
}

/**
 * Splits `s` at its first `/` into a domain and the rest, as containers/image's SplitDockerDomain
 * does: the first component is a domain only if it contains `.` or `:` or is `localhost`. `official`
 * says that the path will need the `library/` namespace (a one-component name on Docker Hub).
 */
function splitDockerDomain(s: string): { domain: string; remainder: string; official: boolean } {
  const slash = s.indexOf("/");
  const first = slash < 0 ? "" : s.slice(0, slash);
  const hasDomain = slash >= 0 && (/[.:]/.test(first) || first === "localhost");
  let domain = hasDomain ? first : DOCKER_HUB_DOMAIN;
  const remainder = hasDomain ? s.slice(slash + 1) : s;
  if (domain === LEGACY_DOCKER_HUB_DOMAIN) domain = DOCKER_HUB_DOMAIN;
  return { domain, remainder, official: domain === DOCKER_HUB_DOMAIN && !remainder.includes("/") };
}

/** Reports whether `path` is a valid repository path (lowercase components joined by "/", e.g. `library/busybox`). */
export function isValidRepositoryPath(path: string): boolean {
  return path.split("/").every((c) => PATH_COMPONENT_RE.test(c));
}

/** Explains why `path` is not a valid repository path, or returns undefined when it is valid. */
function pathProblem(path: string): string | undefined {
  if (path === "") return "the repository name is empty; expected NAME[:TAG][@DIGEST], e.g. busybox:latest or quay.io/org/app:1.0";
  const components = path.split("/");
  const bad = components.find((c) => !PATH_COMPONENT_RE.test(c));
  if (bad === undefined) return undefined;
  if (/[A-Z]/.test(path) && components.every((c) => PATH_COMPONENT_RE.test(c.toLowerCase()))) {
    return `repository name ${q(path)} must be lowercase (use ${q(path.toLowerCase())})`;
  }
  const what = bad === "" ? "an empty component (a leading, trailing or doubled \"/\")" : `the component ${q(bad)}`;
  return (
    `repository path ${q(path)} has ${what}; expected lowercase components of [a-z0-9] ` +
    `separated by ".", "_", "__" or "-", joined by "/" (repository names must be lowercase)`
  );
}

function tagProblem(tag: string): string {
  if (tag.length > TAG_LENGTH_MAX) return `tag ${q(tag.slice(0, 20) + "…")} has ${tag.length} characters; at most ${TAG_LENGTH_MAX} are allowed`;
  return `tag ${q(tag)} is invalid; expected 1 to ${TAG_LENGTH_MAX} characters of [A-Za-z0-9_.-], not starting with "." or "-"`;
}

/**
 * A Docker image reference: registry domain, repository path and an optional tag and/or digest.
 * Immutable; parsed without I/O; always held in normalised form (`docker.io/library/busybox`).
 */
export class DockerReference {
  /** The registry domain, with port if any: "docker.io", "quay.io", "localhost:5000", "[::1]:5000". */
  readonly domain: string;
  /** The repository path within the registry: "library/busybox", "org/app". */
  readonly path: string;
  /** The tag, if the reference has one. */
  readonly tag: string | undefined;
  /** The digest, if the reference has one. */
  readonly digest: Digest | undefined;

  private constructor(domain: string, path: string, tag: string | undefined, digest: Digest | undefined) {
    this.domain = domain;
    this.path = path;
    this.tag = tag;
    this.digest = digest;
    Object.freeze(this);
  }

  /**
   * Parses `s` (`[DOMAIN/]PATH[:TAG][@DIGEST]`) and normalises it (`docker.io`, `library/`). Does
   * NOT add a default tag (see {@link withDefaultTag}). Throws ERR_INVALID_REFERENCE with a
   * message that names the bad part and what is expected.
   */
  static parse(s: string): DockerReference {
    if (s === "") throw invalid(s, "the reference is empty; expected NAME[:TAG][@DIGEST], e.g. busybox:latest or quay.io/org/app:1.0");
    if (IDENTIFIER_RE.test(s)) {
      throw invalid(
        s,
        `invalid repository name (${s}), cannot specify 64-byte hexadecimal strings; ` +
          `to refer to an image by digest use NAME@sha256:${s.slice(0, 12)}…`,
      );
    }
    const { domain, remainder, official } = splitDockerDomain(s);
    if (!isValidDomain(domain)) {
      throw invalid(s, `registry ${q(domain)} is not a valid host; expected a host name, an IPv4 address or a bracketed IPv6 address, with an optional :PORT (e.g. registry.example.com:5000 or [::1]:5000)`);
    }
    if (!s.includes("/") && s.startsWith("[")) {
      throw invalid(s, `a registry host alone is not an image reference; expected HOST/PATH[:TAG][@DIGEST], e.g. [::1]:5000/app:latest`);
    }
    let rest = remainder;
    let digest: Digest | undefined;
    const at = rest.indexOf("@");
    if (at >= 0) {
      const d = rest.slice(at + 1);
      rest = rest.slice(0, at);
      try {
        digest = parseDigest(d);
      } catch (err) {
        throw invalid(s, `digest ${q(d)} is invalid: ${(err as Error).message}`, err);
      }
    }
    let tag: string | undefined;
    const colon = rest.indexOf(":");
    if (colon >= 0) {
      tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
      if (!isValidTag(tag)) throw invalid(s, tagProblem(tag));
    }
    const path = official ? `${OFFICIAL_REPO_NAMESPACE}/${rest}` : rest;
    // The length is checked first: it is cheap and bounds the work of the path pattern.
    const nameLength = domain.length + 1 + path.length;
    if (nameLength > NAME_TOTAL_LENGTH_MAX) {
      const shown = nameLength > 80 ? `${domain}/${path.slice(0, 60)}…` : `${domain}/${path}`;
      throw invalid(s, `repository name ${q(shown)} has ${nameLength} characters; at most ${NAME_TOTAL_LENGTH_MAX} are allowed`);
    }
    const problem = pathProblem(rest);
    if (problem !== undefined) throw invalid(s, problem);
    return new DockerReference(domain, path, tag, digest);
  }

  /** The repository name, `domain/path`, e.g. "docker.io/library/busybox". */
  get name(): string {
    return `${this.domain}/${this.path}`;
  }

  /** The fully-qualified reference: `name[:tag][@digest]`, e.g. "docker.io/library/busybox:latest". */
  toString(): string {
    return this.name + (this.tag === undefined ? "" : `:${this.tag}`) + (this.digest === undefined ? "" : `@${this.digest}`);
  }

  /**
   * The familiar form as the Docker CLI prints it: without `docker.io/`, and without `library/` for
   * official images: "busybox:latest", "org/app", "quay.io/x/y:1".
   */
  familiarString(): string {
    let name = this.name;
    if (this.domain === DOCKER_HUB_DOMAIN) {
      const parts = this.path.split("/");
      name = parts.length === 2 && parts[0] === OFFICIAL_REPO_NAMESPACE ? (parts[1] as string) : this.path;
    }
    return name + (this.tag === undefined ? "" : `:${this.tag}`) + (this.digest === undefined ? "" : `@${this.digest}`);
  }

  /** A copy of this reference with `tag` (validated) in place of any tag; a digest is kept. */
  withTag(tag: string): DockerReference {
    if (!isValidTag(tag)) throw new AirlockError("ERR_INVALID_REFERENCE", `cannot tag ${q(this.toString())}: ${tagProblem(tag)}`);
    return new DockerReference(this.domain, this.path, tag, this.digest);
  }

  /** A copy of this reference with `d` (validated) in place of any digest; a tag is kept. */
  withDigest(d: Digest): DockerReference {
    let digest: Digest;
    try {
      digest = parseDigest(d);
    } catch (err) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot add digest ${q(d)} to ${q(this.toString())}: ${(err as Error).message}`, { cause: err });
    }
    return new DockerReference(this.domain, this.path, this.tag, digest);
  }

  /** A copy of this reference with neither tag nor digest: the repository alone. */
  withoutTagOrDigest(): DockerReference {
    return this.tag === undefined && this.digest === undefined ? this : new DockerReference(this.domain, this.path, undefined, undefined);
  }

  /** This reference with ":latest" added when it has neither tag nor digest (normalize.go TagNameOnly); otherwise itself. */
  withDefaultTag(): DockerReference {
    return this.tag === undefined && this.digest === undefined ? new DockerReference(this.domain, this.path, DEFAULT_TAG, undefined) : this;
  }

  /** The host (with port) to connect to: "registry-1.docker.io" for "docker.io", the domain itself otherwise. */
  get registryHost(): string {
    return this.domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_REGISTRY_HOST : this.domain;
  }
}
