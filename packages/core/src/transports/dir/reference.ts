/**
 * References of the `dir:` transport: `dir:PATH`, where PATH is everything after `dir:` (it may
 * contain colons).
 * @see https://github.com/containers/image/blob/main/docs/containers-transports.5.md
 */
import { AirlockError } from "../../errors.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext, Transport } from "../types.js";
import { DirImageDestination } from "./destination.js";
import { DirImageSource } from "./source.js";
import { dirTransport } from "./transport.js";

/** An immutable reference to a `dir:` image directory. */
export class DirReference implements ImageReference {
  /** The directory, as the user typed it. */
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  /** Parses the part after `dir:` without any I/O. Throws ERR_INVALID_REFERENCE for an empty path. */
  static parse(spec: string): DirReference {
    if (spec === "") {
      throw new AirlockError("ERR_INVALID_REFERENCE", "invalid reference dir:: the directory is missing; use dir:PATH, e.g. dir:./image");
    }
    return new DirReference(spec);
  }

  /** The `dir:` transport. */
  get transport(): Transport {
    return dirTransport;
  }

  /** `dir:PATH`. */
  toString(): string {
    return `dir:${this.path}`;
  }

  /** A `dir:` directory carries no Docker reference (as containers/image). */
  dockerReference(): string | undefined {
    return undefined;
  }

  /** Opens the image for reading: the directory must hold `manifest.json`. */
  newSource(_ctx?: SystemContext): Promise<ImageSource> {
    return DirImageSource.open(this);
  }

  /** Opens the directory for writing: new, empty, or an existing `dir:` image (updated in place). */
  newDestination(_ctx?: SystemContext): Promise<ImageDestination> {
    return DirImageDestination.open(this);
  }
}
