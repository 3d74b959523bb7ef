/**
 * apps/airlock/bin/airlock.js chooses what to run: the bundle (dist/bundle/cli.cjs) while its
 * stamp.json matches the builds it was made from, else the unbundled dist/cli.js — when the stamp
 * is missing, when an input changed since (a later `tsc -b`), when one is gone, and with
 * AIRLOCK_NO_BUNDLE=1. Checked on Node, Bun and Deno (mtime precision differs between them) in a
 * copy of the bin beside two stand-in CLIs that say which one ran.
 */
import { spawnSync } from "node:child_process";
import { existsSync, promises as fs, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const BUN = join(root, "node_modules", ".bin", "bun");
const DENO = join(root, "node_modules", ".bin", "deno");
const runtimes = [
  { name: "node", argv: [process.execPath] },
  { name: "bun", argv: [BUN], absent: !existsSync(BUN) },
  { name: "deno", argv: [DENO, "run", "-A"], absent: !existsSync(DENO) },
];

let app: string;
/** A stand-in CLI that says which one ran: dist/cli.js is an ES module, the bundle CommonJS. */
const standIn = (what: string, format: "esm" | "cjs") =>
  `${format === "esm" ? "export async function main" : "exports.main = async function"}(argv) { process.stdout.write("${what} " + argv.join(" ")); return 3; }\n`;

async function writeStamp(inputs: Record<string, number | null>): Promise<void> {
  await fs.writeFile(join(app, "dist", "bundle", "stamp.json"), JSON.stringify({ entry: "cli.cjs", inputs }));
}

function runBin(argv: string[], env: NodeJS.ProcessEnv = {}): { which: string; code: number | null } {
  const r = spawnSync(argv[0] as string, [...argv.slice(1), join(app, "bin", "airlock.js"), "a", "b"], {
    encoding: "utf8",
    env: { ...process.env, AIRLOCK_COMPILE_CACHE: join(app, "compile-cache"), ...env },
  });
  return { which: r.stdout.trim() || r.stderr, code: r.status };
}

beforeAll(async () => {
  app = mkdtempSync(join(tmpdir(), "airlock-bin-"));
  await fs.mkdir(join(app, "bin"));
  await fs.mkdir(join(app, "dist", "bundle"), { recursive: true });
  for (const f of ["airlock.js", "run.js", "load-bundle.js"]) await fs.copyFile(join(root, "apps", "airlock", "bin", f), join(app, "bin", f));
  await fs.writeFile(join(app, "package.json"), '{"type":"module"}');
  await fs.writeFile(join(app, "dist", "cli.js"), standIn("unbundled", "esm"));
  await fs.writeFile(join(app, "dist", "bundle", "cli.cjs"), standIn("bundled", "cjs"));
  await fs.writeFile(join(app, "input.tsbuildinfo"), "{}");
});

afterAll(async () => {
  if (app) await fs.rm(app, { recursive: true, force: true });
});

describe("the bin chooses the bundle only while it is current", () => {
  for (const rt of runtimes) {
    it.skipIf(Boolean(rt.absent))(rt.name, async () => {
      const input = join(app, "input.tsbuildinfo");
      await fs.utimes(input, new Date(), new Date(Date.parse("2026-01-02T03:04:05.678Z")));
      await writeStamp({ "../../input.tsbuildinfo": statSync(input).mtimeMs, "../../absent.tsbuildinfo": null });
      // The stand-ins' exit code passes through run.js; argv arrives without node and script.
      expect(runBin(rt.argv)).toEqual({ which: "bundled a b", code: 3 });
      expect(runBin(rt.argv, { AIRLOCK_NO_BUNDLE: "1" }).which).toBe("unbundled a b");
      // A later build touched an input.
      await fs.utimes(input, new Date(), new Date(Date.parse("2026-01-02T03:04:09.000Z")));
      expect(runBin(rt.argv).which).toBe("unbundled a b");
      // An input that was absent appeared; one that was there is gone.
      await writeStamp({ "../../input.tsbuildinfo": null });
      expect(runBin(rt.argv).which).toBe("unbundled a b");
      await writeStamp({ "../../input.tsbuildinfo": statSync(input).mtimeMs, "../../gone.tsbuildinfo": statSync(input).mtimeMs });
      expect(runBin(rt.argv).which).toBe("unbundled a b");
      await writeStamp({ "../../input.tsbuildinfo": statSync(input).mtimeMs });
      expect(runBin(rt.argv).which).toBe("bundled a b");
      // No stamp, or no bundle at all.
      await fs.rm(join(app, "dist", "bundle", "stamp.json"));
      expect(runBin(rt.argv).which).toBe("unbundled a b");
    });
  }
});
