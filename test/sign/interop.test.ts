/**
 * @airlock/sign against the real tools: what airlock signs, skopeo (gpgme) and gpg accept; what
 * skopeo signs with gpg, airlock accepts; skopeo and airlock agree on policy.json decisions and on
 * which policy files are invalid. Every gpg and skopeo run uses its own temporary GNUPGHOME.
 */
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { digestOf } from "@airlock/core";
import {
  evaluatePolicy,
  keyFingerprints,
  marshalPayload,
  parsePolicy,
  parseUntrustedPayload,
  signBundleMetadata,
  signManifest,
  verifySignature,
} from "@airlock/sign";
import * as openpgp from "openpgp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const KEYS = join(root, "fixtures", "keys");
const IMAGE = join(root, "fixtures", "dir", "docker");
const key = (name: string) => readFileSync(join(KEYS, name));
const PASSPHRASE_FILE = join(KEYS, "protected.passphrase");
const REF = "registry.example.com/team/app:1.0";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool and returns its exit code and output (never throws for a non-zero exit). */
function run(cmd: string, args: string[], env: Record<string, string> = {}, input?: Uint8Array): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: { ...process.env, ...env }, encoding: "buffer", maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code ?? 1) : 0;
      if (typeof code !== "number") return reject(err);
      resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
    });
    if (input) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

let work: string;
let gnupg: string; // a GNUPGHOME holding the fixture keys (secret and public)
const env = () => ({ GNUPGHOME: gnupg });
const gpg = (args: string[], input?: Uint8Array) => run("gpg", ["--batch", "--no-tty", ...args], env(), input);

/** The primary fingerprint of a fixture key as gpg itself reports it. */
async function gpgFingerprint(email: string, which: "pub" | "sub" = "pub"): Promise<string> {
  const r = await gpg(["--with-colons", "--list-keys", email]);
  const lines = r.stdout.split("\n");
  const at = lines.findIndex((l) => l.startsWith(`${which}:`));
  const fpr = lines.slice(at).find((l) => l.startsWith("fpr:"));
  if (at < 0 || fpr === undefined) throw new Error(`gpg does not know ${email}: ${r.stderr}`);
  return fpr.split(":")[9] as string;
}

