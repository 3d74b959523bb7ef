/**
 * References of the `oci:` transport, with skopeo's grammar (containers/image oci/layout and
 * oci/internal/oci_util.go): `PATH[:REFERENCE]` split at the FIRST colon, so PATH cannot contain a
 * colon and REFERENCE may; `PATH:@N` selects the N-th (0-based) index.json entry, for reading only.
 * REFERENCE must be a valid `org.opencontainers.image.ref.name`.
 * @see https://github.com/containers/image/blob/main/docs/containers-transports.5.md
 * @see https://github.com/opencontainers/image-spec/blob/main/annotations.md#pre-defined-annotation-keys
 */
import { AirlockError } from "../../errors.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext, Transport } from "../types.js";
import { OciImageDestination } from "./destination.js";
import { OciImageSource } from "./source.js";
import { ociTransport } from "./transport.js";

const SEPARATOR = "(?:[-._:@+]|--)";
const ALPHANUM = "(?:[A-Za-z0-9]+)";
const COMPONENT = `(?:${ALPHANUM}(?:${SEPARATOR}${ALPHANUM})*)`;
/** The ref.name grammar containers/image accepts: components of `[A-Za-z0-9]` joined by `-._:@+` or `--`, separated by `/`. */
const REF_NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);

/** Reports whether `name` is a valid image name (`org.opencontainers.image.ref.name`) for an OCI layout. */
export function isValidOciRefName(name: string): boolean {
  return REF_NAME_RE.test(name);
}

/** An immutable reference to an image in an OCI layout: a directory and a name or a position. */
export class OciReference implements ImageReference {
  /** The layout directory, as the user typed it. */
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

  /** Parses the part after `oci:` without any I/O. Throws ERR_INVALID_REFERENCE. */
  static parse(spec: string): OciReference {
    const colon = spec.indexOf(":");
    const path = colon < 0 ? spec : spec.slice(0, colon);
    const rest = colon < 0 ? "" : spec.slice(colon + 1);
    if (path === "") {
      throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference oci:${spec}: the layout directory is missing; use oci:PATH[:NAME], e.g. oci:./layout:app`);
    }
    if (rest.startsWith("@")) {
      const n = rest.slice(1);
      if (!/^-?\d+$/.test(n)) {
        throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference oci:${spec}: source index @${n} is not an integer; use oci:${path}:@N with N counting index.json entries from 0`);
      }
      const position = Number(n);
      if (position < 0 || !Number.isSafeInteger(position)) {
        throw new AirlockError("ERR_INVALID_REFERENCE", `invalid reference oci:${spec}: source index @${n} must be a non-negative integer`);
      }
      return new OciReference(path, undefined, position);
    }
    if (rest !== "" && !isValidOciRefName(rest)) {
      throw new AirlockError(
        "ERR_INVALID_REFERENCE",
        `invalid reference oci:${spec}: ${JSON.stringify(rest)} is not a valid image name (letters and digits, joined by one of - . _ : @ + or --, in /-separated parts); note that the layout path ends at the first colon`,
      );
    }
    return new OciReference(path, rest === "" ? undefined : rest, undefined);
  }

  /** The `oci:` transport. */
  get transport(): Transport {
    return ociTransport;
  }

  /** `oci:PATH`, `oci:PATH:NAME` or `oci:PATH:@N`. */
  toString(): string {
    if (this.position !== undefined) return `oci:${this.path}:@${this.position}`;
    return this.name === undefined ? `oci:${this.path}` : `oci:${this.path}:${this.name}`;
  }

  /** OCI layouts carry no Docker reference (as containers/image). */
  dockerReference(): string | undefined {
    return undefined;
  }

  /** Opens the image for reading: resolves the name or position in index.json now. */
  newSource(_ctx?: SystemContext): Promise<ImageSource> {
    return OciImageSource.open(this);
  }

  /** Opens the layout for writing (created by the first write if it does not exist). */
  newDestination(_ctx?: SystemContext): Promise<ImageDestination> {
    return OciImageDestination.open(this);
  }
}
