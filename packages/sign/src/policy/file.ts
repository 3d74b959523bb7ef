/**
 * Finding and loading policy.json as containers-policy.json(5) describes: `--policy FILE` wins;
 * else `$CONTAINERS_POLICY_JSON`; else the first existing of `$XDG_CONFIG_HOME/containers/policy.json`
 * (default `~/.config/containers/policy.json`), `/etc/containers/policy.json` and
 * `/usr/share/containers/policy.json`. No policy found is an error: there is no built-in fallback
 * (containers/image: "DO NOT hard-code fallback policies in your application").
 *
 * @see https://github.com/containers/image/blob/main/signature/policy_config.go
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { AirlockError } from "@airlock/core";
import { type Policy, parsePolicy } from "./config.js";

/** The system-wide policy locations, in lookup order after the user's own. */
export const SYSTEM_POLICY_PATHS: readonly string[] = ["/etc/containers/policy.json", "/usr/share/containers/policy.json"];

/** Where {@link defaultPolicyPath} looks; injectable for tests. */
export interface PolicyLookup {
  /** Environment; default process.env. */
  env?: Record<string, string | undefined>;
  /** Home directory; default os.homedir(). */
  homeDir?: string;
  /** File existence check; default fs.existsSync. */
  exists?: (path: string) => boolean;
}

/** The candidate paths, in order, that {@link defaultPolicyPath} considers. */
export function policyPathCandidates(lookup: PolicyLookup = {}): string[] {
  const env = lookup.env ?? process.env;
  const explicit = env.CONTAINERS_POLICY_JSON;
  if (explicit !== undefined && explicit !== "") return [explicit];
  const configHome = env.XDG_CONFIG_HOME || join(lookup.homeDir ?? homedir(), ".config");
  return [join(configHome, "containers", "policy.json"), ...SYSTEM_POLICY_PATHS];
}

/**
 * The policy file to use when none is given: `$CONTAINERS_POLICY_JSON` if set (whether or not it
 * exists), else the first existing candidate. Throws ERR_POLICY listing where it looked.
 */
export function defaultPolicyPath(lookup: PolicyLookup = {}): string {
  const candidates = policyPathCandidates(lookup);
  const env = lookup.env ?? process.env;
  if (env.CONTAINERS_POLICY_JSON) return candidates[0] as string;
  const exists = lookup.exists ?? existsSync;
  const found = candidates.find((p) => exists(p));
  if (found === undefined) {
    throw new AirlockError(
      "ERR_POLICY",
      `no trust policy found: none of ${candidates.join(", ")} exists; pass --policy FILE, set CONTAINERS_POLICY_JSON, ` +
        `or create one (e.g. {"default":[{"type":"insecureAcceptAnything"}]} to accept everything)`,
    );
  }
  return found;
}

/**
 * Reads and parses a policy file: `path`, or {@link defaultPolicyPath} when omitted. Throws
 * ERR_POLICY when the file is missing, unreadable or invalid (the message names the file).
 */
export async function loadPolicy(path?: string, lookup: PolicyLookup = {}): Promise<{ policy: Policy; path: string }> {
  const file = path ?? defaultPolicyPath(lookup);
  let content: Uint8Array;
  try {
    content = await readFile(file);
  } catch (err) {
    throw new AirlockError("ERR_POLICY", `cannot read the trust policy ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err });
  }
  return { policy: parsePolicy(content, file), path: file };
}
