/**
 * The one explicit map of transports and the one parser for `transport:reference` names, with
 * skopeo's grammar (containers-transports(5)): the transport name ends at the first colon.
 */
import { AirlockError } from "../errors.js";
import { DockerReference } from "../reference/docker.js";
import type { ImageReference, Transport } from "./types.js";

const transports = new Map<string, Transport>();

/** Registers a transport under its name. Called once per transport by `transports/all.ts`. */
export function registerTransport(t: Transport): void {
  transports.set(t.name, t);
}

/** Returns the transport registered under `name`, or undefined. */
export function getTransport(name: string): Transport | undefined {
  return transports.get(name);
}

/** The names of every registered transport, sorted. */
export function transportNames(): string[] {
  return [...transports.keys()].sort();
}

/**
 * Parses a transport-qualified image name such as `oci:/srv/layout:app`, `dir:/tmp/img` or
 * `docker://quay.io/org/app:1.0`. No I/O. Throws ERR_UNKNOWN_TRANSPORT or ERR_INVALID_REFERENCE
 * with a message that says what to type instead.
 */
export function parseImageName(name: string): ImageReference {
  const colon = name.indexOf(":");
  if (colon <= 0) {
    throw new AirlockError("ERR_INVALID_REFERENCE", `invalid image name ${JSON.stringify(name)}: expected TRANSPORT:REFERENCE, e.g. docker://${name || "busybox:latest"} or oci:/path/to/layout:${name || "name"} (transports: ${transportNames().join(", ")})`);
  }
  const tname = name.slice(0, colon);
  const t = transports.get(tname);
  if (!t) {
    // A registry reference without its transport ("127.0.0.1:5000/app:1", "quay.io/org/app:1.0", "busybox:1").
    const hint = isDockerReference(name) ? `; for a registry image write docker://${name}` : "";
    throw new AirlockError("ERR_UNKNOWN_TRANSPORT", `unknown transport ${JSON.stringify(tname)} in ${JSON.stringify(name)}${hint}: use one of ${transportNames().join(", ")}`);
  }
  return t.parseReference(name.slice(colon + 1));
}

function isDockerReference(name: string): boolean {
  try {
    DockerReference.parse(name);
    return true;
  } catch {
    return false;
  }
}
