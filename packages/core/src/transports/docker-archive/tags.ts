/**
 * `list-tags` of a `docker save` archive, as skopeo 1.9's `list-tags docker-archive:PATH`: the
 * RepoTags of every image of manifest.json, in order, each normalised (`docker.io/library/…`), and
 * `@N` for an image without tags. Any reference after the path is ignored, as in skopeo.
 * @see https://github.com/containers/skopeo/blob/main/cmd/skopeo/list_tags.go
 */
import type { SystemContext } from "../types.js";
import { DockerArchiveReader } from "./reader.js";
import type { DockerArchiveReference } from "./reference.js";

/** The tags of every image in the archive `ref` names (`@N` for an untagged image N). */
export async function listDockerArchiveTags(ref: DockerArchiveReference, ctx: SystemContext = {}): Promise<string[]> {
  const reader = await DockerArchiveReader.open(ref.path, { tmpDir: ctx.tmpDir, what: `docker-archive:${ref.path}` });
  try {
    const tags: string[] = [];
    for (let i = 0; i < reader.items.length; i++) {
      const refs = reader.repoTags(i);
      if (refs.length === 0) tags.push(`@${i}`);
      for (const r of refs) tags.push(r.toString());
    }
    return tags;
  } finally {
    await reader.close();
  }
}
