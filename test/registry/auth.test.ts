/**
 * Authentication against the real registry: bearer tokens (cached per scope, `token` or
 * `access_token`, identity tokens via the refresh-token grant, `--registry-token`), basic auth,
 * `--no-creds`, wrong passwords, and credentials from an auth file.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AirlockError, parseImageName, setRegistryDebugLogger } from "@airlock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { contextFor, makeImage, pullImage, pushImage } from "./util.js";

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(join(tmpdir(), "airlock-auth-test-"));
});
afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function writeAuthFile(content: unknown): Promise<string> {
  const path = join(tmp, `auth-${randomBytes(4).toString("hex")}.json`);
  await fs.writeFile(path, JSON.stringify(content), { mode: 0o600 });
  return path;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("bearer token registry", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "token", tokenField: "access_token" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("gets one token per scope set for a whole push (answers with access_token), and another for pull", async () => {
    const requests = reg.tokenRequests!;
    const before = requests.length;
    const image = makeImage([100, 200, 300]);
    const dest = await parseImageName(`docker://${reg.host}/tok/app:v1`).newDestination({ docker: contextFor(reg) });
    await pushImage(dest, image).finally(() => dest.close());
    const pushReqs = requests.slice(before);
    expect(pushReqs.map((r) => r.scopes)).toEqual([["repository:tok/app:pull,push"]]);
    expect(pushReqs[0]).toMatchObject({ method: "GET", account: reg.username, service: "test-registry", authenticated: true });

    const mid = requests.length;
    const src = await parseImageName(`docker://${reg.host}/tok/app:v1`).newSource({ docker: contextFor(reg) });
    await pullImage(src).finally(() => src.close());
    expect(requests.slice(mid).map((r) => r.scopes)).toEqual([["repository:tok/app:pull"]]);
  });

  it("exchanges an identity token from the auth file with the OAuth2 refresh-token grant", async () => {
    const authFile = await writeAuthFile({ auths: { [reg.host]: { auth: "", identitytoken: reg.refreshToken } } });
    const before = reg.tokenRequests!.length;
    const image = makeImage([10]);
    const dest = await parseImageName(`docker://${reg.host}/tok/identity:v1`).newDestination({ docker: { authFile } });
    await pushImage(dest, image).finally(() => dest.close());
    const used = reg.tokenRequests!.slice(before);
    expect(used.length).toBe(1);
    expect(used[0]).toMatchObject({ method: "POST", grantType: "refresh_token", authenticated: true, scopes: ["repository:tok/identity:pull,push"] });
  });

  it("uses --registry-token verbatim, without asking the token server", async () => {
    const image = makeImage([10]);
    const d = await parseImageName(`docker://${reg.host}/tok/rt:v1`).newDestination({ docker: contextFor(reg) });
    await pushImage(d, image).finally(() => d.close());
    // A token obtained elsewhere (here: straight from the token server).
    const auth = `Basic ${b64(`${reg.username}:${reg.password}`)}`;
    const challenge = await fetch(`${reg.url}/v2/`).then((r) => r.headers.get("www-authenticate") ?? "");
    const realmURL = /realm="([^"]+)"/.exec(challenge)?.[1] as string;
    const tokenRes = await fetch(`${realmURL}?service=test-registry&scope=repository:tok/rt:pull`, { headers: { authorization: auth } });
    const token = ((await tokenRes.json()) as { access_token: string }).access_token;
    const before = reg.tokenRequests!.length;
    const src = await parseImageName(`docker://${reg.host}/tok/rt:v1`).newSource({ docker: { registryToken: token } });
    try {
      expect((await src.getManifest()).digest).toBe(image.manifest.digest);
    } finally {
      await src.close();
    }
    expect(reg.tokenRequests!.length).toBe(before);
  });

  it("reports a wrong password as ERR_UNAUTHORIZED without printing it", async () => {
    const src = await parseImageName(`docker://${reg.host}/tok/app:v1`).newSource({ docker: { credentials: { username: reg.username!, password: "not-the-password-42" }, retryDelayMs: 1 } });
    try {
      const err = (await src.getManifest().catch((e: unknown) => e)) as AirlockError;
      expect(err.code).toBe("ERR_UNAUTHORIZED");
      expect(err.message).toMatch(/rejected the credentials/);
      expect(err.message).not.toContain("not-the-password-42");
    } finally {
      await src.close();
    }
  });

  it("with --no-creds ignores the auth file and is refused", async () => {
    const authFile = await writeAuthFile({ auths: { [reg.host]: { auth: b64(`${reg.username}:${reg.password}`) } } });
    const ok = await parseImageName(`docker://${reg.host}/tok/app:v1`).newSource({ docker: { authFile } });
    await ok.getManifest().finally(() => ok.close());
    const src = await parseImageName(`docker://${reg.host}/tok/app:v1`).newSource({ docker: { authFile, noCreds: true } });
    try {
      const err = (await src.getManifest().catch((e: unknown) => e)) as AirlockError;
      expect(err.code).toBe("ERR_UNAUTHORIZED");
      // The auth file is not read with noCreds, so logging in would not help: credentials are named instead.
      expect(err.message).toContain("--creds USERNAME:PASSWORD");
      expect(err.message).not.toContain("airlock login");
    } finally {
      await src.close();
    }
  });
});

describe("basic auth registry", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "basic" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("uses the most specific auth-file key (host/namespace) over the host's", async () => {
    const authFile = await writeAuthFile({
      auths: {
        [reg.host]: { auth: b64(`${reg.username}:wrong-password`) },
        [`${reg.host}/team`]: { auth: b64(`${reg.username}:${reg.password}`) },
      },
    });
    const image = makeImage([10]);
    const dest = await parseImageName(`docker://${reg.host}/team/app:v1`).newDestination({ docker: { authFile } });
    await pushImage(dest, image).finally(() => dest.close());
    const other = await parseImageName(`docker://${reg.host}/other/app:v1`).newSource({ docker: { authFile, retryDelayMs: 1 } });
    try {
      const err = (await other.getManifest().catch((e: unknown) => e)) as AirlockError;
      expect(err.code).toBe("ERR_UNAUTHORIZED");
      expect(err.message).not.toContain("wrong-password");
    } finally {
      await other.close();
    }
  });

  it("logs requests for --debug without credentials", async () => {
    const lines: string[] = [];
    setRegistryDebugLogger((l) => lines.push(l));
    try {
      const image = makeImage([10]);
      const dest = await parseImageName(`docker://${reg.host}/debug/app:v1`).newDestination({ docker: contextFor(reg) });
      await pushImage(dest, image).finally(() => dest.close());
    } finally {
      setRegistryDebugLogger(undefined);
    }
    expect(lines.some((l) => l.startsWith(`PUT http://${reg.host}/v2/debug/app/manifests/v1 → 201`))).toBe(true);
    const all = lines.join("\n");
    expect(all).not.toContain(reg.password!);
    expect(all).not.toContain(b64(`${reg.username}:${reg.password}`));
    expect(all).not.toContain("_state");
  });

  it("reports a wrong password as ERR_UNAUTHORIZED, and missing credentials as needing a login", async () => {
    const bad = await parseImageName(`docker://${reg.host}/x/y:v1`).newSource({ docker: { credentials: { username: "airlock", password: "bad-pass-77" } } });
    const none = await parseImageName(`docker://${reg.host}/x/y:v1`).newSource({ docker: { noCreds: true } });
    try {
      const e1 = (await bad.getManifest().catch((e: unknown) => e)) as AirlockError;
      expect(e1.code).toBe("ERR_UNAUTHORIZED");
      expect(e1.message).toMatch(/rejected the credentials/);
      expect(e1.message).not.toContain("bad-pass-77");
      const e2 = (await none.getManifest().catch((e: unknown) => e)) as AirlockError;
      expect(e2.code).toBe("ERR_UNAUTHORIZED");
      expect(e2.message).toMatch(/authentication is required/);
    } finally {
      await bad.close();
      await none.close();
    }
  });
});
