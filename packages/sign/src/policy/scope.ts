/**
 * Policy scopes: how an image is looked up in policy.json, from the most specific scope to the
 * default (containers/image `PolicyConfigurationIdentity` and `PolicyConfigurationNamespaces` of
 * each transport, and `requirementsForImageRef`):
 *
 * - `docker`, `docker-daemon` (and the old `atomic`): the fully expanded reference
 *   (`host[:port]/ns/repo:tag` or `…@digest`), then the repository, each parent namespace, the
 *   host, then wildcard domains (`*.example.com`, `*.com`, without the port);
 * - `dir`, `oci`, `oci-archive`, `sif`: the absolute, symlink-free path, then each parent directory
 *   (not `/`);
 * - any other transport: the exact identity only;
 * - then the transport's `""` scope, then the policy's `default`.
 *
 * @see https://github.com/containers/image/blob/main/docker/policyconfiguration/naming.go
 * @see https://github.com/containers/image/blob/main/signature/policy_eval.go
 */
import { realpath } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { AirlockError, DockerReference } from "@airlock/core";
import type { Policy, PolicyRequirement } from "./config.js";

/** Transports whose scopes are Docker references. */
export const DOCKER_SCOPED_TRANSPORTS: ReadonlySet<string> = new Set(["docker", "docker-daemon", "atomic"]);
/** Transports whose scopes are absolute paths. */
export const PATH_SCOPED_TRANSPORTS: ReadonlySet<string> = new Set(["dir", "oci", "oci-archive", "sif"]);

/**
 * The policy identity of a Docker reference: `name:tag` or `name@digest`, normalised, with
 * `:latest` added when it has neither (as the docker transport does). Throws ERR_INVALID_REFERENCE
 * for a bad reference, ERR_INVALID_ARGUMENT for one with both a tag and a digest.
 */
export function dockerPolicyIdentity(reference: string | DockerReference): string {
  const ref = (typeof reference === "string" ? DockerReference.parse(reference) : reference).withDefaultTag();
  if (ref.tag !== undefined && ref.digest !== undefined) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `Docker reference ${ref.toString()} has both a tag and a digest; a policy scope needs one of them`);
  }
  return ref.toString();
}

/**
 * The parent namespaces of a Docker reference, most specific first: repository, namespaces, host,
 * then `*.`-wildcard domains without the port (naming.go `DockerReferenceNamespaces`).
 */
export function dockerPolicyNamespaces(reference: string | DockerReference): string[] {
  const ref = typeof reference === "string" ? DockerReference.parse(reference) : reference;
  const out: string[] = [];
  let name = ref.name;
  for (;;) {
    out.push(name);
    const slash = name.lastIndexOf("/");
    if (slash < 0) break;
    name = name.slice(0, slash);
  }
  const colon = name.indexOf(":");
  if (colon >= 0) name = name.slice(0, colon);
  for (;;) {
    const dot = name.indexOf(".");
    if (dot < 0) break;
    name = name.slice(dot + 1);
    out.push(`*.${name}`);
  }
  return out;
}

/** The parent directories of an absolute path, most specific first, without `/` (dirReference.PolicyConfigurationNamespaces). */
export function pathPolicyNamespaces(path: string): string[] {
  const out: string[] = [];
  let p = path;
  for (;;) {
    const slash = p.lastIndexOf("/");
    if (slash <= 0) break;
    p = p.slice(0, slash);
    out.push(p);
  }
  return out;
}

/**
 * Resolves `path` to the absolute, symlink-free form policy scopes use for `dir:`/`oci:` images
 * (containers/image explicitfilepath): the real path of the longest existing ancestor, with the
 * rest appended. A path that does not exist yet (a copy destination) resolves through its parent.
 */
export async function resolvePolicyPath(path: string): Promise<string> {
  const abs = resolve(path);
  try {
    return await realpath(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const parent = dirname(abs);
    if (parent === abs) return abs;
    const base = basename(abs);
    const resolvedParent = await resolvePolicyPath(parent);
    return resolvedParent === "/" ? `/${base}` : `${resolvedParent}/${base}`;
  }
}

/** The scopes to try for an image identity in `transport`, most specific first (without "" and the default). */
export function policyScopes(transport: string, identity: string): string[] {
  if (identity === "") return [];
  if (DOCKER_SCOPED_TRANSPORTS.has(transport)) {
    try {
      return [identity, ...dockerPolicyNamespaces(identity)];
    } catch {
      return [identity];
    }
  }
  if (PATH_SCOPED_TRANSPORTS.has(transport)) return [identity, ...pathPolicyNamespaces(identity)];
  return [identity];
}

/** The requirements that apply to an image, and which part of the policy they came from. */
export interface ScopedRequirements {
  /** Where the requirements are in the policy: `transports.docker["quay.io/ns"]`, `transports.dir[""]` or `default`. */
  scope: string;
  requirements: PolicyRequirement[];
}

/**
 * Selects the requirements for an image (policy_eval.go `requirementsForImageRef`): the first of
 * its {@link policyScopes} present under `transports[transport]`, else that transport's `""`, else
 * `default`. Only the most specific match applies.
 */
export function requirementsFor(policy: Policy, transport: string, identity: string): ScopedRequirements {
  const scopes = policy.transports.get(transport);
  if (scopes !== undefined) {
    for (const scope of [...policyScopes(transport, identity), ""]) {
      const requirements = scopes.get(scope);
      if (requirements !== undefined) return { scope: `transports.${transport}[${JSON.stringify(scope)}]`, requirements };
    }
  }
  return { scope: "default", requirements: policy.default };
}
