/**
 * References of the `docker-archive:` transport, with containers/image's grammar
 * (docker/archive/transport.go): `PATH[:REFERENCE]` split at the FIRST colon, so PATH cannot contain
 * a colon; REFERENCE is a Docker reference `NAME[:TAG]` (`:latest` when no tag; a digest is
 * refused: an archive names images by tag) or `@N`, the N-th (0-based) image of manifest.json,
 * for reading only.
 * @see https://github.com/containers/image/blob/main/docs/containers-transports.5.md
 */
import { AirlockError } from "../../errors.js";
import { DockerReference } from "../../reference/docker.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext, Transport } from "../types.js";
import { DockerArchiveImageDestination } from "./destination.js";
import { DockerArchiveImageSource } from "./source.js";
import { dockerArchiveTransport } from "./transport.js";

/** An immutable reference to an image in a `docker save` archive: a file and a tag, a position, or neither. */
export class DockerArchiveReference implements ImageReference {
  /** The archive's path, as the user typed it. */
  readonly path: string;
  /** The image's name and tag (normalised, `:latest` added), if one was given. */
  readonly ref: DockerReference | undefined;
  /** The 0-based position in manifest.json (`@N`), if one was given; only for reading. */
  readonly position: number | undefined;
  /** The reference part as typed (after `PATH:`), for toString. */
  private readonly typed: string;

  private constructor(path: string, ref: DockerReference | undefined, position: number | undefined, typed: string) {
    this.path = path;
    this.ref = ref;
    this.position = position;
    this.typed = typed;
  }

  /** Parses the part after `docker-archive:` without any I/O. Throws ERR_INVALID_REFERENCE. */
  static parse(spec: string): DockerArchiveReference {
    const colon = spec.indexOf(":");
    const path = colon < 0 ? spec : spec.slice(0, colon);
    const rest = colon < 0 ? "" : spec.slice(colon + 1);
    if (path === "") {
      throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference docker-archive:${spec}: the archive path is missing; use docker-archive:PATH[:NAME:TAG], e.g. docker-archive:./app.tar:app:1.0`);
    }
    if (rest === "") return new DockerArchiveReference(path, undefined, undefined, "");
    if (rest.startsWith("@")) {
      const n = rest.slice(1);
      if (!/^\d+$/.test(n) || !Number.isSafeInteger(Number(n))) {
        throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference docker-archive:${spec}: @${n} is not a non-negative integer; use docker-archive:${path}:@N with N counting the images of manifest.json from 0`);
      }
      return new DockerArchiveReference(path, undefined, Number(n), rest);
    }
    let ref: DockerReference;
    try {
      ref = DockerReference.parse(rest);
    } catch (err) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference docker-archive:${spec}: ${(err as Error).message}; note that the archive path ends at the first colon`, { cause: err });
    }
    if (ref.digest !== undefined) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference docker-archive:${spec}: docker-archive images are named by NAME:TAG, not by digest; use docker-archive:${path}:${ref.withoutTagOrDigest().familiarString()}:TAG or :@N`);
    }
    return new DockerArchiveReference(path, ref.withDefaultTag(), undefined, rest);
  }

  /** The `docker-archive:` transport. */
  get transport(): Transport {
    return dockerArchiveTransport;
  }

  /** `docker-archive:PATH[:REFERENCE]`, the reference as typed. */
  toString(): string {
    return this.typed === "" ? `docker-archive:${this.path}` : `docker-archive:${this.path}:${this.typed}`;
  }

  /** The image's normalised `NAME:TAG`, e.g. `docker.io/library/busybox:latest`, if a name was given. */
  dockerReference(): string | undefined {
    return this.ref?.toString();
  }

  /** Opens the image for reading: indexes the archive and chooses the image now. */
  newSource(ctx?: SystemContext): Promise<ImageSource> {
    return DockerArchiveImageSource.open(this, ctx);
  }

  /** Opens the archive for writing; nothing at PATH changes before commit. */
  newDestination(ctx?: SystemContext): Promise<ImageDestination> {
    return DockerArchiveImageDestination.open(this, ctx);
  }
}
