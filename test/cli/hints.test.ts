/**
 * Registry error messages name the flags or settings the running command really has: copy's
 * --src-/--dest- flags, import's --dest- flags, inspect's unprefixed ones, the sync YAML's keys,
 * and for the bundle verbs the registry's settings in images.yaml — never a flag the command
 * rejects, and never a credential. Against docker-registry with htpasswd and with a private CA.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");
const WRONG_PASSWORD = "not-the-password-7319";

const tmp = mkdtempSync(join(tmpdir(), "airlock-hints-"));
/** No auth file holds credentials for the test registries. */
const AUTH_FILE = join(tmp, "no-auth.json");
const VARS = ["REGISTRY_AUTH_FILE", "HINTS_USER", "HINTS_PASS"] as const;
const saved = new Map(VARS.map((k) => [k, process.env[k]]));
let basic: RunningRegistry;
let tls: RunningRegistry;

beforeAll(async () => {
  [basic, tls] = await Promise.all([startRegistry({ mode: "basic" }), startRegistry({ mode: "tls" })]);
  // Set after the registries start: docker-registry reads REGISTRY_* variables as its own configuration.
  process.env[VARS[0]] = AUTH_FILE;
});
afterAll(async () => {
  await Promise.all([basic?.stop(), tls?.stop()]);
  for (const [k, v] of saved) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(tmp, { recursive: true, force: true });
});

/** The one error line a failed run printed. */
function errorLine(r: { code: number; stderr: string }): string {
  expect(r.code).not.toBe(0);
  const lines = r.stderr.split("\n").filter((l) => /error|denied|required|rejected|verified/i.test(l));
  expect(lines.length).toBeGreaterThan(0);
  return lines.join("\n");
}

function imagesYaml(name: string, text: string): string {
  const file = join(tmp, name);
  writeFileSync(file, text);
  return file;
}

