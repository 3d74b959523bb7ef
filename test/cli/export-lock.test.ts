/**
 * An interrupted export says what it kept and that a rerun resumes (in --json, as an NDJSON error
 * event). Two exports to the same output never interleave: while one writes OUT, a second fails at once
 * with one line naming the first (its process id) and what to do, and the first finishes a bundle
 * that verifies. A lock left by a killed export is taken over. Run through the built binary, two
 * processes at once, on an OCI layout written here (a slow export: --rate-limit).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, promises as fs, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AIRLOCK_BIN, runBin, runCommand } from "../support/cli.js";
import { putLayoutBlob, putLayoutImage, writeLayoutIndex } from "../support/oci-layout.js";

let work: string;
let images: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "airlock-export-lock-"));
  const layout = join(work, "layout");
  await writeLayoutIndex(layout, { app: await putLayoutImage(layout, [await putLayoutBlob(layout, randomBytes(2 * 1024 * 1024))]) });
  images = join(work, "images.yaml");
  await fs.writeFile(images, `version: 1\nimages:\n  - source: oci:${layout}:app\n    as: team/app:1.0\n`);
});

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe("export to an output another export is writing", () => {
  it("fails at once naming the other process; the first finishes a bundle that verifies", async () => {
    const out = join(work, "same.tar");
    // ~2 s at 1 MiB/s: long enough for the second export to start meanwhile.
    const first = runCommand(process.execPath, [AIRLOCK_BIN, "export", "-q", "--rate-limit", "1M", "-f", images, "-o", out]);
    for (let i = 0; i < 200 && !existsSync(`${out}.lock`); i++) await new Promise((r) => setTimeout(r, 10));
    expect(existsSync(`${out}.lock`)).toBe(true);
    const owner = (await fs.readFile(`${out}.lock`, "utf8")).split(" ")[0]; // "PID TOKEN"
    const second = await runBin(["export", "-q", "-f", images, "-o", out]);
    expect(second.code).toBe(1);
    const lines = second.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(`airlock: another airlock export (process ${owner}) is writing ${out}: wait for it to finish, or write this bundle elsewhere with -o; if no export is running, remove ${out}.lock`);
    const done = await first;
    expect(done.code, done.stderr).toBe(0);
    expect(existsSync(`${out}.lock`)).toBe(false);
    const v = await runBin(["verify", out]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });

  it("takes over a lock that names its own process id (a container's PID 1 after a restart), and removes set-aside files a killed --keep-going run left", async () => {
    const out = join(work, "own.tar");
    await fs.writeFile(`${out}.partial.superseded`, "left by a killed export");
    await fs.writeFile(`${out}.journal.json.superseded`, "{}");
    // sh writes its pid, then exec keeps that pid for airlock.
    const r = await runCommand("sh", ["-c", `echo $$ > '${out}.lock' && exec '${process.execPath}' '${AIRLOCK_BIN}' export -q -f '${images}' -o '${out}'`]);
    expect(r.code, r.stderr).toBe(0);
    expect((await fs.readdir(work)).filter((f) => f.startsWith("own.tar")).sort()).toEqual(["own.tar", "own.tar.sha256"]);
  });

  it("takes over the lock of an export that was killed", async () => {
    const out = join(work, "stale.tar");
    // The id of a process that has exited.
    const child = spawn(process.execPath, ["-e", "0"]);
    const dead = await new Promise<number>((resolve) => child.on("exit", () => resolve(child.pid as number)));
    await fs.writeFile(`${out}.lock`, `${dead}\n`);
    const r = await runBin(["export", "-q", "-f", images, "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(`${out}.lock`)).toBe(false);
    expect(existsSync(out)).toBe(true);
  });
});

describe("an export interrupted with SIGINT", () => {
  /** Starts a slow export, interrupts it once it writes, and returns how it ended. */
  async function interrupted(out: string, extra: string[]): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, [AIRLOCK_BIN, "export", "--rate-limit", "1M", "-f", images, "-o", out, ...extra]);
    let stderr = "";
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    for (let i = 0; i < 300 && !existsSync(`${out}.partial`); i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300));
    child.kill("SIGINT");
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    return { code, stderr };
  }

  it("names the partial bundle and says that the same command resumes it; the rerun finishes it", async () => {
    const out = join(work, "int.tar");
    const r = await interrupted(out, ["-q"]);
    expect(r.code).toBe(1);
    // How far it got (when a blob was written before the interrupt), then the error.
    const lines = r.stderr.trim().split("\n");
    expect(lines.length).toBeLessThanOrEqual(2);
    if (lines.length === 2) expect(lines[0]).toMatch(/^Export failed after \d+\.\d s: 0 of 1 image\(s\) done/);
    expect(lines.at(-1)).toBe(`airlock: interrupted: the unfinished bundle is kept as ${out}.partial (see ${out}.journal.json); rerun the same export to resume, or delete those files`);
    expect(existsSync(out)).toBe(false);
    const again = await runBin(["export", "-q", "-f", images, "-o", out]);
    expect(again.code, again.stderr).toBe(0);
    expect((await runBin(["verify", out])).code).toBe(0);
  });

  it("with --json, ends the NDJSON stream with an error event", async () => {
    const out = join(work, "int-json.tar");
    const r = await interrupted(out, ["--json"]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    const events = lines.map((l) => JSON.parse(l)); // every line is JSON
    expect(events.at(-2)).toMatchObject({ type: "summary", ok: false, code: "ERR_ABORTED" });
    expect(events.at(-1)).toMatchObject({ type: "error", code: "ERR_ABORTED", message: expect.stringContaining(`${out}.partial`) });
  });
});
