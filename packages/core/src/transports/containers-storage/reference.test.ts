import { describe, expect, it } from "vitest";
import { parseImageName } from "../index.js";
import "../all.js";
import { StorageReference } from "./reference.js";

const parse = (s: string) => StorageReference.parse(s);
const ID = "5d6410d0f0f30140d154dffaa9237ccfd208e5174dacbea5359e139d4d18e5f1";

describe("containers-storage: references", () => {
  it("parses the store specifier, a normalised name, a digest and an image ID, and round-trips", () => {
    const r = parse(`[vfs@/var/lib/s+/run/s:opt1,opt2]busybox@${ID}`);
    expect(r.store).toEqual({ driver: "vfs", graphRoot: "/var/lib/s", runRoot: "/run/s", options: ["opt1", "opt2"] });
    expect(r.named?.toString()).toBe("docker.io/library/busybox:latest");
    expect(r.id).toBe(ID);
    expect(r.toString()).toBe(`containers-storage:[vfs@/var/lib/s+/run/s:opt1,opt2]busybox@${ID}`);
    expect(parseImageName("containers-storage:quay.io/org/app:1").dockerReference()).toBe("quay.io/org/app:1");
    const d = parse(`localhost/app@sha256:${ID}`);
    expect(d.named?.digest).toBe(`sha256:${ID}`);
    expect(d.id).toBeUndefined();
    expect(parse("[/only/root]app").store).toEqual({ graphRoot: "/only/root" });
  });

  it("takes a bare 64-hex word as an image ID, and a short hex word as an ID prefix or a name", () => {
    expect(parse(ID)).toMatchObject({ id: ID, named: undefined });
    const short = parse("5d6410");
    expect(short).toMatchObject({ idPrefix: "5d6410", idOrName: true });
    expect(short.named?.toString()).toBe("docker.io/library/5d6410:latest");
    expect(parse("app@5d6410")).toMatchObject({ idPrefix: "5d6410", idOrName: false });
  });

  it("refuses malformed references, saying what is wrong", () => {
    for (const [spec, why] of [
      ["", "missing"],
      ["[vfs@/x", "not closed"],
      ["[vfs@]app", "driver before @"],
      ["[relative/root]app", "not an absolute path"],
      ["app@", "empty trailing"],
      ["app@x!", "does not look like an image ID"],
      ["UPPER", "lowercase"],
    ] as const) {
      expect(() => parse(spec), spec).toThrow(expect.objectContaining({ code: "ERR_INVALID_REFERENCE", message: expect.stringContaining(why) }));
    }
  });
});
