/**
 * Which real peers this machine has, for tests that skip (with a reason) where a tool is missing.
 */
import { execFileSync } from "node:child_process";
import { networkInterfaces } from "node:os";

/** Reports whether `cmd --version` runs. */
export function hasCommand(cmd: string): boolean {
  try {
    execFileSync(cmd, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** podman and skopeo are installed and the tests run as root (a store's files keep their owners). */
export const hasPodman = hasCommand("podman") && hasCommand("skopeo") && process.getuid?.() === 0;

/** This machine's first non-loopback IPv4 address (to bind a registry airlock must not treat as loopback), if it has one. */
export function nonLoopbackIPv4(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && !a.internal && a.family === "IPv4")?.address;
}
