/**
 * Applies a layer's tar to a directory as containers/storage's drivers do (pkg/archive
 * UnpackLayer): entries are created with their owner, mode and modification time; an existing path
 * is replaced unless both are directories; AUFS whiteouts (`.wh.NAME` deletes NAME,
 * `.wh..wh..opq` empties its directory of what earlier layers put there) are applied for vfs, or
 * stored in overlay's form (a 0:0 character device, and the `trusted.overlay.opaque` xattr) for
 * overlay. No path may lead out of the directory. Needs root: files belong to the layer's owners.
 * @see https://github.com/containers/storage/blob/main/pkg/archive/diff.go
 */
import { execFile } from "node:child_process";
import { createWriteStream, promises as fs } from "node:fs";
import { dirname, join, posix } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { extract, type Header } from "tar-stream";
import { AirlockError } from "../../errors.js";

const run = promisify(execFile);

const WHITEOUT_PREFIX = ".wh.";
const WHITEOUT_META_PREFIX = ".wh..wh.";
const WHITEOUT_OPAQUE = ".wh..wh..opq";

/** How whiteouts are stored: applied (vfs, whose layer directory is the whole file system) or kept as overlay marks. */
export type WhiteoutFormat = "apply" | "overlay";

/** What applying a layer found: the owners of its files (layers.json uidset/gidset). */
export interface ApplyResult {
  uids: number[];
  gids: number[];
}

