/**
 * Simple signing of a signed Docker schema 1 manifest names the digest of its JWS payload, as
 * containers/image's manifest.Digest computes it: what airlock signs, skopeo verifies, and what
 * skopeo signs, airlock verifies.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { makeSchema1Image } from "../support/schema1-image.js";
import { type GnuPG, gnupgWith, key, run, workDir } from "./support.js";

const REF = "registry.example.com/team/s1:latest";
let work: string;
let gpg: GnuPG;
let manifest: string;
let digest: string;

beforeAll(async () => {
  work = workDir("airlock-schema1-sign-");
  gpg = await gnupgWith(["signer"]);
  const image = await makeSchema1Image({ signed: true });
  manifest = join(work, "manifest.json");
  writeFileSync(manifest, image.manifest);
  digest = image.digest;
});
afterAll(async () => {
  await gpg?.close();
});

it("airlock signs the payload digest, which skopeo verifies; skopeo's signature airlock verifies", async () => {
  const fpr = await gpg.fingerprint("signer@airlock.test");
  const mine = join(work, "mine.sig");
  expect((await runCli(["standalone-sign", manifest, REF, "--key", key("signer.sec.asc"), "-o", mine])).code).toBe(0);
  const v = await run("skopeo", ["standalone-verify", manifest, REF, fpr, mine], gpg.env);
  expect(v.stdout.trim()).toBe(`Signature verified, digest ${digest}`);

  const theirs = join(work, "theirs.sig");
  expect((await run("skopeo", ["standalone-sign", "-o", theirs, manifest, REF, fpr], gpg.env)).code).toBe(0);
  const r = await runCli(["standalone-verify", manifest, REF, fpr, theirs, "--public-key-file", key("signer.pub.asc")]);
  expect(r.stderr).toBe("");
  expect(r.stdout).toContain(digest);
});
