/**
 * Lookaside signature storage over HTTPS is read with the registry's TLS settings, as
 * containers/image reads it with the registry's HTTP client: a lookaside server whose certificate
 * only the registry's cert dir trusts is read with `--src-cert-dir`, and refused without it (one
 * line naming the signature URL and where its certificate is checked). Run through the built
 * binary (its bundle reads registries.d's YAML as the sources do). The registry is a real
 * docker-registry in TLS mode; the lookaside is a static HTTPS server of signature files (any web
 * server would do), with its own private CA.
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runBin, runCli } from "../support/cli.js";
import { FIX, workDir } from "./support.js";

const SINGLE = "sha256:9e00bdbaa6fdb60b991640f0f15ff8dbef3929520e44e7e5ff8f28f47ca8e952";
const SIGNATURE = Buffer.from("not a real signature: copied as it is, never checked (no signedBy policy)");

let reg: RunningRegistry;
let server: Server;
let work: string;
let registriesD: string;
/** Trusts the registry and the lookaside server. */
let bothCAs: string;

beforeAll(async () => {
  work = workDir("airlock-lookaside-tls-");
  reg = await startRegistry({ mode: "tls" });
  const pushed = await runCli(["copy", "-q", "--dest-cert-dir", reg.certDir as string, `oci:${FIX}/oci:single`, `docker://${reg.host}/t/app:1`]);
  expect(pushed.stderr).toBe("");
  // The lookaside server's own CA, unknown to the system and to the registry's cert dir.
  await promisify(execFile)("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(work, "lookaside.key"), "-out", join(work, "lookaside.crt")]);
  const files = new Map([[`/sigs/t/app@sha256=${SINGLE.slice(7)}/signature-1`, SIGNATURE]]);
  server = createServer({ cert: readFileSync(join(work, "lookaside.crt")), key: readFileSync(join(work, "lookaside.key")) }, (req, res) => {
    const body = files.get(req.url ?? "");
    res.writeHead(body ? 200 : 404).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  registriesD = join(work, "registries.d");
  mkdirSync(registriesD);
  writeFileSync(join(registriesD, "lookaside.yaml"), `docker:\n  "${reg.host}":\n    lookaside: https://127.0.0.1:${(server.address() as AddressInfo).port}/sigs\n`);
  bothCAs = join(work, "certs");
  mkdirSync(bothCAs);
  copyFileSync(reg.caFile as string, join(bothCAs, "ca.crt"));
  copyFileSync(join(work, "lookaside.crt"), join(bothCAs, "lookaside.crt"));
});

afterAll(async () => {
  server?.close();
  await reg?.stop();
});

describe("lookaside signatures over HTTPS", () => {
  it("are read with the registry's cert dir (--src-cert-dir): copied with the image", async () => {
    const out = join(work, "copied");
    // The built binary: its bundle must load YAML for registries.d as the sources do.
    const r = await runBin(["--registries.d", registriesD, "copy", "-q", "--src-cert-dir", bothCAs, `docker://${reg.host}/t/app:1`, `dir:${out}`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(readFileSync(join(out, "signature-1"))).toEqual(SIGNATURE);
  });

  it("are refused when the cert dir does not trust the lookaside server: one line naming the URL and the settings", async () => {
    const r = await runBin(["--registries.d", registriesD, "copy", "-q", "--src-cert-dir", reg.certDir as string, `docker://${reg.host}/t/app:1`, `dir:${join(work, "refused")}`]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`cannot read signature https://127.0.0.1:${(server.address() as AddressInfo).port}/sigs/t/app@sha256=`);
    expect(lines[0]).toContain("cert dir");
  });
});
