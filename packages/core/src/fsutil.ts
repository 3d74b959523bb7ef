/**
 * File helpers shared by every transport that writes files: atomic replacement and an
 * inter-process lock. Only node: built-ins, so they work under Node, Bun and Deno.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { dirname, basename, join } from "node:path";
import { AirlockError } from "./errors.js";

/** A unique temporary name next to `path` (same directory, so a rename is atomic). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/**
 * Writes `data` to `path` atomically: to a temporary file in the same directory, fsync, then
 * rename over `path`. Readers see the old content or the new, never a mix.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const tmp = tempPathFor(path);
  const fh = await fs.open(tmp, "wx", mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/** Reports whether `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await fs.access(path);
    return true;
  } catch {
    return false;
  }
}

/** Options of {@link withFileLock}. */
export interface LockOptions {
  /** Give up after this many milliseconds (default 60 s). */
  timeoutMs?: number;
  /** A lock file older than this is considered abandoned by a crashed process (default 30 s). */
  staleMs?: number;
}

/**
 * Runs `fn` while holding an exclusive lock on `lockPath` (created with O_EXCL, holding the pid).
 * Other processes — and other callers in this process — wait for it. A lock whose owner process
 * is gone, or that is older than `staleMs`, is broken.
 */
export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const staleMs = options.staleMs ?? 30_000;
  const start = Date.now();
  let delay = 5;
  for (;;) {
    try {
      const fh = await fs.open(lockPath, "wx");
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      if (await isStale(lockPath, staleMs)) {
        await fs.rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() - start > timeoutMs) {
        throw new AirlockError("ERR_IO", `timed out after ${timeoutMs} ms waiting for lock ${lockPath}; if no other airlock process is running, remove that file`);
      }
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
      delay = Math.min(delay * 2, 100);
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lockPath, { force: true });
  }
}

async function isStale(lockPath: string, staleMs: number): Promise<boolean> {
  try {
    const [st, text] = await Promise.all([fs.stat(lockPath), fs.readFile(lockPath, "utf8")]);
    const pid = Number.parseInt(text, 10);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
      try {
        process.kill(pid, 0);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ESRCH") return true;
      }
    }
    return Date.now() - st.mtimeMs > staleMs;
  } catch {
    return false;
  }
}
