/**
 * Repository operations of the docker transport for the CLI verbs that are not copies:
 * `list-tags`, `delete`, and the `RepoTags` of `inspect`.
 */
import { digestOf } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { DockerReference } from "../../reference/docker.js";
import { RegistryClient, type RegistryClientOptions } from "../../registry/client.js";
import { RegistryError } from "../../registry/errors.js";
import { resolveRegistryEndpoints } from "../../registry/registries-conf.js";
import type { SystemContext } from "../types.js";
import { DockerImageReference } from "./reference.js";

/**
 * Parses `docker://NAME` for `list-tags`: a repository, without tag or digest (skopeo's
 * `parseDockerRepositoryReference`). Throws ERR_INVALID_REFERENCE otherwise.
 */
export function parseDockerRepository(name: string): DockerReference {
  if (!name.startsWith("docker://")) {
    throw new AirlockError("ERR_INVALID_REFERENCE", `docker: image reference ${name} does not start with docker://`);
  }
  const ref = DockerReference.parse(name.slice("docker://".length));
  if (ref.tag !== undefined || ref.digest !== undefined) {
    throw new AirlockError("ERR_INVALID_REFERENCE", `No tag or digest allowed in reference ${JSON.stringify(name)}: list-tags takes a repository, e.g. docker://${ref.withoutTagOrDigest().familiarString()}`);
  }
  return ref;
}

function dockerRef(ref: DockerReference | DockerImageReference): DockerReference {
  return ref instanceof DockerImageReference ? ref.ref : ref;
}

/** Options of the repository operations. */
export interface RepositoryOperationOptions extends RegistryClientOptions {
  /** Tags per page when listing (`?n=`). */
  pageSize?: number;
  signal?: AbortSignal;
}

/**
 * Lists every tag of the repository `ref` names (its tag or digest is ignored), following
 * pagination. skopeo's `list-tags` prints `{"Repository": ref.name, "Tags": tags}`. Throws
 * ERR_IMAGE_NOT_FOUND for an unknown repository.
 */
export async function listTags(ref: DockerReference | DockerImageReference, ctx: SystemContext = {}, options: RepositoryOperationOptions = {}): Promise<string[]> {
  const [primary] = await resolveRegistryEndpoints(dockerRef(ref), ctx.docker ?? {}, "use");
  const r = primary?.ref ?? dockerRef(ref);
  const client = new RegistryClient(r.domain, primary?.ctx ?? ctx.docker ?? {}, options);
  try {
    const list = { ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }), ...(options.signal ? { signal: options.signal } : {}) };
    return await client.repository(r.path, "pull").listTags(list);
  } finally {
    await client.close();
  }
}

/**
 * The tags for `inspect`'s `RepoTags`: like {@link listTags}, but a registry that refuses tag
 * listing (DENIED, as ECR does, or a plain 404 "page not found", as public.ecr.aws does) yields []
 * and a warning instead of an error, as in skopeo.
 */
export async function inspectRepoTags(
  ref: DockerReference | DockerImageReference,
  ctx: SystemContext = {},
  options: RepositoryOperationOptions & { onWarning?: (message: string) => void } = {},
): Promise<string[]> {
  try {
    return await listTags(ref, ctx, options);
  } catch (err) {
    const tolerated = err instanceof RegistryError && (err.code === "ERR_DENIED" || (err.status === 404 && err.registryCode === undefined));
    if (!tolerated) throw err;
    options.onWarning?.(`Registry disallows tag list retrieval; skipping (${err.message})`);
    return [];
  }
}

/**
 * Deletes the image `ref` names from its registry (skopeo `delete`): resolves the tag to the
 * manifest digest, then deletes the manifest by digest — which removes every tag pointing at it.
 * Returns the deleted digest. Throws ERR_IMAGE_NOT_FOUND when there is no such image.
 */
export async function deleteImage(ref: DockerImageReference, ctx: SystemContext = {}, options: RepositoryOperationOptions = {}): Promise<string> {
  const [primary] = await resolveRegistryEndpoints(ref.ref, ctx.docker ?? {}, "push");
  const r = primary?.ref ?? ref.ref;
  const client = new RegistryClient(r.domain, primary?.ctx ?? ctx.docker ?? {}, options);
  try {
    const repo = client.repository(r.path, "delete");
    let digest: string | undefined = r.digest;
    if (digest === undefined) {
      const raw = await repo.getManifest(ref.tagOrDigest, options.signal);
      digest = digestOf(raw.bytes);
    }
    await repo.deleteManifest(digest, options.signal);
    return digest;
  } finally {
    await client.close();
  }
}
