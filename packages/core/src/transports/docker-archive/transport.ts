/**
 * The `docker-archive:` transport: a `docker save` tarball, `docker-archive:PATH[:NAME:TAG|:@N]`
 * (containers-transports(5)).
 */
import type { Transport } from "../types.js";
import { DockerArchiveReference } from "./reference.js";

/** The `docker-archive:` transport (`docker save` / `docker load` tarballs). */
export const dockerArchiveTransport: Transport = {
  name: "docker-archive",
  parseReference: (spec: string) => DockerArchiveReference.parse(spec),
};
