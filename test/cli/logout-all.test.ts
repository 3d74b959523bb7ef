/**
 * `airlock logout --all` end to end: credentials stored by two real logins (a registry and one of
 * its namespaces) against docker-registry with htpasswd auth are all removed, and a copy that
 * relied on them is refused by the registry afterwards.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const tmp = mkdtempSync(join(tmpdir(), "airlock-logout-all-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("logout --all against docker-registry (basic auth)", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "basic" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("removes every login from the auth file; a copy without credentials is then refused", async () => {
    const authFile = join(tmp, "auth.json");
    const login = (target: string) => runCli(["login", "--authfile", authFile, "--tls-verify=false", "-u", reg.username as string, "-p", reg.password as string, target]);
    for (const target of [reg.host, `${reg.host}/team`]) {
      const r = await login(target);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("Login Succeeded!\n");
    }
    expect(Object.keys(JSON.parse(readFileSync(authFile, "utf8")).auths).sort()).toEqual([reg.host, `${reg.host}/team`]);
    // The stored credentials work: a push with --authfile and nothing else.
    const dest = `docker://${reg.host}/team/app:1.0`;
    const pushed = await runCli(["copy", "-q", "--authfile", authFile, "--dest-tls-verify=false", `oci:${FIX}/oci:single`, dest]);
    expect(pushed.stderr).toBe("");
    expect(pushed.code).toBe(0);

    const out = await runCli(["logout", "--all", "--authfile", authFile]);
    expect(out.code).toBe(0);
    expect(out.stdout).toBe("Removed login credentials for all registries\n");
    expect(JSON.parse(readFileSync(authFile, "utf8")).auths).toEqual({});
    expect((await runCli(["login", "--get-login", "--authfile", authFile, reg.host])).code).toBe(1);

    // The same copy with the same --authfile, which holds no credentials now, is refused.
    const refused = await runCli(["copy", "-q", "--authfile", authFile, "--src-tls-verify=false", dest, `oci:${join(tmp, "pulled")}:app`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/401|unauthori[sz]ed|authentication required/i);
    expect(refused.stderr).toContain(reg.host);
    expect(refused.stderr).not.toContain(reg.password as string);
  });
});
