/**
 * References of the `docker-daemon:` transport, with containers/image's grammar
 * (docker/daemon/daemon_transport.go): `NAME:TAG`, `NAME@DIGEST`, or an image ID `sha256:<64 hex>`
 * (reading only). A name alone is refused (which image would it be?), as are a tag and a digest
 * together, an ID with another algorithm, and the repository name `sha256`, which Docker reserves
 * for IDs.
 * @see https://github.com/containers/image/blob/main/docs/containers-transports.5.md
 */
import { type Digest, isDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { DockerReference } from "../../reference/docker.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext, Transport } from "../types.js";
import { DockerDaemonImageDestination } from "./destination.js";
import { DockerDaemonImageSource } from "./source.js";
import { dockerDaemonTransport } from "./transport.js";

/** An immutable reference to an image of a Docker daemon: by name (tag or digest) or by image ID. */
export class DockerDaemonReference implements ImageReference {
  /** The image's name with a tag or a digest (normalised, e.g. `docker.io/library/busybox:latest`), when it is named. */
  readonly ref: DockerReference | undefined;
  /** The image ID (`sha256:…`, the digest of its config), when it is named by ID. */
  readonly id: Digest | undefined;
  /** The part after `docker-daemon:` as typed, for toString. */
  private readonly typed: string;

  private constructor(ref: DockerReference | undefined, id: Digest | undefined, typed: string) {
    this.ref = ref;
    this.id = id;
    this.typed = typed;
  }

  /** Parses the part after `docker-daemon:` without any I/O. Throws ERR_INVALID_REFERENCE. */
  static parse(spec: string): DockerDaemonReference {
    const invalid = (why: string, cause?: unknown) => new AirlockError("ERR_INVALID_REFERENCE", `invalid reference docker-daemon:${spec}: ${why}`, cause === undefined ? {} : { cause });
    // ALG:HEX is an image ID. Docker reserves only `sha256` as a repository name, so another
    // algorithm is ambiguous (a name and a tag, or an ID?) and refused.
    if (isDigest(spec)) {
      if (!spec.startsWith("sha256:")) throw invalid("an image ID must be sha256:<64 hex digits>");
      return new DockerDaemonReference(undefined, spec, spec);
    }
    let ref: DockerReference;
    try {
      ref = DockerReference.parse(spec);
    } catch (cause) {
      throw invalid(`${(cause as Error).message}; use docker-daemon:NAME:TAG, NAME@DIGEST or an image ID sha256:<64 hex digits>`, cause);
    }
    if (ref.domain === "docker.io" && ref.path === "library/sha256") {
      throw invalid("the repository name sha256 is reserved for image IDs; give the whole ID, sha256:<64 hex digits>");
    }
    if (ref.tag === undefined && ref.digest === undefined) {
      throw invalid(`${ref.familiarString()} has neither a tag nor a digest; add one, e.g. docker-daemon:${ref.familiarString()}:latest`);
    }
    if (ref.tag !== undefined && ref.digest !== undefined) {
      throw invalid("a reference with both a tag and a digest is not supported; give one of them");
    }
    return new DockerDaemonReference(ref, undefined, spec);
  }

  /** The `docker-daemon:` transport. */
  get transport(): Transport {
    return dockerDaemonTransport;
  }

  /** `docker-daemon:NAME:TAG`, `docker-daemon:NAME@DIGEST` or `docker-daemon:sha256:ID`, as typed. */
  toString(): string {
    return `docker-daemon:${this.typed}`;
  }

  /** The image's normalised name, e.g. `docker.io/library/busybox:latest`; undefined for an image ID. */
  dockerReference(): string | undefined {
    return this.ref?.toString();
  }

  /** What the Engine API's `/images/{name}` routes take: the normalised name, or the ID. */
  daemonName(): string {
    return this.ref ? this.ref.toString() : (this.id as string);
  }

  /** Opens the image for reading: saves it from the daemon into a temporary file. */
  newSource(ctx?: SystemContext): Promise<ImageSource> {
    return DockerDaemonImageSource.open(this, ctx);
  }

  /** Opens the daemon for loading an image under this NAME:TAG; nothing is loaded before commit. */
  newDestination(ctx?: SystemContext): Promise<ImageDestination> {
    return DockerDaemonImageDestination.open(this, ctx);
  }
}
