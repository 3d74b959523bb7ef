/**
 * The `containers-storage:` transport: the local image store of podman, buildah and CRI-O
 * (containers/storage), `containers-storage:[[DRIVER@]ROOT[+RUNROOT][:OPTIONS]]NAME|ID`
 * (containers-transports(5)).
 */
import type { Transport } from "../types.js";
import { StorageReference } from "./reference.js";

/** The `containers-storage:` transport (podman / buildah / CRI-O local storage). */
export const containersStorageTransport: Transport = {
  name: "containers-storage",
  parseReference: (spec: string) => StorageReference.parse(spec),
};
