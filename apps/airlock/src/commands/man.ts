/**
 * `airlock man [VERB]` and `airlock man --output DIR`: manual pages in roff (man(7)) generated from
 * the program's own commander definitions — each verb's usage, description, options and the
 * examples its `--help` shows — so that they never fall behind the CLI.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command, Option } from "commander";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { VERSION } from "../version.js";

/**
 * Escapes text for roff: backslashes, a `.` or `'` that would start a request at a line's start, and
 * every non-ASCII character as its `\[uXXXX]` escape (troff reads its input as Latin-1).
 */
function roff(text: string): string {
  return text
    .replace(/\\/g, "\\e")
    .replace(/[^\x00-\x7f]/gu, (c) => `\\[u${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}]`)
    .split("\n")
    .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
    .join("\n");
}

/** A flag as a man page shows it: hyphens escaped so they render as ASCII `-`. */
function flagText(flags: string): string {
  return roff(flags).replace(/-/g, "\\-");
}

function optionsSection(options: readonly Option[]): string[] {
  const lines: string[] = [];
  for (const o of options) {
    if (o.hidden) continue;
    lines.push(".TP", `.B ${flagText(o.flags)}`, roff(o.description || ""));
    if (o.defaultValue !== undefined && typeof o.defaultValue !== "boolean") lines.push(`(default: ${roff(String(o.defaultValue))})`);
  }
  return lines;
}

/** What `cmd` adds after its `--help` text (examples, notes), read from commander's help events. */
function helpAfter(cmd: Command): string {
  let text = "";
  (cmd as unknown as NodeJS.EventEmitter).emit("afterHelp", { error: false, command: cmd, write: (s: string) => (text += s) });
  return text.replace(/^\n+/, "").replace(/\s+$/, "");
}

function page(name: string, summary: string, synopsis: string, description: string, options: readonly Option[], extra: string, seeAlso: string[]): string {
  const lines = [
    `.TH ${name.toUpperCase()} 1 "" "airlock ${VERSION}" "airlock manual"`,
    ".SH NAME",
    `${flagText(name)} \\- ${roff(summary)}`,
    ".SH SYNOPSIS",
    `.B ${flagText(synopsis)}`,
    ".SH DESCRIPTION",
    roff(description),
  ];
  const opts = optionsSection(options);
  if (opts.length > 0) lines.push(".SH OPTIONS", ...opts);
  if (extra) lines.push(".SH NOTES AND EXAMPLES", ".nf", roff(extra), ".fi");
  lines.push(".SH SEE ALSO", seeAlso.map((s) => `.BR ${s.replace(/\((\d)\)$/, " ($1)")}`).join(",\n"));
  return `${lines.join("\n")}\n`;
}

/** The man page of one verb (`airlock-copy(1)`): usage, description, options, examples, global options. */
export function verbManPage(program: Command, verb: Command): string {
  const name = `${program.name()}-${verb.name()}`;
  const description = verb.description();
  const summary = description.split("\n")[0] ?? "";
  const globals = `Global options (before the verb) are described in ${program.name()}(1).`;
  return page(name, summary, `${program.name()} [global options] ${verb.name()} ${verb.usage()}`, `${description}\n\n${globals}`, [...verb.options], helpAfter(verb), [
    `${program.name()}(1)`,
  ]);
}

/** The program's man page (`airlock(1)`): the global options and the list of verbs. */
export function programManPage(program: Command): string {
  const verbs = visibleVerbs(program);
  const list = verbs.map((v) => `${v.name()}\t${(v.description().split("\n")[0] ?? "").trim()}`).join("\n");
  const description = `${program.description()}\n\nVerbs (each has its own page, ${program.name()}-VERB(1)):`;
  const text = page(program.name(), program.description(), `${program.name()} [global options] VERB [options] [arguments]`, description, [...program.options], helpAfter(program), verbs.map((v) => `${program.name()}-${v.name()}(1)`));
  // The verb list goes right after the description, as a table-like indented block.
  return text.replace(".SH OPTIONS", `.PP\n.nf\n.ta 22n\n${roff(list)}\n.fi\n.SH OPTIONS`);
}

function visibleVerbs(program: Command): Command[] {
  return program.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
}

/** Registers the `man` verb. */
export function registerMan(program: Command, cli: CliContext): void {
  program
    .command("man")
    .description("Print a manual page (roff) for airlock or one verb, or write them all with --output")
    .argument("[verb]", "the verb whose page to print (default: airlock's own page)")
    .option("-o, --output <dir>", "write airlock.1 and airlock-VERB.1 for every verb into DIR")
    .addHelpText(
      "after",
      `
Examples:
  airlock man copy | man -l -                       # read airlock-copy(1)
  airlock man --output /usr/local/share/man/man1    # install every page`,
    )
    .action(async (verb: string | undefined, opts: { output?: string }) => {
      const verbs = visibleVerbs(program);
      if (opts.output) {
        await mkdir(opts.output, { recursive: true });
        await writeFile(join(opts.output, `${program.name()}.1`), programManPage(program));
        for (const v of verbs) await writeFile(join(opts.output, `${program.name()}-${v.name()}.1`), verbManPage(program, v));
        cli.stdout.write(`${verbs.length + 1} manual pages written to ${opts.output}\n`);
        return;
      }
      if (verb === undefined) {
        cli.stdout.write(programManPage(program));
        return;
      }
      const cmd = verbs.find((v) => v.name() === verb || v.aliases().includes(verb));
      if (!cmd) throw new UsageError(`man: unknown verb ${JSON.stringify(verb)}; run airlock --help for the list`);
      cli.stdout.write(verbManPage(program, cmd));
    });
}
