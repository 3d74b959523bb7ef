/**
 * Bundles for tests that need a small real one: exported by the CLI from a copy of the committed
 * OCI layouts (fixtures/oci).
 */
import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "./cli.js";

const FIX = join(import.meta.dirname, "../../fixtures");

/**
 * Exports base-a and base-b of fixtures/oci (two images that share a layer) as `t/base-a:1` and
 * `t/base-b:1` into `dir/b.tar`, from a copy of the layout at `dir/layout`. Throws when the export fails.
 */
export async function exportBaseBundle(dir: string): Promise<{ bundle: string; layout: string }> {
  const layout = join(dir, "layout");
  cpSync(join(FIX, "oci"), layout, { recursive: true });
  const yaml = join(dir, "images.yaml");
  writeFileSync(yaml, "version: 1\nimages:\n  - source: oci:layout:base-a\n    as: t/base-a:1\n  - source: oci:layout:base-b\n    as: t/base-b:1\n");
  const bundle = join(dir, "b.tar");
  const r = await runCli(["export", "-q", "-f", yaml, "-o", bundle]);
  if (r.code !== 0) throw new Error(`exporting the test bundle failed (${r.code}): ${r.stderr}`);
  return { bundle, layout };
}
