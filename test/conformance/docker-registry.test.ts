/**
 * The conformance suite against the CNCF distribution registry (docker-registry 2.8.2, plain
 * HTTP): the reference the suite itself is checked against. The assertions behind the Features
 * flags 2.8.2 lacks (see conformance.ts) run only against airlock.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { conformance, DOCKER_REGISTRY_2_8 } from "./conformance.js";

describe("conformance: docker-registry 2.8.2", () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: "plain" });
  });
  afterAll(async () => {
    await reg?.stop();
  });
  conformance(() => ({ url: reg.url, host: reg.host }), DOCKER_REGISTRY_2_8);
});
