/**
 * A registry store in an OCI image layout directory — the store `airlock serve --root DIR` uses.
 *
 * Blobs and manifests are the layout's `blobs/<alg>/<hex>` (global, content-addressed, stored
 * once); tags are index.json entries named `REPOSITORY:TAG`; what a repository holds beyond its
 * tags is in `repositories/` (see records.ts). Upload files live in `.uploads/`, on the same file
 * system, and a verified upload becomes a blob by a rename. A layout written by `airlock copy …
 * oci:DIR:REPOSITORY:TAG`, skopeo or umoci is servable as it is.
 *
 * Manifests pushed only by digest (an index's children, referrers) are referenced from the
 * repository records, not from index.json: a layout garbage collector that knows only index.json
 * (`umoci gc`) would remove them. Blobs are never deleted by the registry (they may be shared).
 */
import { promises as fs } from "node:fs";
import { dirname, join } from "node:path";
import { type Descriptor, type Digest, type IndexJSON, OciLayout, REF_NAME_ANNOTATION, refName } from "@airlock/core";
import { parseRefName, refNameOf, refNamesOf } from "../names.js";
import { layoutContent } from "./content.js";
import { LayoutContentStore } from "./read.js";
import { RepositoryRecordFiles } from "./records.js";
import type { PushedManifest, WritableRegistryStore } from "./types.js";

/** The directory, under the layout's root, that holds upload files. */
export const UPLOADS_DIR = ".uploads";

/** Options of {@link LayoutRegistryStore.open}. */
export interface OpenLayoutStoreOptions {
  /** Create the layout when the directory is missing or empty (default true). */
  create?: boolean;
}

/** A readable and writable registry store in an OCI image layout directory. */
export class LayoutRegistryStore extends LayoutContentStore implements WritableRegistryStore {
  /** The layout. */
  readonly layout: OciLayout;
  /** The directory for upload files. */
  readonly uploadDir: string;
  private readonly records: RepositoryRecordFiles;
  /** index.json changes waiting for the write in progress; applied together in the next one. */
  private indexQueue: { change: (index: IndexJSON) => IndexJSON | undefined; resolve: () => void; reject: (err: unknown) => void }[] | undefined;

  private constructor(layout: OciLayout, records: RepositoryRecordFiles) {
    super(layoutContent(layout), records);
    this.layout = layout;
    this.uploadDir = join(layout.dir, UPLOADS_DIR);
    this.records = records;
  }

  /**
   * Opens (and with `create`, the default, creates) the layout at `dir` as a registry store.
   * Throws ERR_INVALID_LAYOUT when `dir` is neither a layout nor empty.
   */
  static async open(dir: string, options: OpenLayoutStoreOptions = {}): Promise<LayoutRegistryStore> {
    const create = options.create ?? true;
    const layout = await OciLayout.open(dir, { create });
    // A new layout gets its oci-layout file and an empty index.json at once, so it is valid
    // (and readable by other tools) before anything is pushed.
    if (create) await layout.updateIndex((index) => index);
    return new LayoutRegistryStore(layout, new RepositoryRecordFiles(layout.dir));
  }

  /**
   * Changes index.json under the layout's lock. Changes requested while an update is in progress
   * are applied together in the next one, so concurrent pushes cost few rewrites of index.json.
   */
  private changeIndex(change: (index: IndexJSON) => IndexJSON | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let queue = this.indexQueue;
      const start = queue === undefined;
      if (!queue) {
        queue = [];
        this.indexQueue = queue;
      }
      queue.push({ change, resolve, reject });
      if (start) void this.drainIndexQueue(queue);
    });
  }

  private async drainIndexQueue(queue: NonNullable<LayoutRegistryStore["indexQueue"]>): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0);
      try {
        await this.layout.updateIndex((index) => {
          let current = index;
          let changed = false;
          for (const p of batch) {
            const next = p.change(current);
            if (next !== undefined) {
              current = next;
              changed = true;
            }
          }
          return changed ? current : undefined;
        });
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      } finally {
        this.index.invalidate();
      }
    }
    this.indexQueue = undefined;
  }

  async commitBlobFile(repository: string, path: string, digest: Digest): Promise<void> {
    const target = this.layout.blobPath(digest);
    try {
      if ((await this.content.blobSize(digest)) === undefined) {
        await fs.mkdir(dirname(target), { recursive: true });
        await fs.rename(path, target);
      }
    } finally {
      await fs.rm(path, { force: true });
    }
    await this.records.update(repository, (r) => {
      r.blobs.add(digest);
    });
  }

  async mountBlob(repository: string, digest: Digest, from: string): Promise<boolean> {
    if ((await this.statBlob(from, digest)) === undefined) return false;
    await this.records.update(repository, (r) => {
      r.blobs.add(digest);
    });
    return true;
  }

  async putManifest(repository: string, manifest: PushedManifest, tag?: string): Promise<void> {
    if (!(await this.layout.hasBlob({ digest: manifest.digest, size: manifest.bytes.length }))) {
      await this.layout.writeBlobBytes(manifest.bytes, manifest.digest);
    }
    await this.records.update(repository, (r) => {
      r.manifests[manifest.digest] = manifest.mediaType;
    });
    if (tag === undefined) return;
    const entry: Descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length };
    if (manifest.artifactType) entry.artifactType = manifest.artifactType;
    entry.annotations = { [REF_NAME_ANNOTATION]: refNameOf(repository, tag) };
    const names = new Set(refNamesOf(repository, tag));
    await this.changeIndex((index) => ({ ...index, manifests: [...index.manifests.filter((m) => !names.has(refName(m) ?? "")), entry] }));
  }

  async deleteManifest(repository: string, digest: Digest): Promise<boolean> {
    const present = (await this.index.manifestMediaType(repository, digest)) !== undefined;
    if (!present) return false;
    await this.records.update(repository, (r) => {
      delete r.manifests[digest];
    });
    await this.changeIndex((index) => removeEntries(index, (m) => m.digest === digest && parseRefName(refName(m) ?? "")?.repository === repository));
    return true;
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    const desc = await this.index.resolveTag(repository, tag);
    if (!desc) return false;
    // The manifest stays in the repository, reachable by digest.
    await this.records.update(repository, (r) => {
      r.manifests[desc.digest] ??= desc.mediaType;
    });
    const names = new Set(refNamesOf(repository, tag));
    await this.changeIndex((index) => removeEntries(index, (m) => names.has(refName(m) ?? "")));
    return true;
  }

}

function removeEntries(index: IndexJSON, drop: (d: Descriptor) => boolean): IndexJSON | undefined {
  const manifests = index.manifests.filter((m) => !drop(m));
  return manifests.length === index.manifests.length ? undefined : { ...index, manifests };
}
