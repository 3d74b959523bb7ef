/**
 * `airlock completion bash|zsh|fish` and `airlock help VERB`: the scripts are generated from the
 * program's commander definitions, so every verb and every option must appear, and bash must
 * complete a half-typed verb and option when the script is sourced.
 */
import { spawnSync } from "node:child_process";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../../apps/airlock/src/cli.js";
import type { CliContext } from "../../apps/airlock/src/context.js";
import { runCli } from "../support/cli.js";

/** The program as the CLI builds it, to compare the scripts against. */
function program() {
  const sink = new PassThrough();
  return buildProgram({ stdout: sink, stderr: sink as unknown as NodeJS.WriteStream, signal: new AbortController().signal, globals: () => ({}), progress: () => undefined as never } as CliContext);
}

/** Sources the bash script and asks it to complete `words` (the last one being typed). */
function bashComplete(script: string, words: string[]): string[] {
  const quoted = words.map((w) => `'${w}'`).join(" ");
  const r = spawnSync("bash", ["-c", `${script}\nCOMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _airlock_complete; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter(Boolean);
}

describe("airlock completion", () => {
  it("bash: a valid script naming every verb and option, that completes verbs and options", async () => {
    const r = await runCli(["completion", "bash"]);
    expect(r.code).toBe(0);
    expect(spawnSync("bash", ["-n"], { input: r.stdout }).status).toBe(0);
    const p = await program();
    for (const c of p.commands) {
      expect(r.stdout).toContain(`${c.name()}`);
      for (const o of c.options) if (o.long && !o.hidden) expect(r.stdout, `${c.name()} ${o.long}`).toContain(o.long);
    }
    expect(bashComplete(r.stdout, ["airlock", "comp"])).toEqual(["completion"]);
    expect(bashComplete(r.stdout, ["airlock", "inspect", "--ra"])).toEqual(["--raw"]);
    expect(bashComplete(r.stdout, ["airlock", "--debug", "export", "--spl"])).toEqual(["--split-size"]);
    expect(bashComplete(r.stdout, ["airlock", "--ins"])).toEqual(["--insecure-policy"]);
  });

  it("zsh and fish: every verb with its description and its options", async () => {
    const zsh = await runCli(["completion", "zsh"]);
    const fish = await runCli(["completion", "fish"]);
    expect([zsh.code, fish.code]).toEqual([0, 0]);
    expect(zsh.stdout.startsWith("#compdef airlock\n")).toBe(true);
    const p = await program();
    for (const c of p.commands) {
      expect(zsh.stdout).toContain(`'${c.name()}:`);
      expect(fish.stdout).toContain(`-a ${c.name()} -d`);
      for (const o of c.options) if (o.long && !o.hidden) expect(fish.stdout, `${c.name()} ${o.long}`).toContain(`__fish_seen_subcommand_from ${[c.name(), ...c.aliases()].join(" ")}' -l ${o.long.slice(2)}`);
    }
    for (const shell of ["zsh", "fish"]) {
      if (spawnSync("sh", ["-c", `command -v ${shell}`]).status === 0) expect(spawnSync(shell, ["-n"], { input: shell === "zsh" ? zsh.stdout : fish.stdout }).status).toBe(0);
    }
  });

  it("refuses a shell it does not know, naming the ones it does", async () => {
    const r = await runCli(["completion", "tcsh"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown shell "tcsh"; use one of bash, zsh, fish');
  });
});

describe("airlock help VERB", () => {
  it("prints the verb's usage and options, for every verb", async () => {
    for (const c of (await program()).commands) {
      const r = await runCli(["help", c.name()]);
      expect(r.code, c.name()).toBe(0);
      expect(r.stdout).toContain(`Usage: airlock ${c.name()}`);
      for (const o of c.options) if (o.long && !o.hidden) expect(r.stdout, `${c.name()} ${o.long}`).toContain(o.long);
    }
  });
});
