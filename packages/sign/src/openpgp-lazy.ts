/**
 * openpgp.js, loaded on first use: it is large, and most airlock runs (a copy with a default
 * policy of insecureAcceptAnything, an export, a sync) never sign or verify anything. Loading it
 * only when a key or a signature is handled keeps every other command's start-up short.
 */
import type * as OpenPGP from "openpgp";

let loaded: typeof OpenPGP | undefined;

/** The openpgp.js module, imported the first time it is needed. */
export async function pgp(): Promise<typeof OpenPGP> {
  loaded ??= await import("openpgp");
  return loaded;
}

/** The openpgp.js module when a caller already awaited {@link pgp} (for synchronous helpers). */
export function pgpLoaded(): typeof OpenPGP {
  if (!loaded) throw new Error("internal error: openpgp.js used before it was loaded");
  return loaded;
}
