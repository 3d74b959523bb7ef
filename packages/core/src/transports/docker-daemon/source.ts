/**
 * Reads an image of a Docker daemon: `GET /images/{name}/json` (does it exist? which ID?), then
 * `GET /images/{id}/get`, the `docker save` tar, spooled into ONE temporary file under the
 * SystemContext's tmpDir (default os.tmpdir()) and read with the docker-archive reader, as
 * containers/image does. The spool is needed: `docker save` writes `manifest.json` last, so the
 * image's layers cannot be told apart before the whole stream has arrived. The file is removed by
 * {@link DockerDaemonImageSource.close}.
 * @see https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Image/operation/ImageGet
 */
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Digest } from "../../digest.js";
import { AirlockError } from "../../errors.js";
import { ioError } from "../../layout/files.js";
import type { Descriptor, Manifest } from "../../manifest.js";
import { DockerArchiveReader } from "../docker-archive/reader.js";
import { DockerArchiveImageSource } from "../docker-archive/source.js";
import { TarFile } from "../docker-archive/tarfile.js";
import type { BlobReader, GetBlobOptions, ImageSource, SystemContext } from "../types.js";
import { DaemonClient, readText } from "./client.js";
import type { DockerDaemonReference } from "./reference.js";

/** Options of {@link DockerDaemonImageSource.open}. */
export interface DaemonSourceOptions {
  signal?: AbortSignal;
  /** The environment DOCKER_HOST and friends are read from (default process.env). */
  env?: Record<string, string | undefined>;
}

/** An {@link ImageSource} over an image saved from a Docker daemon (a docker-archive source over the spooled tar). */
export class DockerDaemonImageSource implements ImageSource {
  readonly reference: DockerDaemonReference;
  /** The image ID the daemon reported (the digest of the config). */
  readonly imageID: Digest;
  private readonly archive: DockerArchiveImageSource;
  private readonly spoolDir: string;

  private constructor(reference: DockerDaemonReference, imageID: Digest, archive: DockerArchiveImageSource, spoolDir: string) {
    this.reference = reference;
    this.imageID = imageID;
    this.archive = archive;
    this.spoolDir = spoolDir;
  }

  /**
   * Saves the image from the daemon into a temporary file and opens it. Throws ERR_IMAGE_NOT_FOUND
   * when the daemon has no such image, ERR_NETWORK when it cannot be reached.
   */
  static async open(ref: DockerDaemonReference, ctx: SystemContext = {}, options: DaemonSourceOptions = {}): Promise<DockerDaemonImageSource> {
    const what = String(ref);
    const client = await DaemonClient.open(ctx, what, options.env);
    let spoolDir: string | undefined;
    try {
      const name = encodeURI(ref.daemonName());
      const info = await client.request("GET", `/images/${name}/json`, { signal: options.signal });
      if (info.statusCode !== 200) throw await client.responseError(info, "inspecting the image", "ERR_IO");
      const id = parseImageID(await readText(info.body, 4 * 1024 * 1024), what);
      try {
        spoolDir = await fs.mkdtemp(join(ctx.tmpDir ?? tmpdir(), "airlock-daemon-"));
      } catch (cause) {
        throw ioError(`${what}: cannot create a temporary directory under ${ctx.tmpDir ?? tmpdir()} for docker save (choose another with --tmpdir)`, cause);
      }
      const file = join(spoolDir, "image.tar");
      const res = await client.request("GET", `/images/${id}/get`, { signal: options.signal });
      if (res.statusCode !== 200) throw await client.responseError(res, "docker save", "ERR_IO");
      try {
        const out = await fs.open(file, "wx");
        await pipeline(res.body, out.createWriteStream({ highWaterMark: 1024 * 1024 }), options.signal ? { signal: options.signal } : {});
      } catch (cause) {
        res.body.destroy();
        const e = client.connectionError(cause);
        if (e instanceof AirlockError && e.code === "ERR_ABORTED") throw e;
        throw ioError(`${what}: saving the image from the Docker daemon at ${client.endpoint.host} into ${file} failed`, cause);
      }
      const tar = await TarFile.open(file, { what: `${what} (docker save output)`, signal: options.signal });
      let reader: DockerArchiveReader;
      try {
        reader = await DockerArchiveReader.read(tar);
      } catch (err) {
        await tar.close();
        throw err;
      }
      // docker save of one image writes one manifest.json item: the only image is the one asked for.
      const archive = await DockerArchiveImageSource.fromReader(ref, reader, {}, { closeReader: true }).catch(async (err: unknown) => {
        await reader.close();
        throw err;
      });
      if (archive.image.configDigest !== id) {
        await archive.close();
        throw new AirlockError("ERR_DIGEST_MISMATCH", `${what}: the Docker daemon saved an image whose config is ${archive.image.configDigest}, not the image ID ${id} it reported; try again`);
      }
      return new DockerDaemonImageSource(ref, id, archive, spoolDir);
    } catch (err) {
      if (spoolDir) await fs.rm(spoolDir, { recursive: true, force: true }).catch(() => {});
      throw err;
    } finally {
      await client.close();
    }
  }

  /** The Docker v2s2 manifest containers/image generates for the saved image (uncompressed layers named by diff ID). */
  getManifest(digest?: Digest, signal?: AbortSignal): Promise<Manifest> {
    return this.archive.getManifest(digest, signal);
  }

  /** The config's bytes, or a layer as an uncompressed tar, read from the spooled file. */
  getBlob(desc: Descriptor, options?: GetBlobOptions): Promise<BlobReader> {
    return this.archive.getBlob(desc, options);
  }

  /** Closes the spooled file and removes it. */
  async close(): Promise<void> {
    await this.archive.close();
    await fs.rm(this.spoolDir, { recursive: true, force: true }).catch(() => {});
  }
}

/** The `Id` of an image inspect response. */
function parseImageID(text: string, what: string): Digest {
  let id: unknown;
  try {
    id = (JSON.parse(text) as { Id?: unknown }).Id;
  } catch (cause) {
    throw new AirlockError("ERR_IO", `${what}: the Docker daemon's image inspect answer is not JSON`, { cause });
  }
  if (typeof id !== "string" || !/^sha256:[0-9a-f]{64}$/.test(id)) throw new AirlockError("ERR_IO", `${what}: the Docker daemon reported an image ID ${JSON.stringify(id)}, not sha256:<64 hex digits>`);
  return id as Digest;
}
