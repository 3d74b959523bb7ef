import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultPolicyPath, loadPolicy, policyPathCandidates } from "./file.js";

describe("defaultPolicyPath", () => {
  const home = "/home/u";
  it("prefers $CONTAINERS_POLICY_JSON, even when it does not exist", () => {
    expect(defaultPolicyPath({ env: { CONTAINERS_POLICY_JSON: "/x/p.json" }, homeDir: home, exists: () => false })).toBe("/x/p.json");
  });

  it("then takes the first existing of the user's, /etc's and /usr/share's policy", () => {
    expect(policyPathCandidates({ env: {}, homeDir: home })).toEqual([
      "/home/u/.config/containers/policy.json",
      "/etc/containers/policy.json",
      "/usr/share/containers/policy.json",
    ]);
    expect(policyPathCandidates({ env: { XDG_CONFIG_HOME: "/cfg" }, homeDir: home })[0]).toBe("/cfg/containers/policy.json");
    const existing = (...paths: string[]) => (p: string) => paths.includes(p);
    expect(defaultPolicyPath({ env: {}, homeDir: home, exists: existing("/etc/containers/policy.json", "/home/u/.config/containers/policy.json") })).toBe(
      "/home/u/.config/containers/policy.json",
    );
    expect(defaultPolicyPath({ env: {}, homeDir: home, exists: existing("/usr/share/containers/policy.json", "/etc/containers/policy.json") })).toBe(
      "/etc/containers/policy.json",
    );
    expect(defaultPolicyPath({ env: {}, homeDir: home, exists: existing("/usr/share/containers/policy.json") })).toBe("/usr/share/containers/policy.json");
  });

  it("fails, saying where it looked, when no policy exists", () => {
    expect(() => defaultPolicyPath({ env: {}, homeDir: home, exists: () => false })).toThrow(
      /no trust policy found: none of \/home\/u\/.config\/containers\/policy.json, \/etc\/containers\/policy.json, \/usr\/share\/containers\/policy.json exists; pass --policy FILE/,
    );
  });
});

describe("loadPolicy", () => {
  it("reads and parses a file, naming it in errors", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-policy-"));
    try {
      const good = join(dir, "good.json");
      writeFileSync(good, '{"default":[{"type":"insecureAcceptAnything"}]}');
      await expect(loadPolicy(good)).resolves.toMatchObject({ path: good, policy: { default: [{ type: "insecureAcceptAnything" }] } });
      const env = { CONTAINERS_POLICY_JSON: good };
      await expect(loadPolicy(undefined, { env })).resolves.toMatchObject({ path: good });
      const bad = join(dir, "bad.json");
      writeFileSync(bad, '{"default":[{"type":"insecureAcceptAnything"}],"defaults":[]}');
      await expect(loadPolicy(bad)).rejects.toThrow(`invalid policy in ${JSON.stringify(bad)}: unknown field "defaults"`);
      await expect(loadPolicy(join(dir, "missing.json"))).rejects.toMatchObject({ code: "ERR_POLICY", message: expect.stringMatching(/cannot read the trust policy/) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
