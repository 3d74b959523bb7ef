/**
 * The `docker-daemon:` transport: images of a Docker Engine, read with `docker save` and written
 * with `docker load` over the Engine API (containers-transports(5)).
 */
import type { Transport } from "../types.js";
import { DockerDaemonReference } from "./reference.js";

/** The `docker-daemon:` transport (`docker-daemon:NAME:TAG`, `NAME@DIGEST`, `sha256:ID`). */
export const dockerDaemonTransport: Transport = {
  name: "docker-daemon",
  parseReference: (spec: string) => DockerDaemonReference.parse(spec),
};
