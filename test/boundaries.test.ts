/**
 * Package boundaries (STYLE.md §10): @airlock/core holds no CLI, YAML or OpenPGP code, OpenPGP
 * lives in @airlock/sign only, and no package reaches into apps/. Checked from the package.json
 * files and from every import the TypeScript scanner finds in the sources.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const SOURCE = /\.(?:ts|tsx|mts|cts|js|mjs|cjs)$/;
const SKIP = new Set(["node_modules", "dist", "coverage", ".turbo"]);
const DEP_FIELDS = ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"] as const;

/** Every source file under `dir` (skipping node_modules and build output), as absolute paths. */
function sources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.isFile() && SOURCE.test(e.name) && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out.sort();
}

/** Every module specifier a source text imports, re-exports, dynamically imports or requires. */
function importsOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** The package a bare specifier names ("openpgp/lightweight" → "openpgp"), or undefined. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith(".") || spec.startsWith("/") || spec.startsWith("node:")) return undefined;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

/** The workspace folders under `group` ("packages" or "apps") that have a package.json. */
function workspaces(group: string): string[] {
  const dir = join(root, group);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((d) => join(dir, d))
    .filter((d) => existsSync(join(d, "package.json")))
    .sort();
}

interface PackageJSON {
  name: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}
const pkg = (dir: string) => JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJSON;
const depsOf = (p: PackageJSON) => DEP_FIELDS.flatMap((f) => Object.keys(p[f] ?? {}));
const rel = (p: string) => relative(root, p).split(sep).join("/");

/** Every (file, specifier) pair in the sources under `dir`. */
function importsUnder(dir: string): { file: string; spec: string }[] {
  return sources(dir).flatMap((file) => importsOf(readFileSync(file, "utf8")).map((spec) => ({ file, spec })));
}

describe("the import scanner", () => {
  it("finds static, type-only, re-exported, dynamic and required imports", () => {
    const text = [
      'import * as openpgp from "openpgp";',
      "import type { Document } from 'yaml';",
      'import {\n  Command,\n} from "commander/esm.mjs";',
      'export { x } from "@scope/pkg/sub";',
      'const m = await import("./local.js");',
      'const r = require("node:fs");',
      'import "side-effect";',
    ].join("\n");
    const specs = importsOf(text);
    expect(specs).toEqual(
      expect.arrayContaining([
        "openpgp",
        "yaml",
        "commander/esm.mjs",
        "@scope/pkg/sub",
        "./local.js",
        "node:fs",
        "side-effect",
      ]),
    );
    expect(specs.map(packageOf)).toEqual(
      expect.arrayContaining(["openpgp", "yaml", "commander", "@scope/pkg", "side-effect"]),
    );
    expect(packageOf("./local.js")).toBeUndefined();
    expect(packageOf("node:fs")).toBeUndefined();
  });
});

describe("package boundaries", () => {
  const core = join(root, "packages", "core");
  const FORBIDDEN_IN_CORE = ["yaml", "openpgp", "commander"];

  it("@airlock/core depends on neither yaml, openpgp nor commander", () => {
    const p = pkg(core);
    expect(p.name).toBe("@airlock/core");
    expect(depsOf(p).filter((d) => FORBIDDEN_IN_CORE.includes(d))).toEqual([]);
  });

  it("no source in packages/core/src imports yaml, openpgp or commander", () => {
    const found = importsUnder(join(core, "src"));
    // The scan sees the sources' real imports, so an empty result would mean it saw nothing.
    expect(found.some(({ spec }) => spec.startsWith("node:"))).toBe(true);
    const bad = found
      .filter(({ spec }) => FORBIDDEN_IN_CORE.includes(packageOf(spec) ?? ""))
      .map(({ file, spec }) => `${rel(file)} imports ${spec}`);
    expect(bad).toEqual([]);
  });

  it("OpenPGP is imported only under packages/sign", () => {
    const sign = join(root, "packages", "sign") + sep;
    const bad = [...workspaces("packages"), ...workspaces("apps")]
      .flatMap((dir) => importsUnder(dir))
      .filter(({ file, spec }) => packageOf(spec) === "openpgp" && !file.startsWith(sign))
      .map(({ file, spec }) => `${rel(file)} imports ${spec}`);
    expect(bad).toEqual([]);
  });

  it("no package under packages/ imports from apps/ or depends on an app", () => {
    const apps = workspaces("apps");
    expect(apps.length).toBeGreaterThan(0);
    const appNames = apps.map((d) => pkg(d).name);
    const appsDir = join(root, "apps") + sep;
    const isApp = (name: string | undefined) => name !== undefined && appNames.includes(name);
    const packages = workspaces("packages");
    expect(packages.length).toBeGreaterThan(0);

    const bad: string[] = [];
    for (const dir of packages) {
      for (const dep of depsOf(pkg(dir)).filter(isApp)) bad.push(`${rel(dir)}/package.json depends on ${dep}`);
      for (const { file, spec } of importsUnder(dir)) {
        const path = spec.startsWith(".") || spec.startsWith("/") ? resolve(dirname(file), spec) : undefined;
        if (path?.startsWith(appsDir) || isApp(packageOf(spec))) bad.push(`${rel(file)} imports ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
