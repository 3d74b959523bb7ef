/**
 * The conformance suite against airlock's registry server over a fresh OCI layout store, with
 * every strict assertion on.
 */
import { mkdtempSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRegistryServer, LayoutRegistryStore, type RegistryServer } from "@airlock/registry";
import { afterAll, beforeAll, describe } from "vitest";
import type { Target } from "./client.js";
import { ALL_FEATURES, conformance } from "./conformance.js";

describe("conformance: airlock serve", () => {
  const dir = mkdtempSync(join(tmpdir(), "airlock-conformance-"));
  let server: RegistryServer;
  let target: Target;
  beforeAll(async () => {
    const store = await LayoutRegistryStore.open(join(dir, "store"));
    server = createRegistryServer({ store, deleteEnabled: true });
    target = await server.listen("127.0.0.1:0");
  });
  afterAll(async () => {
    await server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  conformance(() => target, ALL_FEATURES);
});
