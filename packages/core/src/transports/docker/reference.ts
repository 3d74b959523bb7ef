/**
 * `docker://NAME[:TAG|@DIGEST]` references, as containers/image's docker transport parses them:
 * the part after `docker:` must start with `//`; a tag and a digest together are rejected; a
 * name alone means `:latest`.
 * @see https://github.com/containers/image/blob/main/docs/containers-transports.5.md
 */
import { AirlockError } from "../../errors.js";
import { DockerReference } from "../../reference/docker.js";
import { resolveRegistryEndpoints } from "../../registry/registries-conf.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext, Transport } from "../types.js";
import { DockerImageDestination } from "./destination.js";
import { DockerImageSource } from "./source.js";
import { dockerTransport } from "./transport.js";

/** A reference to an image in a registry: `docker://quay.io/org/app:1.0`. Immutable; parsed without I/O. */
export class DockerImageReference implements ImageReference {
  /** The image's Docker reference, normalised, with `:latest` added when neither tag nor digest was given. */
  readonly ref: DockerReference;

  constructor(ref: DockerReference) {
    if (ref.tag !== undefined && ref.digest !== undefined) {
      throw new AirlockError(
        "ERR_INVALID_REFERENCE",
        `invalid image reference "docker://${ref.familiarString()}": Docker references with both a tag and digest are currently not supported; use either NAME:TAG or NAME@DIGEST`,
      );
    }
    this.ref = ref.withDefaultTag();
  }

  /** Parses the part after `docker:` (`//NAME[:TAG|@DIGEST]`). Throws ERR_INVALID_REFERENCE. */
  static parse(spec: string): DockerImageReference {
    if (!spec.startsWith("//")) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `invalid image name "docker:${spec}": a docker reference must begin with "//", e.g. docker://${spec.replace(/^\/*/, "") || "busybox:latest"}`);
    }
    return new DockerImageReference(DockerReference.parse(spec.slice(2)));
  }

  /** The transport (`docker`). */
  get transport(): Transport {
    return dockerTransport;
  }

  /** `docker://` and the familiar form, e.g. `docker://busybox:latest`. Round-trips. */
  toString(): string {
    return `docker://${this.ref.familiarString()}`;
  }

  /** The fully-qualified Docker reference, e.g. `docker.io/library/busybox:latest`. */
  dockerReference(): string {
    return this.ref.toString();
  }

  /** The tag or digest this reference names (a digest when it has one). */
  get tagOrDigest(): string {
    return (this.ref.digest ?? this.ref.tag) as string;
  }

  /** Opens the image for reading, where registries.conf sends pulls (its location, or the first mirror that has it). */
  async newSource(ctx: SystemContext = {}): Promise<ImageSource> {
    return DockerImageSource.open(this, ctx, await resolveRegistryEndpoints(this.ref, ctx.docker ?? {}, "pull"));
  }

  /** Opens the repository for writing, where the reference says (registries.conf's `insecure` and `blocked` apply; its `location` and mirrors are for pulls only, as in skopeo). */
  async newDestination(ctx: SystemContext = {}): Promise<ImageDestination> {
    const [primary] = await resolveRegistryEndpoints(this.ref, ctx.docker ?? {}, "push");
    return primary ? new DockerImageDestination(this, { ...ctx, docker: primary.ctx }, {}, primary.ref) : new DockerImageDestination(this, ctx);
  }
}
