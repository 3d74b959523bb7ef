/** The `dir:` transport: skopeo's directory layout, `dir:PATH` (containers-transports(5)). */
import type { Transport } from "../types.js";
import { DirReference } from "./reference.js";

/** The `dir:` transport (skopeo's one-image directory layout). */
export const dirTransport: Transport = {
  name: "dir",
  parseReference: (spec: string) => DirReference.parse(spec),
};
