import { describe, expect, it } from "vitest";
import { nextLink, registryHostFor } from "./client.js";

describe("nextLink", () => {
  it("finds the next page in a Link header, relative to the request URL", () => {
    const base = "https://r.example/v2/a/tags/list?n=2";
    expect(nextLink('</v2/a/tags/list?n=2&last=b>; rel="next"', base)).toBe("https://r.example/v2/a/tags/list?n=2&last=b");
    expect(nextLink("<https://other.example/p?x=1>; rel=next", base)).toBe("https://other.example/p?x=1");
    expect(nextLink('</prev>; rel="prev", </next>; rel="next"', base)).toBe("https://r.example/next");
    expect(nextLink('</x>; rel="prev"', base)).toBeUndefined();
    expect(nextLink(undefined, base)).toBeUndefined();
  });
  it("connects to registry-1.docker.io for docker.io", () => {
    expect(registryHostFor("docker.io")).toBe("registry-1.docker.io");
    expect(registryHostFor("quay.io")).toBe("quay.io");
  });
});
