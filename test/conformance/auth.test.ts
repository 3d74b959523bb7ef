/**
 * Basic authentication, the same assertions against airlock serve (htpasswd, bcrypt) and
 * docker-registry 2.8.2 (`auth.htpasswd`): no or wrong credentials are 401 UNAUTHORIZED with a
 * Basic challenge, and a push with wrong credentials stores nothing.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createRegistryServer, LayoutRegistryStore, type RegistryServer } from "@airlock/registry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { header, send, type Target } from "./client.js";
import { pushBlob, sha256 } from "./conformance.js";

const execFileP = promisify(execFile);

function authConformance(getTarget: () => Target): void {
  it("a request without credentials is 401 UNAUTHORIZED with a Basic challenge", async () => {
    const t = getTarget();
    for (const path of ["/v2/", "/v2/_catalog", "/v2/some/repo/tags/list"]) {
      const r = await send(t, "GET", path, { anonymous: true });
      expect(r.status).toBe(401);
      expect(r.codes).toEqual(["UNAUTHORIZED"]);
      expect(header(r, "www-authenticate")).toMatch(/^Basic realm="[^"]+"/);
    }
  });

  it("a wrong password or an unknown user is 401; the right credentials are 200", async () => {
    const t = getTarget();
    const user = t.auth!.username;
    expect((await send(t, "GET", "/v2/", { credentials: { username: user, password: "wrong" } })).status).toBe(401);
    expect((await send(t, "GET", "/v2/", { credentials: { username: "nobody", password: t.auth!.password } })).status).toBe(401);
    expect((await send(t, "GET", "/v2/", { headers: { Authorization: "Basic !!!not-base64" }, anonymous: true })).status).toBe(401);
    expect((await send(t, "GET", "/v2/")).status).toBe(200);
  });

  it("a push with wrong credentials stores nothing", async () => {
    const t = getTarget();
    const data = randomBytes(256);
    const wrong = { username: t.auth!.username, password: "wrong" };
    const post = await send(t, "POST", "/v2/auth/test/blobs/uploads/", { credentials: wrong });
    expect(post.status).toBe(401);
    const single = await send(t, "POST", `/v2/auth/test/blobs/uploads/?digest=${sha256(data)}`, { credentials: wrong, body: data, headers: { "Content-Type": "application/octet-stream" } });
    expect(single.status).toBe(401);
    expect((await send(t, "HEAD", `/v2/auth/test/blobs/${sha256(data)}`)).status).toBe(404);
    // With the right credentials the same push works.
    await pushBlob(t, "auth/test", data);
    expect((await send(t, "HEAD", `/v2/auth/test/blobs/${sha256(data)}`)).status).toBe(200);
  });
}

describe("basic auth: airlock serve", () => {
  const dir = mkdtempSync(join(tmpdir(), "airlock-auth-"));
  let server: RegistryServer;
  let target: Target;
  const log: string[] = [];
  const password = `pw-${randomBytes(6).toString("hex")}`;
  beforeAll(async () => {
    const { stdout } = await execFileP("htpasswd", ["-Bbn", "alice", password]);
    await fs.writeFile(join(dir, "htpasswd"), `# users\n${stdout}bob:{SHA}not-bcrypt\n`);
    server = createRegistryServer({ store: await LayoutRegistryStore.open(join(dir, "store")), auth: { htpasswdFile: join(dir, "htpasswd") }, log: (l) => log.push(l) });
    target = { ...(await server.listen("127.0.0.1:0")), auth: { username: "alice", password } };
  });
  afterAll(async () => {
    await server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  authConformance(() => target);

  it("skips entries that are not bcrypt, and never logs a password", async () => {
    expect(log.some((l) => /htpasswd:\d+: .*"bob".* not bcrypt/.test(l))).toBe(true);
    expect((await send(target, "GET", "/v2/", { credentials: { username: "bob", password: "anything" } })).status).toBe(401);
    expect(log.some((l) => l.includes(password))).toBe(false);
    expect(log.some((l) => / - alice \[/.test(l))).toBe(true);
  });
});

describe("basic auth: docker-registry 2.8.2", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "basic" });
  });
  afterAll(async () => {
    await reg?.stop();
  });
  authConformance(() => ({ url: reg.url, host: reg.host, auth: { username: reg.username!, password: reg.password! } }));
});
