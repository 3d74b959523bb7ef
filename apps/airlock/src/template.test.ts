import { describe, expect, it } from "vitest";
import { renderTemplate } from "./template.js";

const data = { Digest: "sha256:abc", Name: "docker.io/library/busybox", Labels: { a: "1", "org.x": "y" }, Layers: ["l1", "l2"], RepoTags: ["1", "2"], Empty: [] };

describe("renderTemplate (Go text/template subset)", () => {
  it.each([
    ["{{.Digest}}", "sha256:abc"],
    ["{{ .Name }} {{.Digest}}", "docker.io/library/busybox sha256:abc"],
    ["{{json .Labels}}", '{"a":"1","org.x":"y"}'],
    ['{{index .Labels "org.x"}}', "y"],
    ['{{join .RepoTags ","}}', "1,2"],
    ["{{range .Layers}}[{{.}}]{{end}}", "[l1][l2]"],
    ["{{if .Empty}}yes{{else}}no{{end}}", "no"],
    ["{{len .Layers}}", "2"],
    ["{{.Missing}}", "<no value>"],
    ["{{.Labels}}", "map[a:1 org.x:y]"],
    ['a{{"\\n"}}b', "a\nb"],
  ])("%s", (t, want) => {
    expect(renderTemplate(t, data)).toBe(want);
  });

  it("reports unknown functions and unclosed blocks", () => {
    expect(() => renderTemplate("{{nope .X}}", data)).toThrow(/unknown function "nope"/);
    expect(() => renderTemplate("{{range .Layers}}x", data)).toThrow(/missing \{\{end\}\}/);
  });
});
