/**
 * containers/storage's lock files (`storage.lock`, `<driver>-layers/layers.lock`,
 * `<driver>-images/images.lock`): POSIX record locks (fcntl F_SETLKW, F_RDLCK / F_WRLCK over the
 * whole file) that podman, buildah and CRI-O take around every read and write of a store, plus a
 * 64-byte "last writer" token at the start of the file that a writer replaces so that long-running
 * processes (CRI-O, `podman system service`) notice the change and reload.
 *
 * Node has no fcntl(2) and airlock uses no native addons, so the locks are held by a tiny helper
 * process (`python3`, whose `fcntl.lockf` is exactly this kind of lock, else `perl`) for as long
 * as airlock needs them; the helper exits — and the kernel releases its locks — when airlock closes
 * its stdin or dies. Without either, reading goes on unlocked (the JSON files are replaced
 * atomically) and writing is refused, saying why.
 * @see https://github.com/containers/storage/blob/main/pkg/lockfile/lockfile_unix.go
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { childProcess } from "../../builtins.js";
import { AirlockError } from "../../errors.js";

/** One lock file to take: shared (reading) or exclusive (writing). */
export interface LockRequest {
  path: string;
  exclusive: boolean;
}

/** Locks held by a helper process; {@link release} drops them all. */
export interface HeldLocks {
  /** Whether the locks are really held (false: no helper was available, reading goes on unlocked). */
  readonly held: boolean;
  release(): Promise<void>;
}

const PYTHON_HELPER = [
  "import fcntl, os, sys",
  "fds = []",
  "for a in sys.argv[1:]:",
  "    mode, path = a[0], a[2:]",
  "    try:",
  "        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)",
  "    except OSError:",
  "        if mode == 'w': raise",
  "        fd = os.open(path, os.O_RDONLY)",
  "    fcntl.lockf(fd, fcntl.LOCK_EX if mode == 'w' else fcntl.LOCK_SH)",
  "    fds.append(fd)",
  "sys.stdout.write('locked\\n')",
  "sys.stdout.flush()",
  "sys.stdin.read()",
].join("\n");

/** The same in Perl (perl-base is essential on Debian): struct flock packed for 64-bit Linux. */
const PERL_HELPER = [
  "use Fcntl qw(O_RDWR O_CREAT O_RDONLY F_SETLKW F_WRLCK F_RDLCK SEEK_SET);",
  "my @fhs;",
  "for my $a (@ARGV) {",
  "  my ($mode, $path) = (substr($a, 0, 1), substr($a, 2));",
  "  my $fh;",
  "  unless (sysopen($fh, $path, O_RDWR | O_CREAT, 0644)) { die \"$path: $!\\n\" if $mode eq 'w'; sysopen($fh, $path, O_RDONLY) or die \"$path: $!\\n\"; }",
  "  my $lk = pack('s s x4 q q l x4', $mode eq 'w' ? F_WRLCK : F_RDLCK, SEEK_SET, 0, 0, 0);",
  "  fcntl($fh, F_SETLKW, $lk) or die \"lock $path: $!\\n\";",
  "  push @fhs, $fh;",
  "}",
  "$| = 1; print \"locked\\n\";",
  "while (<STDIN>) {}",
].join("\n");

/** A way to run the lock helper. */
interface Helper {
  cmd: string;
  args: string[];
}

/**
 * The helpers tried, in order: the system's python3 (not a version manager's shim, which may take
 * seconds to start), python3 on the PATH, then perl on 64-bit Linux. AIRLOCK_STORAGE_LOCK_HELPER
 * names one command to use instead (a python3, or a perl when its name contains "perl").
 */
function helpers(): Helper[] {
  const py = (cmd: string): Helper => ({ cmd, args: ["-I", "-S", "-c", PYTHON_HELPER] });
  const pl = (cmd: string): Helper => ({ cmd, args: ["-e", PERL_HELPER] });
  const configured = process.env.AIRLOCK_STORAGE_LOCK_HELPER;
  if (configured) return [configured.includes("perl") ? pl(configured) : py(configured)];
  const out = [py("/usr/bin/python3"), py("python3")];
  if (process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64")) out.push(pl("perl"));
  return out;
}

const working = new Map<string, Helper>();

/**
 * Takes the given locks in order (containers/storage's order: storage.lock, then layers, then
 * images), waiting while another process holds them. `what` names the store in messages. When no
 * helper can run: shared-only requests resolve unlocked (`held: false`); exclusive ones throw.
 */
export async function takeLocks(requests: readonly LockRequest[], what: string, signal?: AbortSignal): Promise<HeldLocks> {
  const key = process.env.AIRLOCK_STORAGE_LOCK_HELPER ?? "";
  const known = working.get(key);
  for (const helper of known ? [known] : helpers()) {
    const locks = await takeLocksWith(helper, requests, what, signal);
    if (locks) {
      working.set(key, helper);
      return locks;
    }
  }
  if (requests.some((r) => r.exclusive)) {
    throw new AirlockError(
      "ERR_UNSUPPORTED",
      `cannot write to ${what}: containers/storage's lock files need fcntl(2) locks, which airlock takes through a python3 or perl helper, and neither was found; install python3 (or name an interpreter in AIRLOCK_STORAGE_LOCK_HELPER), or write the image with podman load`,
    );
  }
  return { held: false, release: async () => {} };
}

/** Takes the locks with one interpreter; undefined when it does not exist. */
async function takeLocksWith(helper: Helper, requests: readonly LockRequest[], what: string, signal?: AbortSignal): Promise<HeldLocks | undefined> {
  signal?.throwIfAborted();
  const args = [...helper.args, ...requests.map((r) => `${r.exclusive ? "w" : "r"}:${r.path}`)];
  const child = childProcess().spawn(helper.cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const ready = new Promise<boolean>((resolve, reject) => {
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (s: string) => {
      out += s;
      if (out.includes("locked\n")) resolve(true);
    });
    child.once("error", (err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? resolve(false) : reject(err)));
    child.once("close", (code) => reject(new Error(`lock helper exited with status ${code}: ${stderr.trim()}`)));
  });
  const onAbort = () => child.kill();
  signal?.addEventListener("abort", onAbort, { once: true });
  let ok: boolean;
  try {
    ok = await ready;
  } catch (cause) {
    child.kill();
    throw new AirlockError("ERR_IO", `cannot lock ${what} (${requests.map((r) => r.path).join(", ")}): ${(cause as Error).message}`, { cause });
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (signal?.aborted) {
    child.kill();
    throw new AirlockError("ERR_ABORTED", `locking ${what} was aborted`);
  }
  if (!ok) return undefined;
  child.stdout.removeAllListeners("data");
  child.stdout.resume();
  let released = false;
  return {
    held: true,
    async release() {
      if (released) return;
      released = true;
      child.stdin.end();
      await exited;
    },
  };
}

/**
 * Writes a new "last writer" token at the start of a lock file (containers/storage's
 * RecordWrite): time, a counter, the pid and random bytes, 64 bytes. Call while holding the lock.
 */
export async function recordWrite(lockPath: string): Promise<void> {
  const token = Buffer.alloc(64);
  token.writeBigUInt64LE(BigInt(Date.now()) * 1_000_000n, 0);
  token.writeBigUInt64LE(BigInt(++counter), 8);
  token.writeUInt32LE(process.pid >>> 0, 16);
  randomBytes(44).copy(token, 20);
  const fh = await fs.open(lockPath, "r+");
  try {
    await fh.write(token, 0, 64, 0);
  } finally {
    await fh.close();
  }
}

let counter = 0;
