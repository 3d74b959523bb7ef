import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      "@airlock/core": src("./packages/core/src/index.ts"),
      "@airlock/sign": src("./packages/sign/src/index.ts"),
      "@airlock/registry": src("./packages/registry/src/index.ts"),
    },
  },
  test: {
    include: ["packages/*/src/**/*.test.ts", "apps/*/src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    globalSetup: ["test/global-setup.ts"],
    // Each test's registry is new; a cache of where blobs were seen (registry/blob-locations.ts)
    // would only carry one test's pushes into another's. Its own tests turn it on.
    env: { AIRLOCK_BLOB_LOCATIONS: "off" },
  },
});
