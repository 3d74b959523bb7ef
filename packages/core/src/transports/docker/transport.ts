/**
 * The `docker` transport: images in registries speaking the OCI distribution API.
 */
import type { Transport } from "../types.js";
import { DockerImageReference } from "./reference.js";

/** The `docker://` transport object, registered by `transports/all.ts`. */
export const dockerTransport: Transport = {
  name: "docker",
  parseReference: (spec: string) => DockerImageReference.parse(spec),
};
