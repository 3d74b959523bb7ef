/**
 * `airlock export --include-tool[=PATH]`: which single-file executable of airlock goes into the
 * bundle (as `airlock/tool/airlock-linux-<arch>`), so that the air-gapped side, with nothing
 * installed, takes it out with tar and runs `verify` and `import` with it.
 *
 * Without PATH: the running executable when airlock is itself the compiled binary (and the target
 * is this machine's platform), else `dist/airlock-linux-<arch>` that `npm run compile` builds.
 */
import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AirlockError, type ExportTool } from "@airlock/core";

/** The platforms a tool can be carried for, and the file name `npm run compile` gives each. */
const TARGETS = new Map([
  ["linux/amd64", "airlock-linux-x64"],
  ["linux/arm64", "airlock-linux-arm64"],
]);

/** ELF `e_machine` values of the target architectures. */
const ELF_MACHINES = new Map([
  [62, "linux/amd64"],
  [183, "linux/arm64"],
]);

/** The target platform on this machine's architecture: `linux/amd64` on x64, `linux/arm64` on arm64. */
export function hostToolPlatform(): string {
  return `linux/${process.arch === "x64" ? "amd64" : process.arch}`;
}

/** Parses a `--tool-platform` value: `linux/amd64` or `linux/arm64` (`amd64`, `x64`, `arm64` also do). */
export function parseToolPlatform(value: string): string {
  const v = value.trim().toLowerCase();
  const p = v.includes("/") ? v : `linux/${v}`;
  const normal = p === "linux/x64" ? "linux/amd64" : p === "linux/aarch64" ? "linux/arm64" : p;
  if (!TARGETS.has(normal)) throw new AirlockError("ERR_INVALID_ARGUMENT", `--tool-platform ${value}: airlock's executable is built for ${[...TARGETS.keys()].join(" and ")}`);
  return normal;
}

/** Reports whether this process is airlock's single-file executable (`bun build --compile`). */
export function runningCompiled(): boolean {
  // Bun runs a compiled executable's code from its embedded file system, /$bunfs/.
  return "Bun" in globalThis && (process.argv[1] ?? "").startsWith("/$bunfs/");
}

/** The platform an ELF executable is built for, from its header; undefined for anything else. */
export function elfPlatform(path: string): string | undefined {
  const head = Buffer.alloc(20);
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    if (readSync(fd, head, 0, head.length, 0) < head.length) return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (head.readUInt32BE(0) !== 0x7f454c46) return undefined; // "\x7fELF"
  const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
  return ELF_MACHINES.get(machine) ?? `elf-machine-${machine}`;
}

/** `dist/NAME` of the airlock repository this code runs from (what `npm run compile` writes), if it exists. */
function compiledInRepository(name: string): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "scripts", "compile.mjs"))) {
      const file = join(dir, "dist", name);
      return existsSync(file) ? file : undefined;
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/**
 * The tools for `--include-tool[=PATH]` (`option`: true, or PATH) and `--tool-platform`
 * (`platforms`, default: {@link hostToolPlatform}). Throws ERR_INVALID_ARGUMENT saying what to do
 * when there is no executable for a platform, or when PATH is built for another one.
 */
export function toolsFor(option: true | string, platforms: string[] = []): ExportTool[] {
  const targets = [...new Set(platforms.length > 0 ? platforms : [hostToolPlatform()])];
  if (typeof option === "string") {
    if (targets.length > 1) throw new AirlockError("ERR_INVALID_ARGUMENT", `--include-tool=${option} is one file, for one platform; give one --tool-platform, or use --include-tool without a path for ${targets.join(" and ")}`);
    if (!existsSync(option)) throw new AirlockError("ERR_INVALID_ARGUMENT", `--include-tool=${option}: no such file; build airlock's executable with \`npm run compile\`, or give its path`);
    const elf = elfPlatform(option);
    const platform = platforms.length > 0 ? (targets[0] as string) : (elf ?? (targets[0] as string));
    if (elf !== undefined && elf !== platform) throw new AirlockError("ERR_INVALID_ARGUMENT", `--include-tool=${option} is an executable for ${elf}, not ${platform}; give the ${platform} build (npm run compile writes dist/${TARGETS.get(platform)})`);
    return [{ file: option, name: TARGETS.get(platform) ?? "airlock", platform }];
  }
  return targets.map((platform) => {
    const name = TARGETS.get(platform) as string;
    if (runningCompiled() && platform === hostToolPlatform()) return { file: process.execPath, name, platform };
    const built = compiledInRepository(name);
    if (built) return { file: built, name, platform };
    const why = runningCompiled() ? `this executable is built for ${hostToolPlatform()}` : "airlock is not running as its single-file executable";
    throw new AirlockError("ERR_INVALID_ARGUMENT", `--include-tool: no executable of airlock for ${platform}: ${why}, and there is no dist/${name}; build it with \`npm run compile\`, or give one with --include-tool=PATH`);
  });
}
