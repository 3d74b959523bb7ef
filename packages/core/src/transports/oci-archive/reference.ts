/**
 * References of the `oci-archive:` transport: `PATH[:REFERENCE]`, split at the FIRST colon as for
 * `oci:` (so PATH cannot contain a colon and REFERENCE may), REFERENCE a valid
 * `org.opencontainers.image.ref.name`. `PATH:@N` selects the N-th (0-based) index.json entry for
 * reading, which skopeo's parser lacks.
 * @see https://github.com/containers/image/blob/main/docs/containers-transports.5.md
 */
import { AirlockError } from "../../errors.js";
import { isValidOciRefName } from "../oci/reference.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext, Transport } from "../types.js";
import { OciArchiveImageDestination } from "./destination.js";
import { OciArchiveImageSource } from "./source.js";
import { ociArchiveTransport } from "./transport.js";

/** An immutable reference to an image in an OCI archive: a tar file and a name or a position. */
export class OciArchiveReference implements ImageReference {
  /** The archive's path, as the user typed it. */
  readonly path: string;
  /** The image's `org.opencontainers.image.ref.name`, if one was given. */
  readonly name: string | undefined;
  /** The 0-based position in index.json (`@N`), if one was given; only for reading. */
  readonly position: number | undefined;

  private constructor(path: string, name: string | undefined, position: number | undefined) {
    this.path = path;
    this.name = name;
    this.position = position;
  }

  /** Parses the part after `oci-archive:` without any I/O. Throws ERR_INVALID_REFERENCE. */
  static parse(spec: string): OciArchiveReference {
    const colon = spec.indexOf(":");
    const path = colon < 0 ? spec : spec.slice(0, colon);
    const rest = colon < 0 ? "" : spec.slice(colon + 1);
    if (path === "") {
      throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference oci-archive:${spec}: the archive path is missing; use oci-archive:PATH[:NAME], e.g. oci-archive:./app.tar:app`);
    }
    if (rest.startsWith("@")) {
      const n = rest.slice(1);
      if (!/^\d+$/.test(n) || !Number.isSafeInteger(Number(n))) {
        throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference oci-archive:${spec}: @${n} is not a non-negative integer; use oci-archive:${path}:@N with N counting index.json entries from 0`);
      }
      return new OciArchiveReference(path, undefined, Number(n));
    }
    if (rest !== "" && !isValidOciRefName(rest)) {
      throw new AirlockError(
        "ERR_INVALID_REFERENCE",
        `invalid reference oci-archive:${spec}: ${JSON.stringify(rest)} is not a valid image name (letters and digits, joined by one of - . _ : @ + or --, in /-separated parts); note that the archive path ends at the first colon`,
      );
    }
    return new OciArchiveReference(path, rest === "" ? undefined : rest, undefined);
  }

  /** The `oci-archive:` transport. */
  get transport(): Transport {
    return ociArchiveTransport;
  }

  /** `oci-archive:PATH`, `oci-archive:PATH:NAME` or `oci-archive:PATH:@N`. */
  toString(): string {
    if (this.position !== undefined) return `oci-archive:${this.path}:@${this.position}`;
    return this.name === undefined ? `oci-archive:${this.path}` : `oci-archive:${this.path}:${this.name}`;
  }

  /** OCI archives carry no Docker reference (as containers/image). */
  dockerReference(): string | undefined {
    return undefined;
  }

  /** Opens the image for reading: indexes the archive and resolves the name or position now. */
  newSource(ctx?: SystemContext): Promise<ImageSource> {
    return OciArchiveImageSource.open(this, ctx);
  }

  /** Opens the archive for writing; nothing at PATH changes before commit. */
  newDestination(ctx?: SystemContext): Promise<ImageDestination> {
    return OciArchiveImageDestination.open(this, ctx);
  }
}