describe("credentials (docker-registry with htpasswd)", () => {
  it("copy to the registry without credentials names --dest-creds", async () => {
    const msg = errorLine(await runCli(["copy", "-q", "--dest-tls-verify=false", `oci:${FIX}/oci:single`, `docker://${basic.host}/hints/single:1`]));
    expect(msg).toContain("authentication is required");
    expect(msg).toContain("--dest-creds USERNAME:PASSWORD");
    expect(msg).toContain(`airlock login --authfile ${AUTH_FILE} ${basic.host}`);
    expect(msg).not.toMatch(/(^|[^-])--creds/);
    expect(msg).toContain(`${basic.host}/hints/single`);
  });

  it("copy from the registry without credentials names --src-creds", async () => {
    const msg = errorLine(await runCli(["copy", "-q", "--src-tls-verify=false", `docker://${basic.host}/hints/single:1`, `oci:${join(tmp, "out")}:single`]));
    expect(msg).toContain("--src-creds USERNAME:PASSWORD");
    expect(msg).not.toMatch(/(^|[^-])--creds|--dest-creds/);
  });

  it("copy with wrong --dest-creds names them, not airlock login, and never prints the password", async () => {
    const r = await runCli(["copy", "-q", "--dest-tls-verify=false", "--dest-creds", `${basic.username}:${WRONG_PASSWORD}`, `oci:${FIX}/oci:single`, `docker://${basic.host}/hints/single:1`]);
    const msg = errorLine(r);
    expect(msg).toContain("rejected the credentials");
    expect(msg).toContain("rejected the credentials given with --dest-creds: check the username and password");
    expect(msg).not.toContain("airlock login");
    expect(r.stderr).not.toContain(WRONG_PASSWORD);
  });

  it("inspect without credentials names its own --creds", async () => {
    const msg = errorLine(await runCli(["inspect", "--tls-verify=false", `docker://${basic.host}/hints/single:1`]));
    expect(msg).toContain("use --creds USERNAME:PASSWORD (or --registry-token)");
    expect(msg).not.toMatch(/--(src|dest)-/);
  });

  it("sync from the registry names --src-creds, or the sync YAML's credentials", async () => {
    let msg = errorLine(await runCli(["sync", "-q", "--src", "docker", "--dest", "dir", "--src-tls-verify=false", `${basic.host}/hints/single`, join(tmp, "sync")]));
    expect(msg).toContain("--src-creds USERNAME:PASSWORD");
    const yaml = imagesYaml("sync.yaml", `"${basic.host}":\n  tls-verify: false\n  credentials: { username: ${basic.username}, password: ${WRONG_PASSWORD} }\n  images:\n    hints/single: ["1"]\n`);
    const r = await runCli(["sync", "-q", "--src", "yaml", "--dest", "dir", yaml, join(tmp, "sync")]);
    msg = errorLine(r);
    expect(msg).toContain(`rejected the credentials given with "${basic.host}".credentials in ${yaml}`);
    expect(msg).not.toMatch(/--(src-)?creds/);
    expect(r.stderr).not.toContain(WRONG_PASSWORD);
  });

  it("import without credentials names import's --dest-creds, which import accepts", async () => {
    const yaml = imagesYaml("local.yaml", `version: 1\nimages:\n  - source: oci:${FIX}/oci:single\n    as: hints/single:1\n`);
    const bundle = join(tmp, "local.tar");
    expect((await runCli(["export", "-q", "-f", yaml, "-o", bundle])).code).toBe(0);
    const msg = errorLine(await runCli(["import", "-q", bundle, "--to", `${basic.host}/mirror`, "--dest-tls-verify=false"]));
    expect(msg).toContain("--dest-creds USERNAME:PASSWORD");
    expect(msg).not.toMatch(/(^|[^-])--creds/);
    // The flag named is one import has: with it, the import goes through.
    const ok = await runCli(["import", "-q", bundle, "--to", `${basic.host}/mirror`, "--dest-tls-verify=false", "--dest-creds", `${basic.username}:${basic.password}`]);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
  });

  it("export with wrong credentials from images.yaml names the registry's credentials setting and the variables, not --creds", async () => {
    const yaml = imagesYaml(
      "wrong.yaml",
      `version: 1\nregistries:\n  "${basic.host}":\n    tlsVerify: false\n    credentials:\n      env: { username: HINTS_USER, password: HINTS_PASS }\nimages:\n  - name: ${basic.host}/mirror/hints/single:1\n`,
    );
    process.env[VARS[1]] = basic.username;
    process.env[VARS[2]] = WRONG_PASSWORD;
    const r = await runCli(["export", "-q", "-f", yaml, "-o", join(tmp, "wrong.tar")]);
    const msg = errorLine(r);
    expect(msg).toContain("rejected the credentials");
    expect(msg).toContain(`registries."${basic.host}".credentials at ${yaml}:3:3 (the environment variables HINTS_USER and HINTS_PASS)`);
    expect(msg).toContain(`${basic.host}/mirror/hints/single`);
    expect(msg).not.toMatch(/--creds|--username|airlock login/);
    expect(r.stderr).not.toContain(WRONG_PASSWORD);
    // lock reads the same settings and says the same.
    expect(errorLine(await runCli(["lock", "-f", yaml, "-o", join(tmp, "wrong.lock.yaml")]))).toContain(`registries."${basic.host}".credentials at ${yaml}:3:3`);
  });

  it("export without credentials for an unconfigured registry names where images.yaml takes them", async () => {
    const yaml = imagesYaml("none.yaml", `version: 1\nregistries:\n  "${basic.host}": { tlsVerify: false }\nimages:\n  - name: ${basic.host}/mirror/hints/single:1\n`);
    const msg = errorLine(await runCli(["export", "-q", "-f", yaml, "-o", join(tmp, "none.tar")]));
    expect(msg).toContain("authentication is required");
    expect(msg).toContain(`use registries."${basic.host}".credentials at ${yaml}:3:3 (env: {username: VAR, password: VAR} or authFile: PATH)`);
    expect(msg).not.toMatch(/--creds|--registry-token/);
  });
});

describe("TLS (docker-registry with a private CA)", () => {
  it("export to a registry with an unknown CA names tlsVerify and certDir of images.yaml, not --tls-verify", async () => {
    const yaml = imagesYaml("tls.yaml", `version: 1\nimages:\n  - name: ${tls.host}/hints/single:1\n`);
    const msg = errorLine(await runCli(["export", "-q", "-f", yaml, "-o", join(tmp, "tls.tar")]));
    expect(msg).toContain("could not be verified");
    expect(msg).toContain(`registries."${tls.host}".certDir in ${yaml}`);
    expect(msg).toContain(`registries."${tls.host}".tlsVerify: false in ${yaml}`);
    expect(msg).not.toMatch(/--tls-verify|--cert-dir/);
    // The setting named works.
    const fixed = imagesYaml("tls-fixed.yaml", `version: 1\nregistries:\n  "${tls.host}": { certDir: ${tls.certDir} }\nimages:\n  - name: ${tls.host}/hints/single:1\n`);
    const r = await runCli(["lock", "-f", fixed, "-o", join(tmp, "tls.lock.yaml")]);
    // Past TLS: the registry answers that the image is not there.
    expect(r.stderr).not.toMatch(/could not be verified/);
    expect(r.stderr).toMatch(/hints\/single.*not found/);
  });

  it("copy names the flags of the side that failed", async () => {
    const msg = errorLine(await runCli(["copy", "-q", `docker://${tls.host}/hints/single:1`, `oci:${join(tmp, "tls-out")}:single`]));
    expect(msg).toContain("--src-cert-dir DIR");
    expect(msg).toContain("--src-tls-verify=false");
    expect(msg).not.toMatch(/(^|[^-])--tls-verify|--dest-/);
  });
});
