/**
 * The `oci:` transport: an OCI image layout directory, `oci:PATH[:REFERENCE]` or `oci:PATH:@N`
 * (containers-transports(5)).
 */
import type { Transport } from "../types.js";
import { OciReference } from "./reference.js";

/** The `oci:` transport (OCI image layout). */
export const ociTransport: Transport = {
  name: "oci",
  parseReference: (spec: string) => OciReference.parse(spec),
};
