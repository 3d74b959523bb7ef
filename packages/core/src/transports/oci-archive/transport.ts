/**
 * The `oci-archive:` transport: a tar archive of an OCI image layout, `oci-archive:PATH[:REFERENCE]`
 * (containers-transports(5)); `oci-archive:PATH:@N` reads the N-th index.json entry (beyond skopeo).
 */
import type { Transport } from "../types.js";
import { OciArchiveReference } from "./reference.js";

/** The `oci-archive:` transport (tar of an OCI image layout). */
export const ociArchiveTransport: Transport = {
  name: "oci-archive",
  parseReference: (spec: string) => OciArchiveReference.parse(spec),
};
