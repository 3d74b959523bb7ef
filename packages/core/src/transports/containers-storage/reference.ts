/**
 * References of the `containers-storage:` transport (podman, buildah and CRI-O local storage), with
 * containers/image's grammar: `[[DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS]]{IMAGE-ID | NAME[@IMAGE-ID]}`
 * where NAME is a Docker reference (normalised: `busybox` means `docker.io/library/busybox:latest`)
 * that may carry a tag and/or a digest, and IMAGE-ID is a 64-hex image ID or (when reading) a
 * prefix of at least 3 characters of one. The store specifier in brackets overrides storage.conf.
 * @see https://github.com/containers/image/blob/main/storage/storage_transport.go
 * @see https://github.com/containers/image/blob/main/docs/containers-transports.5.md
 */
import { isAbsolute } from "node:path";
import { isDigest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { DockerReference } from "../../reference/docker.js";
import type { ImageDestination, ImageReference, ImageSource, SystemContext, Transport } from "../types.js";
import { containersStorageTransport } from "./transport.js";

/** The shortest image-ID prefix accepted (containers/image's minimumTruncatedIDLength). */
export const MINIMUM_TRUNCATED_ID_LENGTH = 3;

/** The `[DRIVER@GRAPHROOT+RUNROOT:OPTIONS]` part of a reference: what it overrides in storage.conf. */
export interface StoreSpecifier {
  driver?: string;
  graphRoot?: string;
  runRoot?: string;
  options?: string[];
}

/** An immutable, parsed `containers-storage:` reference. */
export class StorageReference implements ImageReference {
  /** The text after `containers-storage:`, as typed. */
  readonly spec: string;
  /** The store specifier, when the reference has one. */
  readonly store: StoreSpecifier | undefined;
  /** The image name (normalised, `:latest` added when it has neither tag nor digest), if any. */
  readonly named: DockerReference | undefined;
  /** A full image ID (64 hex), if given. */
  readonly id: string | undefined;
  /**
   * Text that may be a truncated image ID (resolved against the store when the image is opened):
   * `NAME@PREFIX`, or a lone word of ≥ 3 characters that may also be a name (then `named` is set too).
   */
  readonly idPrefix: string | undefined;
  /** True when the reference is one hex word that is an image-ID prefix if the store has such an image, else a name. */
  readonly idOrName: boolean;

  private constructor(spec: string, store: StoreSpecifier | undefined, named: DockerReference | undefined, id: string | undefined, idPrefix: string | undefined, idOrName = false) {
    this.spec = spec;
    this.store = store;
    this.named = named;
    this.id = id;
    this.idPrefix = idPrefix;
    this.idOrName = idOrName;
  }

  /** Parses the part after `containers-storage:` without any I/O. Throws ERR_INVALID_REFERENCE. */
  static parse(spec: string): StorageReference {
    const bad = (why: string, cause?: unknown) =>
      new AirlockError(
        "ERR_INVALID_REFERENCE",
        `invalid reference containers-storage:${spec}: ${why}; expected containers-storage:[[DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS]]NAME[:TAG][@DIGEST][@IMAGE-ID] or containers-storage:IMAGE-ID`,
        cause === undefined ? {} : { cause },
      );
    let rest = spec;
    let store: StoreSpecifier | undefined;
    if (rest.startsWith("[")) {
      const close = rest.indexOf("]");
      if (close < 1) throw bad("the store specifier [ … ] is not closed");
      let storeSpec = rest.slice(1, close);
      rest = rest.slice(close + 1);
      store = {};
      const at = storeSpec.indexOf("@");
      if (at >= 0) {
        const driver = storeSpec.slice(0, at);
        storeSpec = storeSpec.slice(at + 1);
        if (driver === "" || storeSpec === "") throw bad("the store specifier needs a driver before @ and a graph root after it");
        store.driver = driver;
      } else if (storeSpec === "") {
        throw bad("the store specifier [ ] is empty");
      }
      const colon = storeSpec.indexOf(":");
      if (colon >= 0) {
        store.options = storeSpec.slice(colon + 1).split(",");
        storeSpec = storeSpec.slice(0, colon);
      }
      const plus = storeSpec.indexOf("+");
      if (plus >= 0) {
        store.runRoot = storeSpec.slice(plus + 1);
        storeSpec = storeSpec.slice(0, plus);
      }
      if (storeSpec !== "") store.graphRoot = storeSpec;
      if (store.graphRoot !== undefined && !isAbsolute(store.graphRoot)) throw bad(`the graph root ${JSON.stringify(store.graphRoot)} is not an absolute path`);
      if (store.runRoot !== undefined && store.runRoot !== "" && !isAbsolute(store.runRoot)) throw bad(`the run root ${JSON.stringify(store.runRoot)} is not an absolute path`);
      if (store.runRoot === "") delete store.runRoot;
    }
    if (rest === "") throw bad("the image name or ID is missing");
    let id: string | undefined;
    let idPrefix: string | undefined;
    const at = rest.lastIndexOf("@");
    if (at >= 0) {
      const possible = rest.slice(at + 1);
      if (possible === "") throw bad("empty trailing digest or ID");
      if (!isDigest(possible)) {
        if (/^[0-9a-f]{64}$/.test(possible)) id = possible;
        else if (possible.length >= MINIMUM_TRUNCATED_ID_LENGTH && /^[0-9a-f]+$/.test(possible)) idPrefix = possible;
        else throw bad(`${JSON.stringify(possible)} does not look like an image ID or digest`);
        rest = rest.slice(0, at);
      }
    }
    let named: DockerReference | undefined;
    if (id === undefined && idPrefix === undefined && /^[0-9a-f]{64}$/.test(rest)) {
      return new StorageReference(spec, store, undefined, rest, undefined);
    }
    if (id === undefined && idPrefix === undefined && rest.length >= MINIMUM_TRUNCATED_ID_LENGTH && /^[0-9a-f]+$/.test(rest)) {
      // A lone hex word: an image-ID prefix if the store has such an image, else a name (resolved when opened).
      idPrefix = rest;
    }
    if (rest !== "") {
      try {
        named = DockerReference.parse(rest).withDefaultTag();
      } catch (cause) {
        if (idPrefix === rest) return new StorageReference(spec, store, undefined, undefined, idPrefix);
        throw bad((cause as Error).message, cause);
      }
    }
    return new StorageReference(spec, store, named, id, idPrefix, idPrefix !== undefined && idPrefix === rest);
  }

  /** The `containers-storage:` transport. */
  get transport(): Transport {
    return containersStorageTransport;
  }

  /** `containers-storage:` and the reference as typed. */
  toString(): string {
    return `containers-storage:${this.spec}`;
  }

  /** The image's name (e.g. `docker.io/library/busybox:latest`), when the reference has one. */
  dockerReference(): string | undefined {
    return this.named?.toString();
  }

  /** Opens the image for reading: finds the store (storage.conf, the specifier) and the image in it. */
  async newSource(ctx?: SystemContext): Promise<ImageSource> {
    const { StorageImageSource } = await import("./source.js");
    return StorageImageSource.open(this, ctx);
  }

  /** Opens the store for writing an image under this reference's name. */
  async newDestination(ctx?: SystemContext): Promise<ImageDestination> {
    const { StorageImageDestination } = await import("./destination.js");
    return StorageImageDestination.open(this, ctx);
  }
}
