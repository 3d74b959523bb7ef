/** airlock's version, as printed by `airlock --version` and recorded in bundles. */
export const VERSION = "0.1.0";
