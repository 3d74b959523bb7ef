/**
 * The client certificate of a --cert-dir (containers-certs.d(5): `*.cert` + `*.key`) presented to
 * a real server: docker-registry with `http.tls.clientcas` refuses every TLS connection without a
 * certificate from that CA. Without the pair airlock fails with a message naming the registry;
 * with it, copy, inspect and list-tags work.
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";

const execFileP = promisify(execFile);
const FIX = join(import.meta.dirname, "../../fixtures");
const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const tmp = mkdtempSync(join(tmpdir(), "airlock-client-cert-"));

/** A CA and a client certificate it signed (openssl), as `ca.pem`, `client.cert`, `client.key` in `dir`. */
async function clientPair(dir: string, cn: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const openssl = (...args: string[]) => execFileP("openssl", args, { cwd: dir });
  await openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", `/CN=${cn} CA`, "-keyout", "ca.key", "-out", "ca.pem");
  await openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${cn}`, "-keyout", "client.key", "-out", "client.csr");
  await openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30", "-out", "client.cert");
}

describe("--cert-dir client certificates against docker-registry with clientcas", () => {
  let reg: RunningRegistry;
  let withPair: string;
  let otherPair: string;
  beforeAll(async () => {
    await clientPair(join(tmp, "trusted"), "airlock-client");
    await clientPair(join(tmp, "untrusted"), "stranger");
    reg = await startRegistry({ mode: "tls", clientCAs: [join(tmp, "trusted", "ca.pem")] });
    // certs.d layout: the server's CA as ca.crt, and the client pair.
    const certDir = (name: string, from: string) => {
      const d = join(tmp, name);
      mkdirSync(d);
      copyFileSync(reg.caFile as string, join(d, "ca.crt"));
      copyFileSync(join(from, "client.cert"), join(d, "client.cert"));
      copyFileSync(join(from, "client.key"), join(d, "client.key"));
      return d;
    };
    withPair = certDir("certs-with-pair", join(tmp, "trusted"));
    otherPair = certDir("certs-other-pair", join(tmp, "untrusted"));
  });
  afterAll(async () => {
    await reg?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("without the pair, copy and inspect fail with a message naming the registry", async () => {
    const copy = await runCli(["copy", "-q", "--dest-cert-dir", reg.certDir as string, `oci:${FIX}/oci:single`, `docker://${reg.host}/mtls/app:1.0`]);
    expect(copy.code).toBe(1);
    expect(copy.stderr).toContain(reg.host);
    // The server refuses the handshake with an alert, which the client reads once it sent its
    // request: the TLS failure is reported (not a plain-HTTP fallback's 400), with what is missing
    // and where it goes. (Through undici — Bun, Deno — a TLS 1.3 server's alert is seen as a closed
    // connection instead, which the answer to plain HTTP then explains: "speaks HTTPS but ended
    // the TLS connection".)
    expect(copy.stderr).toMatch(/requires a client certificate it trusts \(mutual TLS\) and no client certificate was given \(ERR_SSL_\w+_ALERT_\w+\)/);
    expect(copy.stderr).toContain("client.cert and client.key");
    expect(copy.stderr).toContain("--dest-cert-dir");
    expect(copy.stderr).not.toMatch(/HTTP request to an HTTPS server/);
    const inspect = await runCli(["inspect", "--cert-dir", reg.certDir as string, `docker://${reg.host}/mtls/app:1.0`]);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr).toContain(reg.host);
    expect(inspect.stderr).toMatch(/requires a client certificate .*--cert-dir/);
  });

  it("a pair from a CA the registry does not trust is refused too", async () => {
    const r = await runCli(["copy", "-q", "--dest-cert-dir", otherPair, `oci:${FIX}/oci:single`, `docker://${reg.host}/mtls/app:1.0`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(reg.host);
    expect(r.stderr).toContain(`the client certificate in ${otherPair} was refused`);
  });

  it("with client.cert and client.key in --cert-dir, copy, inspect and list-tags work", async () => {
    const dest = `docker://${reg.host}/mtls/app:1.0`;
    const pushed = await runCli(["copy", "-q", "--dest-cert-dir", withPair, `oci:${FIX}/oci:single`, dest]);
    expect(pushed.stderr).toBe("");
    expect(pushed.code).toBe(0);
    const inspect = await runCli(["inspect", "--cert-dir", withPair, dest]);
    expect(inspect.code).toBe(0);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ Digest: SINGLE, RepoTags: ["1.0"] });
    const tags = await runCli(["list-tags", "--cert-dir", withPair, `docker://${reg.host}/mtls/app`]);
    expect(JSON.parse(tags.stdout).Tags).toEqual(["1.0"]);
    const pulled = await runCli(["copy", "-q", "--src-cert-dir", withPair, dest, `oci:${join(tmp, "pulled")}:app`]);
    expect(pulled.code).toBe(0);
  });
});
