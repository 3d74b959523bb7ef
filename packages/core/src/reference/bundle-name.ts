/**
 * A bundle's image names (`docker.io/library/busybox:1.36`, `127.0.0.1:5000/team/app:1`, or an
 * `as:` name such as `team/app:1.0`) split at their registry host. `airlock import` and
 * `airlock serve` map names with these two functions, so an image is served under the name import
 * would give it.
 */

/**
 * Splits a bundle name at its registry host, if it starts with one. The rule is Docker's: the first
 * `/`-separated component is a host when it contains `.` or `:` or is `localhost` (and no `@`).
 * Fully-qualified bundle names always start with a host; `as:` names never do.
 */
export function splitBundleName(bundleName: string): { registry: string | undefined; rest: string } {
  const slash = bundleName.indexOf("/");
  const first = slash < 0 ? "" : bundleName.slice(0, slash);
  const isHost = slash > 0 && (/[.:]/.test(first) || first === "localhost") && !first.includes("@");
  return isHost ? { registry: first, rest: bundleName.slice(slash + 1) } : { registry: undefined, rest: bundleName };
}

/**
 * A registry host as one repository path component: lowercase, `:` (before a port) as `_`, which
 * no host name contains. `docker.io` → `docker.io`, `Registry.example.com:5000` → `registry.example.com_5000`.
 */
export function registryPathComponent(host: string): string {
  return host.toLowerCase().replace(/:/g, "_");
}
