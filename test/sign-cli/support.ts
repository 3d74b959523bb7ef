/**
 * Shared helpers of the sign-cli tests: running real tools, a temporary GNUPGHOME holding the
 * fixture keys (for skopeo and gpg), policy files, and snapshots of directories.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root, fixtures and test keys. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const FIX = join(ROOT, "fixtures");
export const KEYS = join(FIX, "keys");
export const key = (name: string): string => join(KEYS, name);
export const PASSPHRASE_FILE = key("protected.passphrase");

/** What a tool printed and returned. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool asynchronously (so in-process servers keep answering); never throws for a non-zero exit. */
export function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: { ...process.env, ...env }, encoding: "buffer", maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code ?? 1) : 0;
      if (typeof code !== "number") return reject(err);
      resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
    });
    child.stdin?.end();
  });
}

/** A temporary work directory (real path: skopeo resolves symlinks in dir: policy scopes). */
export function workDir(prefix: string): string {
  return realpathSync(mkdtempSync(join(tmpdir(), prefix)));
}

/** A GNUPGHOME (short path, for gpg-agent's socket) with the fixture secret keys imported. */
export interface GnuPG {
  env: { GNUPGHOME: string };
  /** The primary fingerprint of a fixture key, as gpg reports it. */
  fingerprint(email: string): Promise<string>;
  close(): Promise<void>;
}

/** Creates a GNUPGHOME and imports the named fixture keys (`signer`, `protected`, …). */
export async function gnupgWith(names: string[]): Promise<GnuPG> {
  const home = mkdtempSync("/tmp/alg-");
  const env = { GNUPGHOME: home };
  for (const name of names) {
    const r = await run("gpg", ["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase-file", PASSPHRASE_FILE, "--import", key(`${name}.sec.asc`)], env);
    if (r.code !== 0) throw new Error(`gpg --import ${name}: ${r.stderr}`);
  }
  return {
    env,
    async fingerprint(email) {
      const r = await run("gpg", ["--batch", "--with-colons", "--list-keys", email], env);
      const fpr = r.stdout.split("\n").find((l) => l.startsWith("fpr:"));
      if (!fpr) throw new Error(`gpg does not know ${email}: ${r.stderr}`);
      return fpr.split(":")[9] as string;
    },
    async close() {
      await run("gpgconf", ["--kill", "all"], env);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Writes a policy.json into `dir` and returns its path. */
export function writePolicy(dir: string, name: string, policy: unknown): string {
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(policy));
  return path;
}

/** A signedBy requirement on a fixture public key. */
export function signedBy(pub: string, signedIdentity?: unknown): Record<string, unknown> {
  return { type: "signedBy", keyType: "GPGKeys", keyPath: key(pub), ...(signedIdentity === undefined ? {} : { signedIdentity }) };
}

/** Every file under `dir` with its sha256 ({} when `dir` does not exist): "the destination is untouched". */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir);
  return out;
}

/** `sha256:` digest of bytes. */
export const sha256 = (b: Uint8Array | string): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
