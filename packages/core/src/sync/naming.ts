/**
 * Destination names of `sync`: skopeo's algorithm (cmd/skopeo/sync.go `run()`), exactly, plus
 * airlock's per-repository destination names.
 *
 * For each source image skopeo computes a suffix — the full Docker reference for a registry image
 * (`registry.example.com/ns/busybox:1.0`), the directory path below SOURCE for a `dir:` image
 * (`/busybox:1.0`, or the base name of SOURCE when SOURCE itself is the image), the image name for
 * an OCI layout entry — keeps only its last path element (`busybox:1.0`) unless `--scoped`, and
 * names the image `path.Join(DESTINATION, suffix) + --append-suffix`. Go's `path` functions are
 * reproduced here (`goClean`, `goBase`, `goJoin`) so that edge cases (`..`, trailing slashes,
 * doubled slashes) name images as skopeo does.
 *
 * Where skopeo fails, airlock names: with `--dest docker`, a ":" in a directory part of the name —
 * the port of a `--scoped` source registry, `registry.example.com:5000/ns/app:1` — becomes "_"
 * (`registry.example.com_5000/ns/app:1`, as images.yaml's keep-path naming), since a repository
 * path cannot hold a ":".
 *
 * `--dest oci` differs from skopeo's (which turns the first `/` of the joined name into a `:`, so
 * that only a one-element relative DESTINATION works): airlock writes every image into ONE layout
 * at DESTINATION, named (`org.opencontainers.image.ref.name`) by the suffix plus --append-suffix —
 * the same result as skopeo's for `--dest oci layout`, and a working one for any other path.
 */
import { posix } from "node:path";
import { AirlockError } from "../errors.js";
import { parseImageName } from "../transports/index.js";
import { isValidOciRefName } from "../transports/oci/reference.js";
import type { ImageReference, SystemContext } from "../transports/types.js";

/** The kinds of destination `sync` writes (`--dest`). */
export type SyncDestinationTransport = "docker" | "dir" | "oci";

/** One image a sync copies: what to read and how skopeo names it at the destination. */
export interface SyncImage {
  /** The image to read. */
  source: ImageReference;
  /** Settings for reading it (a YAML source's per-registry credentials and TLS settings). */
  sourceContext?: SystemContext;
  /**
   * skopeo's destination suffix, before `--scoped` is applied: the fully-qualified Docker
   * reference of a registry image, the path below SOURCE of a `dir:` image, the name of an OCI
   * layout entry.
   */
  suffix: string;
  /**
   * airlock's per-repository destination (`destination:` in the sync YAML): the name under
   * DESTINATION, tag or digest included (e.g. `tools/busybox:1.0`), used as it is — neither
   * `--scoped` nor the base-name rule applies to it. `--append-suffix` still does.
   */
  name?: string;
}

/** How destination names are formed: `--dest`, DESTINATION, `--scoped`, `--append-suffix`. */
export interface SyncNaming {
  /** `--dest`: the transport of every destination. */
  transport: SyncDestinationTransport;
  /** The DESTINATION argument: a registry with an optional path, a directory, or an OCI layout. */
  destination: string;
  /** `--scoped`: keep the whole suffix instead of its last element. */
  scoped?: boolean;
  /** `--append-suffix`: appended to every destination name (after the tag). */
  appendSuffix?: string;
}

/** Go's `path.Clean`: the shortest equivalent path, "." for an empty one, no trailing slash. */
export function goClean(p: string): string {
  if (p === "") return ".";
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/** Go's `path.Base`: the last element, trailing slashes removed; "." for "", "/" for a root. */
export function goBase(p: string): string {
  if (p === "") return ".";
  const trimmed = p.replace(/\/+$/, "");
  if (trimmed === "") return "/";
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** Go's `path.Join`: the non-empty elements joined with "/" and cleaned; "" when all are empty. */
export function goJoin(...elements: string[]): string {
  const parts = elements.filter((e) => e !== "");
  return parts.length === 0 ? "" : goClean(parts.join("/"));
}

/** The name of `image` below DESTINATION, before --append-suffix: its `name`, or the (base of the) suffix. */
export function syncRelativeName(image: Pick<SyncImage, "suffix" | "name">, scoped: boolean): string {
  if (image.name !== undefined) return image.name;
  return scoped ? image.suffix : goBase(image.suffix);
}

/**
 * The destination of `image` as a transport-qualified name (`docker://…`, `dir:…`, `oci:…`), by
 * skopeo's rule (see this module's comment). No I/O.
 */
export function syncDestinationName(image: Pick<SyncImage, "suffix" | "name">, naming: SyncNaming): string {
  const rel = syncRelativeName(image, naming.scoped ?? false);
  const append = naming.appendSuffix ?? "";
  switch (naming.transport) {
    case "docker": {
      // A ":" cannot appear in a repository path: a scoped source registry with a port
      // (`registry:5000/ns/app:1`) becomes one component with "_" (skopeo fails on such a name).
      const parts = rel.split("/");
      const last = parts.pop() as string;
      return `docker://${goJoin(naming.destination, ...parts.map((p) => p.replace(/:/g, "_")), last)}${append}`;
    }
    case "dir":
      return `dir:${goJoin(naming.destination, rel)}${append}`;
    case "oci": {
      const name = goClean(rel).replace(/^\/+/, "") + append;
      return `oci:${naming.destination}:${name}`;
    }
  }
}

/**
 * Parses the destination of `image` into a reference. Throws ERR_INVALID_REFERENCE when the name
 * is not valid for the destination transport, saying which source image it came from.
 */
export function syncDestination(image: SyncImage, naming: SyncNaming): ImageReference {
  if (naming.transport === "oci" && naming.destination.includes(":")) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `the OCI layout path ${JSON.stringify(naming.destination)} contains a ":", which oci: references cannot express; choose a path without one`);
  }
  const name = syncDestinationName(image, naming);
  if (naming.transport === "oci") {
    const refName = name.slice(`oci:${naming.destination}:`.length);
    if (!isValidOciRefName(refName)) {
      throw new AirlockError("ERR_INVALID_REFERENCE", `cannot name ${image.source} in the OCI layout ${naming.destination}: ${JSON.stringify(refName)} is not a valid image name; check --append-suffix or the destination name`);
    }
  }
  try {
    return parseImageName(name);
  } catch (err) {
    const code = err instanceof AirlockError ? err.code : "ERR_INVALID_REFERENCE";
    throw new AirlockError(code, `cannot name the destination of ${image.source} (${name}): ${(err as Error).message}`, { cause: err });
  }
}