/** Reports a path inside `root` for a tar entry name, or throws when it would lead outside. */
function target(root: string, name: string, what: string): { rel: string; path: string } {
  const rel = posix.normalize(`/${name}`).slice(1).replace(/\/$/, "");
  if (rel.startsWith("..")) throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: the entry ${JSON.stringify(name)} leads outside the layer`);
  return { rel, path: rel === "" ? root : join(root, rel) };
}

async function lstatOrUndefined(path: string) {
  try {
    return await fs.lstat(path);
  } catch {
    return undefined;
  }
}

async function drain(stream: Readable): Promise<void> {
  for await (const _ of stream) {
    // discard
  }
}

/**
 * Extracts the tar `input` into `root` (which exists). `what` names the layer in error messages.
 */
export async function applyLayer(input: Readable, root: string, format: WhiteoutFormat, what: string, xattrs?: ReadonlyMap<string, ReadonlyMap<string, Buffer>>): Promise<ApplyResult> {
  const realRoot = await fs.realpath(root);
  const uids = new Set<number>();
  const gids = new Set<number>();
  /** Paths this layer created, for opaque whiteouts. */
  const unpacked = new Set<string>();
  /** Directories whose times are set at the end (their children change them). */
  const dirTimes: { path: string; mtime: Date }[] = [];
  const checkedParents = new Set<string>();

  const ensureParent = async (path: string, rel: string): Promise<void> => {
    const parent = dirname(path);
    if (checkedParents.has(parent)) return;
    await fs.mkdir(parent, { recursive: true, mode: 0o755 });
    const real = await fs.realpath(parent);
    if (real !== realRoot && !real.startsWith(`${realRoot}/`)) {
      throw new AirlockError("ERR_INVALID_LAYOUT", `${what}: the entry ${JSON.stringify(rel)} leads outside the layer through a symbolic link`);
    }
    checkedParents.add(parent);
  };

  const handle = async (h: Partial<Header> & { name: string }, stream: Readable): Promise<void> => {
    const { rel, path } = target(root, h.name, what);
    const base = posix.basename(rel);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      await drain(stream);
      const dir = dirname(path);
      await ensureParent(path, rel);
      if (base === WHITEOUT_OPAQUE) {
        if (format === "overlay") {
          await setXattr(dir, "trusted.overlay.opaque", "y", what);
        } else {
          const relDir = posix.dirname(rel) === "." ? "" : posix.dirname(rel);
          for (const child of await fs.readdir(dir)) {
            const childRel = relDir === "" ? child : `${relDir}/${child}`;
            if (!unpacked.has(childRel)) await fs.rm(join(dir, child), { recursive: true, force: true });
          }
        }
        return;
      }
      if (base.startsWith(WHITEOUT_META_PREFIX)) return;
      const victim = join(dir, base.slice(WHITEOUT_PREFIX.length));
      if (format === "overlay") {
        await fs.rm(victim, { recursive: true, force: true });
        await mknod(victim, "c", 0, 0, what, "0");
        await fs.lchown(victim, h.uid ?? 0, h.gid ?? 0);
      } else {
        await fs.rm(victim, { recursive: true, force: true });
      }
      return;
    }
    if (rel !== "") await ensureParent(path, rel);
    const existing = await lstatOrUndefined(path);
    const type = h.type ?? "file";
    if (existing && !(existing.isDirectory() && type === "directory")) await fs.rm(path, { recursive: true, force: true });
    const mode = (h.mode ?? 0o644) & 0o7777;
    switch (type) {
      case "file":
      case "contiguous-file":
        await pipeline(stream, createWriteStream(path, { mode: 0o600 }));
        break;
      case "directory":
        await drain(stream);
        if (!existing) await fs.mkdir(path, { mode: 0o700 });
        break;
      case "symlink":
        await drain(stream);
        await fs.symlink(h.linkname ?? "", path);
        break;
      case "link": {
        await drain(stream);
        const { path: to } = target(root, h.linkname ?? "", what);
        await fs.link(to, path);
        break;
      }
      case "character-device":
      case "block-device":
      case "fifo":
        await drain(stream);
        await mknod(path, type === "fifo" ? "p" : type === "block-device" ? "b" : "c", h.devmajor ?? 0, h.devminor ?? 0, what);
        break;
      default:
        await drain(stream);
        return;
    }
    unpacked.add(rel);
    const uid = h.uid ?? 0;
    const gid = h.gid ?? 0;
    uids.add(uid);
    gids.add(gid);
    // A hard link's header applies to the inode it shares (as containers/storage does), unless that is a symbolic link.
    await fs.lchown(path, uid, gid);
    const mtime = h.mtime ?? new Date(0);
    if (type === "symlink" || (type === "link" && (await fs.lstat(path)).isSymbolicLink())) {
      await fs.lutimes(path, mtime, mtime);
      return;
    }
    await fs.chmod(path, mode);
    const attrs = xattrs?.get(h.name);
    // As containers/storage: a file system without extended attributes (ENOTSUP) is not an error.
    if (attrs) for (const [name, value] of attrs) await setXattr(path, name, value, what, true);
    if (type === "directory") dirTimes.push({ path, mtime });
    else await fs.utimes(path, mtime, mtime);
  };

  const ex = extract();
  ex.on("entry", (h, source, next) => {
    const stream = source as unknown as Readable;
    handle(h, stream).then(
      () => next(),
      (err: Error) => {
        stream.resume();
        next(err);
      },
    );
  });
  try {
    await pipeline(input, ex as unknown as NodeJS.WritableStream);
  } catch (err) {
    if (err instanceof AirlockError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EPERM") {
      throw new AirlockError("ERR_UNSUPPORTED", `${what}: cannot apply the layer: ${(err as Error).message}; writing to containers-storage needs root (run as root, or inside podman unshare)`, { cause: err });
    }
    throw new AirlockError("ERR_IO", `${what}: cannot apply the layer: ${(err as Error).message}`, { cause: err });
  }
  for (const { path, mtime } of dirTimes.reverse()) await fs.utimes(path, mtime, mtime);
  return { uids: [...uids].sort((a, b) => a - b), gids: [...gids].sort((a, b) => a - b) };
}

async function mknod(path: string, kind: "c" | "b" | "p", major: number, minor: number, what: string, mode?: string): Promise<void> {
  try {
    await run("mknod", [...(mode === undefined ? [] : ["-m", mode]), path, kind, ...(kind === "p" ? [] : [String(major), String(minor)])]);
  } catch (cause) {
    throw new AirlockError("ERR_UNSUPPORTED", `${what}: cannot create the device or fifo ${path} (mknod): ${(cause as Error).message.trim()}; this needs root and the mknod tool`, { cause });
  }
}

/** Sets an extended attribute (bytes) with setfattr(1), else with the system's python3 (os.setxattr). */
async function setXattr(path: string, name: string, value: string | Buffer, what: string, ignoreUnsupported = false): Promise<void> {
  const hex = `0x${Buffer.from(value).toString("hex")}`;
  try {
    await run("setfattr", ["-h", "-n", name, "-v", hex, path]);
    return;
  } catch {
    // no setfattr: try python3
  }
  try {
    await run("/usr/bin/python3", ["-I", "-S", "-c", "import os, sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3][2:]), follow_symlinks=False)", path, name, hex]);
  } catch (cause) {
    if (ignoreUnsupported && /Operation not supported|Errno 95/.test(String((cause as { stderr?: string }).stderr ?? (cause as Error).message))) return;
    throw new AirlockError(
      "ERR_UNSUPPORTED",
      `${what}: cannot set the extended attribute ${name} on ${path}: ${(cause as Error).message.trim()}; this needs root and setfattr (package attr) or python3`,
      { cause },
    );
  }
}