beforeAll(async () => {
  // Real path: skopeo resolves symlinks in dir: scopes, and the policies below name `work`.
  work = realpathSync(mkdtempSync(join(tmpdir(), "airlock-sign-")));
  gnupg = mkdtempSync("/tmp/alg-");
  for (const name of ["signer", "protected", "subkey", "expired"]) {
    const r = await gpg(["--pinentry-mode", "loopback", "--passphrase-file", PASSPHRASE_FILE, "--import", join(KEYS, `${name}.sec.asc`)]);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await run("gpgconf", ["--kill", "all"], env());
  rmSync(gnupg, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

const MANIFEST = () => readFileSync(join(IMAGE, "manifest.json"));

describe("skopeo standalone-verify accepts what airlock signs", () => {
  async function skopeoVerify(signature: Uint8Array, fingerprint: string, reference = REF, manifest: Uint8Array = MANIFEST()): Promise<Run> {
    const dir = mkdtempSync(join(work, "verify-"));
    writeFileSync(join(dir, "manifest.json"), manifest);
    writeFileSync(join(dir, "signature"), signature);
    return run("skopeo", ["standalone-verify", join(dir, "manifest.json"), reference, fingerprint, join(dir, "signature")], env());
  }

  it("with a gpg-made key, armored or passphrase-protected", async () => {
    const fpr = await gpgFingerprint("signer@airlock.test");
    expect(await keyFingerprints(key("signer.pub.asc"))).toEqual([fpr]);
    const sig = await signManifest({ manifest: MANIFEST(), dockerReference: REF, privateKey: key("signer.sec.asc") });
    const r = await skopeoVerify(sig, fpr);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe(`Signature verified, digest ${digestOf(MANIFEST())}`);

    const protectedFpr = await gpgFingerprint("protected@airlock.test");
    const passphrase = readFileSync(PASSPHRASE_FILE, "utf8").trim();
    const sig2 = await signManifest({ manifest: MANIFEST(), dockerReference: REF, privateKey: key("protected.sec.asc"), passphrase });
    expect((await skopeoVerify(sig2, protectedFpr)).code).toBe(0);
  });

  it("with a key made by openpgp.js (ECC curve25519)", async () => {
    const { publicKey, privateKey } = await openpgp.generateKey({ type: "ecc", userIDs: [{ email: "generated@airlock.test" }], format: "armored" });
    expect((await gpg(["--import"], new TextEncoder().encode(publicKey))).code).toBe(0);
    const [fpr] = await keyFingerprints(publicKey);
    const sig = await signManifest({ manifest: MANIFEST(), dockerReference: "docker.io/library/busybox:latest", privateKey });
    expect(await skopeoVerify(sig, fpr as string, "busybox:latest")).toMatchObject({ code: 0 });
  });

  it("and skopeo names the signing subkey, as airlock's signingKeyFingerprint does", async () => {
    const sig = await signManifest({ manifest: MANIFEST(), dockerReference: REF, privateKey: key("subkey.sec.asc") });
    const v = await verifySignature({ signature: sig, publicKeys: key("subkey.pub.asc"), manifest: MANIFEST() });
    expect(v.keyFingerprint).toBe(await gpgFingerprint("subkey@airlock.test"));
    expect(v.signingKeyFingerprint).toBe(await gpgFingerprint("subkey@airlock.test", "sub"));
    expect(await skopeoVerify(sig, v.signingKeyFingerprint)).toMatchObject({ code: 0 });
    // skopeo 1.9.3 compares the subkey's fingerprint only.
    expect((await skopeoVerify(sig, v.keyFingerprint)).stderr).toMatch(/does not match expected fingerprint/);
  });

  it("while skopeo too refuses a wrong identity, another manifest or altered bytes", async () => {
    const fpr = await gpgFingerprint("signer@airlock.test");
    const sig = await signManifest({ manifest: MANIFEST(), dockerReference: REF, privateKey: key("signer.sec.asc") });
    expect((await skopeoVerify(sig, fpr, "registry.example.com/team/app:2.0")).stderr).toMatch(/does not match/);
    expect((await skopeoVerify(sig, fpr, REF, new TextEncoder().encode("{}"))).stderr).toMatch(/does not match/);
    const altered = Uint8Array.from(sig);
    const at = Buffer.from(sig).indexOf("team/app");
    altered[at] = "T".charCodeAt(0);
    expect((await skopeoVerify(altered, fpr)).code).not.toBe(0);
    await expect(verifySignature({ signature: altered, publicKeys: key("signer.pub.asc"), manifest: MANIFEST() })).rejects.toThrow(/does not verify/);
  });
});

describe("airlock accepts what skopeo signs with gpg", () => {
  async function skopeoSign(fingerprint: string, extra: string[] = []): Promise<Uint8Array> {
    const out = join(mkdtempSync(join(work, "sign-")), "signature");
    const r = await run("skopeo", ["standalone-sign", ...extra, join(IMAGE, "manifest.json"), REF, fingerprint, "-o", out], env());
    expect(r.code, r.stderr).toBe(0);
    return readFileSync(out);
  }

  it("verifies skopeo's signatures (gpg compresses them) with armored or binary keyrings", async () => {
    const fpr = await gpgFingerprint("signer@airlock.test");
    const sig = await skopeoSign(fpr);
    expect((await gpg(["--list-packets"], sig)).stdout).toMatch(/:compressed packet:/);
    for (const publicKeys of [key("signer.pub.asc"), key("signer.pub.gpg"), [key("protected.pub.asc"), key("signer.pub.asc")]]) {
      const v = await verifySignature({ signature: sig, publicKeys, manifest: MANIFEST(), expectedDockerReference: REF, expectedFingerprints: [fpr] });
      expect(v).toMatchObject({ keyFingerprint: fpr, dockerReference: REF, dockerManifestDigest: digestOf(MANIFEST()), creator: expect.stringMatching(/^atomic /) });
      expect(v.timestamp?.getTime()).toBeGreaterThan(Date.now() - 600_000);
    }
    await expect(verifySignature({ signature: sig, publicKeys: key("protected.pub.asc"), manifest: MANIFEST() })).rejects.toThrow(
      `signature made by key ${fpr}, not one of the trusted keys`,
    );
  });

  it("verifies a signature made with a passphrase-protected key (--passphrase-file)", async () => {
    const fpr = await gpgFingerprint("protected@airlock.test");
    const sig = await skopeoSign(fpr, ["--passphrase-file", PASSPHRASE_FILE]);
    await expect(verifySignature({ signature: sig, publicKeys: key("protected.pub.asc"), manifest: MANIFEST(), expectedDockerReference: REF })).resolves.toMatchObject({
      keyFingerprint: fpr,
    });
  });

  it("refuses skopeo's signature by the expired key", async () => {
    const fpr = await gpgFingerprint("expired@airlock.test");
    const out = join(work, "expired.sig");
    // gpg refuses to sign with an expired key, so sign while it was valid.
    const r = await run("gpg", ["--batch", "--faked-system-time", "20200101T120000!", "--local-user", fpr, "--output", out, "--sign", join(IMAGE, "manifest.json")], env());
    expect(r.code, r.stderr).toBe(0);
    await expect(verifySignature({ signature: readFileSync(out), publicKeys: key("expired.pub.asc"), manifest: MANIFEST() })).rejects.toThrow(
      `key ${fpr} expired on 2020-01-02T00:00:00Z`,
    );
    // gpgme refuses it too (summary KEY_EXPIRED).
    const s = await run("skopeo", ["standalone-verify", join(IMAGE, "manifest.json"), REF, fpr, out], env());
    expect(s.stderr).toMatch(/Invalid GPG signature/);
  });

  it("refuses a gpg signed message that decompresses to more than 4 MiB, before trusting it", async () => {
    const big = join(work, "big.json");
    writeFileSync(big, Buffer.alloc(5 << 20, 0x20));
    const out = join(work, "big.sig");
    const r = await run("gpg", ["--batch", "--local-user", await gpgFingerprint("signer@airlock.test"), "--output", out, "--sign", big], env());
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out).length).toBeLessThan(64 << 10);
    await expect(verifySignature({ signature: readFileSync(out), publicKeys: key("signer.pub.asc"), manifest: MANIFEST() })).rejects.toThrow(/Maximum decompressed message size exceeded/);
  });

  it("writes exactly the payload bytes containers/image writes", async () => {
    const sig = await skopeoSign(await gpgFingerprint("signer@airlock.test"));
    const decrypted = await gpg(["--decrypt"], sig);
    expect(decrypted.code, decrypted.stderr).toBe(0);
    const skopeoPayload = new TextEncoder().encode(decrypted.stdout);
    const parsed = parseUntrustedPayload(skopeoPayload);
    expect(Buffer.from(marshalPayload(parsed)).toString()).toBe(decrypted.stdout);
  });
});

describe("gpg verifies what airlock signs", () => {
  it("a simple signing message and a detached bundle signature", async () => {
    const fpr = await gpgFingerprint("signer@airlock.test");
    const sig = await signManifest({ manifest: MANIFEST(), dockerReference: REF, privateKey: key("signer.sec.asc") });
    const r = await gpg(["--status-fd", "1", "--decrypt"], sig);
    expect(r.stdout).toMatch(new RegExp(`\\[GNUPG:\\] VALIDSIG ${fpr} `));
    expect(r.stdout).toContain(`"docker-reference":"${REF}"`);

    const metadata = new TextEncoder().encode('{"bundle":1}\n');
    const dir = mkdtempSync(join(work, "bundle-"));
    writeFileSync(join(dir, "metadata.json"), metadata);
    writeFileSync(join(dir, "metadata.json.sig"), await signBundleMetadata(metadata, key("signer.sec.asc")));
    const v = await gpg(["--status-fd", "1", "--verify", join(dir, "metadata.json.sig"), join(dir, "metadata.json")]);
    expect(v.stdout).toMatch(new RegExp(`\\[GNUPG:\\] VALIDSIG ${fpr} `));
    writeFileSync(join(dir, "metadata.json"), '{"bundle":2}\n');
    expect((await gpg(["--status-fd", "1", "--verify", join(dir, "metadata.json.sig"), join(dir, "metadata.json")])).stdout).toMatch(/BADSIG/);
  });
});

describe("skopeo and airlock agree on policy.json", () => {
  const permissive = () => {
    const p = join(work, "permissive.json");
    writeFileSync(p, '{"default":[{"type":"insecureAcceptAnything"}]}');
    return p;
  };

  /** A dir: copy of the fixture image with the given signatures as signature-1…N. */
  function signedDir(name: string, signatures: Uint8Array[]): string {
    const dir = join(work, name);
    cpSync(IMAGE, dir, { recursive: true });
    for (const [n, s] of signatures.entries()) writeFileSync(join(dir, `signature-${n + 1}`), s);
    return dir;
  }

  async function skopeoAllows(policyFile: string, dir: string): Promise<Run> {
    const out = mkdtempSync(join(work, "out-"));
    return run("skopeo", ["--policy", policyFile, "copy", "-q", `dir:${dir}`, `dir:${out}`], env());
  }

  async function airlockAllows(policyFile: string, dir: string): Promise<string> {
    const signatures = [1, 2, 3].flatMap((n) => {
      try {
        return [readFileSync(join(dir, `signature-${n}`))];
      } catch {
        return [];
      }
    });
    try {
      await evaluatePolicy(parsePolicy(readFileSync(policyFile), policyFile), { transport: "dir", scope: dir, manifest: readFileSync(join(dir, "manifest.json")), signatures });
      return "accepted";
    } catch (err) {
      return (err as Error).message;
    }
  }

  it("decide alike on signatures airlock and skopeo made", async () => {
    const fpr = await gpgFingerprint("signer@airlock.test");
    // skopeo signs while copying (dir: has no Docker identity, so give one).
    const bySkopeo = mkdtempSync(join(work, "by-skopeo-"));
    const c = await run("skopeo", ["--policy", permissive(), "copy", "-q", "--sign-by", fpr, "--sign-identity", REF, `dir:${IMAGE}`, `dir:${bySkopeo}`], env());
    expect(c.code, c.stderr).toBe(0);
    const byAirlock = signedDir("by-airlock", [await signManifest({ manifest: MANIFEST(), dockerReference: REF, privateKey: key("signer.sec.asc") })]);
    const byOther = signedDir("by-other", [await signManifest({ manifest: MANIFEST(), dockerReference: REF, privateKey: key("protected.sec.asc"), passphrase: "airlock-test-passphrase" })]);
    const wrongName = signedDir("wrong-name", [await signManifest({ manifest: MANIFEST(), dockerReference: "registry.example.com/team/app:2.0", privateKey: key("signer.sec.asc") })]);
    const unsigned = signedDir("unsigned", []);

    const policy = (identity: object, keyField: object = { keyPath: join(KEYS, "signer.pub.asc") }) => {
      const p = join(mkdtempSync(join(work, "policy-")), "policy.json");
      writeFileSync(
        p,
        JSON.stringify({
          default: [{ type: "reject" }],
          transports: { dir: { [work]: [{ type: "signedBy", keyType: "GPGKeys", ...keyField, signedIdentity: identity }] } },
        }),
      );
      return p;
    };
    const exact = policy({ type: "exactReference", dockerReference: REF });
    const repo = policy({ type: "exactRepository", dockerRepository: "registry.example.com/team/app" }, { keyData: key("signer.pub.gpg").toString("base64") });

    const cases: [string, string, boolean][] = [
      [exact, bySkopeo, true],
      [exact, byAirlock, true],
      [exact, byOther, false],
      [exact, wrongName, false],
      [exact, unsigned, false],
      [repo, wrongName, true],
      [repo, byOther, false],
    ];
    for (const [policyFile, dir, allowed] of cases) {
      const label = `${dir.slice(work.length)} under ${policyFile === exact ? "exactReference" : "exactRepository"}`;
      const s = await skopeoAllows(policyFile, dir);
      const a = await airlockAllows(policyFile, dir);
      expect(s.code === 0, `skopeo: ${label}: ${s.stderr}`).toBe(allowed);
      expect(a === "accepted", `airlock: ${label}: ${a}`).toBe(allowed);
      if (!allowed) {
        expect(s.stderr, label).toContain("Source image rejected");
        expect(a, label).toMatch(/^Source image rejected: /);
      }
    }
    expect(await airlockAllows(exact, unsigned)).toBe("Source image rejected: A signature was required, but no signature exists");
  });

  it("refuse the same malformed policies", async () => {
    const dir = signedDir("any", []);
    const bad = [
      "{}",
      '{"default":[]}',
      '{"default":[{"type":"insecureAcceptAnything"}],"default":[{"type":"reject"}]}',
      '{"default":[{"type":"insecureAcceptAnything","x":1}]}',
      '{"default":[{"type":"insecureAcceptAnything"}],"transports":{"dir":{"relative":[{"type":"reject"}]}}}',
      '{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyData":"YQ=="}]}',
      '{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"exactReference","dockerReference":"a/b"}}]}',
      '{"default":[{"type":"insecureAcceptAnything"}],}',
    ];
    for (const [n, text] of bad.entries()) {
      const file = join(work, `bad-${n}.json`);
      writeFileSync(file, text);
      const s = await skopeoAllows(file, dir);
      expect(s.code, `skopeo accepted ${text}`).not.toBe(0);
      expect(s.stderr, text).toMatch(/policy/i);
      expect(() => parsePolicy(text, file), text).toThrow(`invalid policy in ${JSON.stringify(file)}`);
    }
  });
});

describe("fixtures/keys", () => {
  it("hold what their README says", async () => {
    const show = async (file: string) => (await gpg(["--with-colons", "--show-keys", join(KEYS, file)])).stdout;
    expect(await show("expired.pub.asc")).toMatch(/^pub:e:255:22:[0-9A-F]{16}:1577836800:1577923200:/m);
    expect(await show("subkey.pub.asc")).toMatch(/^sub:[^:]*:255:22:[^\n]*:s:/m);
    expect(await show("protected.sec.asc")).toMatch(/^sec/m);
    const r = await gpg(["--pinentry-mode", "loopback", "--passphrase", "", "--dry-run", "--import", join(KEYS, "signer.sec.asc")]);
    expect(r.code).toBe(0);
  });
});
