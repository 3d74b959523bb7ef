/**
 * manifests/: every example is accepted by BOTH the parser and the JSON Schema, and documents that
 * break the rules the schema can express are refused by both.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadImagesFile, parseImagesConfig } from "./images.js";

const manifests = fileURLToPath(new URL("../../../../manifests/", import.meta.url));
const examples = readdirSync(`${manifests}examples`).filter((f) => f.endsWith(".yaml"));
const schema = JSON.parse(readFileSync(`${manifests}images.schema.json`, "utf8"));
const ajv = new Ajv2020({ strict: true, strictRequired: false, strictTypes: false, allErrors: true });
const validate = ajv.compile(schema);

function schemaErrors(text: string): string[] {
  return validate(parse(text)) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}

function parserAccepts(text: string): boolean {
  try {
    parseImagesConfig(text, `${manifests}examples/test.yaml`);
    return true;
  } catch {
    return false;
  }
}

describe("manifests/examples", () => {
  it("has the fixtures example and others", () => {
    expect(examples).toContain("fixtures.yaml");
    expect(examples.length).toBeGreaterThanOrEqual(4);
  });

  it.each(examples)("%s is valid for the parser and the schema", async (file) => {
    const path = `${manifests}examples/${file}`;
    const config = await loadImagesFile(path);
    expect(config.images.length).toBeGreaterThan(0);
    expect(schemaErrors(readFileSync(path, "utf8"))).toEqual([]);
  });

  it("fixtures.yaml names committed fixtures that exist", async () => {
    const config = await loadImagesFile(`${manifests}examples/fixtures.yaml`);
    for (const image of config.images) {
      expect(image.kind).toBe("transport");
      if (image.kind !== "transport") continue;
      const path = image.source.replace(/^(oci|dir):/, "").replace(/:[^/]*$/, "");
      expect(existsSync(path), path).toBe(true);
      if (image.source.startsWith("oci:")) {
        const refName = image.source.slice(image.source.lastIndexOf(":") + 1);
        expect(readFileSync(`${path}/index.json`, "utf8")).toContain(`"org.opencontainers.image.ref.name":"${refName}"`);
      }
    }
  });
});

describe("images.schema.json agrees with the parser", () => {
  const invalid: [string, string][] = [
    ["version 2", "version: 2\nimages: [{name: a:1}]\n"],
    ["no images", "version: 1\n"],
    ["empty images", "version: 1\nimages: []\n"],
    ["unknown key", "version: 1\nimages: [{name: a:1, tag: x}]\n"],
    ["a literal password", "version: 1\nregistries:\n  r.io:\n    credentials: { username: u, password: p }\nimages: [{name: a:1}]\n"],
    ["env value not a variable name", "version: 1\nregistries:\n  r.io:\n    credentials: { env: { username: U, password: 'a b' } }\nimages: [{name: a:1}]\n"],
    ["two credential sources", "version: 1\nregistries:\n  r.io:\n    credentials: { none: true, authFile: x }\nimages: [{name: a:1}]\n"],
    ["bad registry key", "version: 1\nregistries:\n  'r.io/x': {}\nimages: [{name: a:1}]\n"],
    ["a number as a tag", "version: 1\nimages: [{name: a, tags: [1.10]}]\n"],
    ["name and source", "version: 1\nimages: [{name: a:1, source: 'oci:x', as: 'b:1'}]\n"],
    ["name without a tag", "version: 1\nimages: [{name: quay.io/org/app}]\n"],
    ["a tag and tags", "version: 1\nimages: [{name: a:1, tags: ['2']}]\n"],
    ["source without as", "version: 1\nimages: [{source: 'oci:./l:x'}]\n"],
    ["as without a tag on a source", "version: 1\nimages: [{source: 'oci:./l:x', as: x}]\n"],
    ["tags on an oci source", "version: 1\nimages: [{source: 'oci:./l:x', as: 'x:1', tags: [a]}]\n"],
    ["as with a registry host", "version: 1\nimages: [{name: a:1, as: 'quay.io/a:1'}]\n"],
    ["bad platform", "version: 1\nimages: [{name: a:1, platforms: [linux]}]\n"],
    ["empty platform list", "version: 1\nimages: [{name: a:1, platforms: []}]\n"],
    ["bad naming", "version: 1\ndestination: { naming: flat }\nimages: [{name: a:1}]\n"],
    ["newest 0", "version: 1\nimages: [{name: a, tags: { newest: 0 }}]\n"],
    ["empty filter", "version: 1\nimages: [{name: a, tags: {}}]\n"],
  ];
  it.each(invalid)("both refuse: %s", (_what, text) => {
    expect(parserAccepts(text)).toBe(false);
    expect(schemaErrors(text)).not.toEqual([]);
  });

  const valid: [string, string][] = [
    ["minimal", "version: 1\nimages: [{name: busybox:1.36}]\n"],
    ["host:port name with tags", "version: 1\nimages: [{name: 'localhost:5000/a/b', tags: [x]}]\n"],
    ["digest name with an as: tag", `version: 1\nimages: [{name: 'a@sha256:${"a".repeat(64)}', as: 'team/a:1'}]\n`],
    ["docker:// source with a filter", "version: 1\nimages: [{source: 'docker://quay.io/a/b', tags: { include: x }}]\n"],
    ["one platform as a string", "version: 1\nimages: [{name: a:1, platforms: linux/arm/v7}]\n"],
    ["a registry with no settings", "version: 1\nregistries:\n  'r.io:5000':\nimages: [{name: a:1}]\n"],
  ];
  it.each(valid)("both accept: %s", (_what, text) => {
    expect(parserAccepts(text)).toBe(true);
    expect(schemaErrors(text)).toEqual([]);
  });
});
