/**
 * `airlock man`: manual pages generated from the program's commander definitions. Every verb gets
 * a page naming each of its options and the examples its --help shows, and groff (man's renderer)
 * reads every page without a warning.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { buildProgram } from "../../apps/airlock/src/cli.js";
import type { CliContext } from "../../apps/airlock/src/context.js";
import { runCli } from "../support/cli.js";

function program() {
  const sink = new PassThrough();
  return buildProgram({ stdout: sink, stderr: sink as unknown as NodeJS.WriteStream, signal: new AbortController().signal, globals: () => ({}), progress: () => undefined as never } as CliContext);
}

/** How a flag reads in roff source (hyphens escaped). */
const roffFlag = (flag: string) => flag.replace(/-/g, "\\-");

const hasGroff = spawnSync("groff", ["--version"]).status === 0;
const dir = mkdtempSync(join(tmpdir(), "airlock-man-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("airlock man", () => {
  it("--output writes airlock.1 and one page per verb, each with every option of its verb", async () => {
    const r = await runCli(["man", "--output", dir]);
    expect(r.code, r.stderr).toBe(0);
    const p = await program();
    const verbs = p.commands.map((c) => c.name());
    expect(readdirSync(dir).sort()).toEqual(["airlock.1", ...verbs.map((v) => `airlock-${v}.1`)].sort());
    for (const c of p.commands) {
      const text = readFileSync(join(dir, `airlock-${c.name()}.1`), "utf8");
      expect(text).toMatch(new RegExp(`^\\.TH AIRLOCK-${c.name().toUpperCase()} 1 `));
      for (const o of c.options) if (o.long && !o.hidden) expect(text, `${c.name()} ${o.long}`).toContain(roffFlag(o.long));
    }
    const top = readFileSync(join(dir, "airlock.1"), "utf8");
    for (const v of verbs) expect(top).toContain(`.BR airlock-${v} (1)`);
    for (const o of p.options) if (o.long) expect(top).toContain(roffFlag(o.long));
  });

  it("a verb's page carries the examples of its --help, and renders as text", async () => {
    const r = await runCli(["man", "copy"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(".SH NOTES AND EXAMPLES");
    expect(r.stdout).toContain("airlock copy docker://docker.io/library/busybox:latest oci:./layout:busybox");
    if (!hasGroff) return;
    const out = spawnSync("groff", ["-man", "-Tutf8", "-ww"], { input: r.stdout, encoding: "utf8", env: { ...process.env, GROFF_NO_SGR: "1" } });
    expect(out.stderr).toBe("");
    // Plain text: overstruck bold removed, an escaped hyphen (drawn as U+2010 or U+2212) as "-".
    const text = out.stdout.replace(/.\x08/gu, "").replace(/[\u2010\u2212]/g, "-");
    expect(text).toMatch(/^ +--src-tls-verify/m);
  });

  it.skipIf(!hasGroff)("groff reads every page without a warning", () => {
    for (const f of readdirSync(dir)) {
      const out = spawnSync("groff", ["-man", "-Tutf8", "-ww", "-z", join(dir, f)], { encoding: "utf8" });
      expect(out.stderr, f).toBe("");
    }
  });

  it("an unknown verb is a usage error", async () => {
    const r = await runCli(["man", "frobnicate"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/man: unknown verb "frobnicate"/);
  });
});
