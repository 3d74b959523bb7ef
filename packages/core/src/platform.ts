/**
 * Platforms (os/architecture/variant) and how an index entry is chosen for one.
 * @see https://github.com/opencontainers/image-spec/blob/main/image-index.md#image-index-property-descriptions
 */
import { AirlockError } from "./errors.js";

/** A platform as it appears in an OCI index entry or image config. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
}

const ARCH_ALIASES: Record<string, string> = { x86_64: "amd64", aarch64: "arm64", armhf: "arm", armel: "arm", i386: "386" };

/** Normalises a platform: `aarch64`→`arm64`, `x86_64`→`amd64`, `arm64/v8`→`arm64`, `arm`→`arm/v7`. */
export function normalizePlatform(p: Platform): Platform {
  const architecture = ARCH_ALIASES[p.architecture] ?? p.architecture;
  let variant = p.variant || undefined;
  if (architecture === "arm64" && variant === "v8") variant = undefined;
  if (architecture === "arm" && variant === undefined) variant = "v7";
  const out: Platform = { os: p.os, architecture };
  if (variant !== undefined) out.variant = variant;
  return out;
}

/** Parses `os/arch[/variant]` (e.g. `linux/arm64/v8`). Throws ERR_INVALID_ARGUMENT on bad input. */
export function parsePlatform(s: string): Platform {
  const parts = s.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => x === "")) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `invalid platform ${JSON.stringify(s)}: expected OS/ARCH[/VARIANT], e.g. linux/arm64`);
  }
  const p: Platform = { os: parts[0] as string, architecture: parts[1] as string };
  if (parts[2]) p.variant = parts[2];
  return p;
}

/** Formats a platform as `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/**
 * Reports whether an index entry's platform `have` satisfies the wanted platform `want`.
 * os and architecture must be equal after normalisation; when `want` names a variant, `have` must
 * carry the same one (after normalisation, so arm64 ≡ arm64/v8).
 */
export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return false;
  if (want.variant !== undefined && w.variant !== h.variant) return false;
  return true;
}

/** The platform of the running host, in OCI terms (linux/amd64, linux/arm64, …). */
export function hostPlatform(): Platform {
  const archMap: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
  const osMap: Record<string, string> = { win32: "windows", darwin: "darwin", linux: "linux", freebsd: "freebsd" };
  return normalizePlatform({ os: osMap[process.platform] ?? process.platform, architecture: archMap[process.arch] ?? process.arch });
}
