#!/usr/bin/env node
// Builds airlock as a single-file executable (`npm run compile`): `bun build --compile` of the
// CLI (entry apps/airlock/bin/standalone.js), with the Bun binary that the `bun` npm dev dependency
// brings. The result runs on a machine with no Node, no npm and no network. It carries JSC
// bytecode of the code (--bytecode): +8 MiB, and about half the start-up CPU (~230 → ~110 ms for
// --version). Bun bundles the compiled JavaScript itself (apps/airlock/dist), not
// scripts/build-cli.mjs's bundle: it already makes one file, and its require() must see the
// literal paths that core's registry/undici.ts names.
//
//   dist/airlock-linux-x64     always (or the host's platform, e.g. dist/airlock-linux-arm64)
//   dist/airlock-linux-arm64   also, when the arm64 Bun runtime it is built on can be had: the
//                              npm package @oven/bun-linux-aarch64 of the same version, fetched
//                              with `npm pack` (so .npmrc's registry, proxy and auth apply) into
//                              $XDG_CACHE_HOME/airlock/bun/ (default ~/.cache) once; else Bun's
//                              own download; skipped with a note when neither works (offline)
//
// Options: --target PLATFORM (repeatable; e.g. linux-x64, linux-arm64), --host-only,
// --out-dir DIR (default dist/), --no-tsc (the CLI's JavaScript is already built).
// Prints each executable's path, size and sha256.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bun = join(root, "node_modules", ".bin", process.platform === "win32" ? "bun.exe" : "bun");
const entry = join(root, "apps", "airlock", "bin", "standalone.js");

/** airlock's platform name for this machine: `linux-x64`, `linux-arm64`, `darwin-arm64`, … */
function hostPlatform() {
  return `${process.platform}-${process.arch}`;
}

/** Bun's --target for an airlock platform name (`linux-arm64` → `bun-linux-aarch64`). */
function bunTarget(platform) {
  const [os, arch] = platform.split("-");
  return `bun-${os}-${arch === "arm64" ? "aarch64" : arch}`;
}

/**
 * The Bun runtime of `platform` (same version as ours) that a cross build is built on, from the
 * npm package @oven/bun-OS-ARCH, cached; undefined when it cannot be fetched (then Bun tries its
 * own download).
 */
function bunRuntimeFor(platform) {
  const version = spawnSync(bun, ["--version"], { encoding: "utf8" }).stdout.trim();
  const pkg = `@oven/${bunTarget(platform)}`;
  // biome-ignore lint/suspicious/noUndeclaredEnvVars: only where a download is cached, not what is built
  const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "airlock", "bun", `${bunTarget(platform)}-v${version}`);
  const exe = join(dir, "package", "bin", "bun");
  if (existsSync(exe)) return exe;
  mkdirSync(dir, { recursive: true });
  const packed = spawnSync("npm", ["pack", `${pkg}@${version}`, "--pack-destination", dir, "--silent"], { encoding: "utf8", cwd: dir });
  const tgz = packed.status === 0 ? join(dir, packed.stdout.trim().split("\n").pop() ?? "") : "";
  if (!tgz.endsWith(".tgz") || !existsSync(tgz)) {
    console.error(`compile: could not fetch ${pkg}@${version} with npm pack (${(packed.stderr || "").trim().split("\n").pop() || `exit ${packed.status}`}); letting Bun download it`);
    return undefined;
  }
  const untar = spawnSync("tar", ["-xzf", tgz, "-C", dir]);
  rmSync(tgz, { force: true });
  return untar.status === 0 && existsSync(exe) ? exe : undefined;
}

async function sha256(path) {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk);
  return h.digest("hex");
}

function mib(n) {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const args = process.argv.slice(2);
const targets = [];
let outDir = join(root, "dist");
let runTsc = true;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--target") targets.push(args[++i]);
  else if (args[i] === "--host-only") targets.push(hostPlatform());
  else if (args[i] === "--out-dir") outDir = resolve(args[++i]);
  else if (args[i] === "--no-tsc") runTsc = false;
  else {
    console.error(`compile: unknown argument ${args[i]} (use --target PLATFORM, --host-only, --out-dir DIR, --no-tsc)`);
    process.exit(2);
  }
}
const host = hostPlatform();
const wanted = targets.length > 0 ? targets : [...new Set([host, "linux-x64", "linux-arm64"])];
// The host's own executable must build; cross builds are best effort (they need a download).
const required = new Set(targets.length > 0 ? targets : [host]);

if (!existsSync(bun)) {
  console.error(`compile: ${relative(root, bun)} is missing; run \`npm ci\` (bun is a dev dependency)`);
  process.exit(1);
}
// The CLI's JavaScript must be current: `npm ci` builds it, but sources may have changed since.
// A type error elsewhere does not stop the build: tsc still writes JavaScript, and we say so.
if (runTsc) {
  try {
    execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-b", join(root, "apps", "airlock")], { stdio: "inherit" });
  } catch {
    console.error("compile: warning: `tsc -b apps/airlock` reported errors (above); compiling the JavaScript it wrote");
  }
}
mkdirSync(outDir, { recursive: true });

let failed = 0;
for (const platform of wanted) {
  const out = join(outDir, `airlock-${platform}`);
  const started = Date.now();
  const runtime = platform === host ? undefined : bunRuntimeFor(platform);
  // --smol: Bun collects garbage sooner; an import of the bench corpus peaked at 158–167 MiB with it
  // against 177–192 MiB without, in the same time (Node: ~105 MiB).
  const r = spawnSync(bun, ["build", "--compile", "--minify", "--bytecode", "--compile-exec-argv=--smol", `--target=${bunTarget(platform)}`, ...(runtime ? [`--compile-executable-path=${runtime}`] : []), entry, "--outfile", out], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) {
    const why = (r.stderr || r.stdout || String(r.error ?? "")).trim().split("\n").slice(-3).join(" | ");
    if (required.has(platform)) {
      console.error(`compile: FAILED ${relative(root, out)}: ${why}`);
      failed++;
    } else {
      console.error(`compile: skipped ${relative(root, out)} (cross build needs Bun's ${bunTarget(platform)} base binary, which could not be fetched): ${why}`);
    }
    continue;
  }
  const size = statSync(out).size;
  console.log(`${relative(root, out)}  ${mib(size)} (${size} bytes)  sha256:${await sha256(out)}  built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
process.exit(failed > 0 ? 1 : 0);
