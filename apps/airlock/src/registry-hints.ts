/**
 * What registry error messages name for a command's credentials and TLS flags: the flags of the
 * side (`--src-*`, `--dest-*` or none) the running command really has, in place of @airlock/core's
 * generic `--creds` and `--tls-verify=false`.
 */
import type { RegistryHints, SystemContext } from "@airlock/core";

type Opts = Record<string, unknown>;

/**
 * The hints for the docker flags added with `addDockerFlags(cmd, prefix)`: the credentials flag the
 * user gave (or the one to give), `--PREFIXtls-verify=false` and `--PREFIXcert-dir DIR`.
 */
export function flagHints(opts: Opts, prefix: "" | "src-" | "dest-"): RegistryHints {
  const p = `--${prefix}`;
  const get = (name: string) => opts[camel(`${prefix}${name}`)];
  let credentials: string;
  const legacy = prefix === "src-" ? "screds" : prefix === "dest-" ? "dcreds" : undefined;
  if (typeof get("creds") === "string") credentials = `${p}creds`;
  else if (legacy !== undefined && typeof opts[legacy] === "string") credentials = `--${legacy}`;
  else if (typeof get("username") === "string") credentials = `${p}username/${p}password`;
  // commander reads a bare `--no-creds` as the negation of `--creds`.
  else if (get("noCreds") === true || (prefix === "" && get("creds") === false)) credentials = `${p}creds USERNAME:PASSWORD in place of ${p}no-creds`;
  else credentials = `${p}creds USERNAME:PASSWORD (or ${p}registry-token)`;
  return { credentials, tlsVerify: `${p}tls-verify=false`, certDir: `${p}cert-dir DIR` };
}

/** `ctx` with the hints of `prefix`'s flags on its registry settings (a new object; `ctx` is not changed). */
export function withFlagHints(ctx: SystemContext, opts: Opts, prefix: "" | "src-" | "dest-"): SystemContext {
  return { ...ctx, docker: { ...ctx.docker, hints: flagHints(opts, prefix) } };
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
