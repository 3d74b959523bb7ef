import { describe, expect, it } from "vitest";
import { defaultLookasideBase, lookasideBase, lookasideSignatureURL, mergeRegistriesD } from "./lookaside.js";

const D = `sha256:${"ab".repeat(32)}`;

describe("lookasideSignatureURL", () => {
  it("lays out BASE/PATH@ALG=HEX/signature-N as containers/image does", () => {
    expect(lookasideSignatureURL("file:///var/lib/containers/sigstore", "busybox:latest", D, 1)).toBe(
      `file:///var/lib/containers/sigstore/library/busybox@sha256=${"ab".repeat(32)}/signature-1`,
    );
    expect(lookasideSignatureURL("https://sigs.example.com/store", "registry.example.com:5000/ns/app:1", D, 3)).toBe(
      `https://sigs.example.com/store/ns/app@sha256=${"ab".repeat(32)}/signature-3`,
    );
    expect(lookasideSignatureURL("https://sigs.example.com", "quay.io/a/b", D, 1)).toBe(`https://sigs.example.com/a/b@sha256=${"ab".repeat(32)}/signature-1`);
    // A trailing slash is kept, as Go's path concatenation keeps it.
    expect(lookasideSignatureURL("https://sigs.example.com/", "quay.io/a/b", D, 1)).toBe(`https://sigs.example.com//a/b@sha256=${"ab".repeat(32)}/signature-1`);
  });

  it("refuses bad input", () => {
    expect(() => lookasideSignatureURL("file:///x", "a:1", D, 0)).toThrow(/numbered from 1/);
    expect(() => lookasideSignatureURL("file:///x", "a:1", "sha256:../../etc", 1)).toThrow(/invalid/);
    expect(() => lookasideSignatureURL("not a url", "a:1", D, 1)).toThrow(/invalid signature storage URL/);
  });
});

describe("registries.d", () => {
  const config = mergeRegistriesD([
    {
      name: "a.yaml",
      content: {
        "default-docker": { lookaside: "https://default.example/sigs" },
        docker: {
          "registry.example.com": { lookaside: "https://host/sigs", "lookaside-staging": "file:///staging" },
          "registry.example.com/team/app": { "use-sigstore-attachments": true },
          "registry.example.com/team": { sigstore: "https://team/sigs" },
        },
        unknown: "ignored",
      },
    },
    { name: "b.yaml", content: { docker: { "*.example.org": { sigstore: "https://wild/sigs", "sigstore-staging": "file:///wild-staging" } } } },
    { name: "empty.yaml", content: null },
  ]);
  const user = { euid: 1000, homeDir: "/home/u" };

  it("finds the most specific section that configures a location, staging first for writes", () => {
    // team/app's section has no location, so its parent namespace decides.
    expect(lookasideBase(config, "registry.example.com/team/app:1", false, user)).toBe("https://team/sigs");
    expect(lookasideBase(config, "registry.example.com/other:1", false, user)).toBe("https://host/sigs");
    expect(lookasideBase(config, "registry.example.com/other:1", true, user)).toBe("file:///staging");
    expect(lookasideBase(config, "a.example.org/x:1", true, user)).toBe("file:///wild-staging");
    expect(lookasideBase(config, "quay.io/x:1", false, user)).toBe("https://default.example/sigs");
    expect(lookasideBase(mergeRegistriesD([]), "quay.io/x:1", false, user)).toBe("file:///home/u/.local/share/containers/sigstore");
    expect(defaultLookasideBase({ euid: 0, homeDir: "/root" })).toBe("file:///var/lib/containers/sigstore");
  });

  it("refuses a section defined in two files, naming both", () => {
    expect(() =>
      mergeRegistriesD([
        { name: "a.yaml", content: { docker: { "quay.io": {} } } },
        { name: "b.yaml", content: { docker: { "quay.io": {} } } },
      ]),
    ).toThrow('"docker" namespace "quay.io" defined both in "a.yaml" and "b.yaml"');
    expect(() =>
      mergeRegistriesD([
        { name: "a.yaml", content: { "default-docker": {} } },
        { name: "b.yaml", content: { "default-docker": { lookaside: "x" } } },
      ]),
    ).toThrow('"default-docker" defined both in "a.yaml" and "b.yaml"');
    expect(() => mergeRegistriesD([{ name: "c.yaml", content: { docker: { x: { lookaside: 1 } } } }])).toThrow('parsing c.yaml: docker["x"].lookaside must be a URL string');
  });
});
