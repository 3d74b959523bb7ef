/**
 * Names at the destination: how a bundle name (`docker.io/library/busybox:1.36`, or an `as:` name
 * such as `team/app:1.0`) becomes a reference in the offline registry given to
 * `airlock import --to REGISTRY[/PREFIX]`.
 */
import { AirlockError, DockerReference, isValidDomain, registryPathComponent, splitBundleName } from "@airlock/core";

/**
 * How bundle names map to names in the offline registry (`import --to REGISTRY[/PREFIX]`):
 * `keep-path` puts the whole source name under the prefix (REGISTRY/PREFIX/docker.io/library/busybox);
 * `strip-registry` drops the source registry (REGISTRY/PREFIX/library/busybox).
 */
export type NamingMode = "keep-path" | "strip-registry";

/** The naming modes, in documentation order. */
export const NAMING_MODES: readonly NamingMode[] = ["keep-path", "strip-registry"];

const q = (s: string): string => JSON.stringify(s);

export { registryPathComponent, splitBundleName } from "@airlock/core";

/**
 * The reference an image gets at the destination `target` (`REGISTRY[/PREFIX]`, e.g.
 * `registry.local:5000/mirror`):
 * - `keep-path`: TARGET/BUNDLE_NAME — `registry.local:5000/mirror/docker.io/library/busybox:1.36`;
 *   a source registry with a port becomes one path component with `_` for `:`
 *   (`registry.example.com:5000/team/api` → `…/mirror/registry.example.com_5000/team/api`),
 *   since a `:` cannot appear in a repository path;
 * - `strip-registry`: TARGET/BUNDLE_NAME without its source registry — `…/mirror/library/busybox:1.36`.
 * An `as:` name has no source registry, so both modes give TARGET/AS_NAME.
 * Throws ERR_INVALID_ARGUMENT when `target` does not start with a registry host, or
 * ERR_INVALID_REFERENCE when the result is not a valid reference (e.g. longer than 255 characters).
 */
export function destinationName(bundleName: string, naming: NamingMode, target: string): DockerReference {
  const base = target.replace(/\/+$/, "");
  const slash = base.indexOf("/");
  const host = slash < 0 ? base : base.slice(0, slash);
  if (host === "" || !isValidDomain(host) || !(/[.:]/.test(host) || host === "localhost")) {
    throw new AirlockError(
      "ERR_INVALID_ARGUMENT",
      `invalid destination ${q(target)}: expected REGISTRY[/PREFIX] starting with a registry host (with a "." or a ":PORT", or localhost), e.g. registry.local:5000/mirror`,
    );
  }
  const { registry, rest: path } = splitBundleName(bundleName);
  const rest = naming === "strip-registry" || registry === undefined ? path : `${registryPathComponent(registry)}/${path}`;
  try {
    return DockerReference.parse(`${base}/${rest}`);
  } catch (err) {
    throw new AirlockError("ERR_INVALID_REFERENCE", `cannot name ${q(bundleName)} under ${q(target)} (${naming}): ${(err as Error).message}`, { cause: err });
  }
}
