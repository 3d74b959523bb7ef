import { describe, expect, it } from "vitest";
import { cleanPath, parsePolicy } from "./config.js";

const KEY_DATA = Buffer.from("-----BEGIN PGP PUBLIC KEY BLOCK-----\n...").toString("base64");

describe("parsePolicy", () => {
  it("reads every requirement and identity type of containers-policy.json(5)", () => {
    const policy = parsePolicy(
      JSON.stringify({
        default: [{ type: "reject" }],
        transports: {
          docker: {
            "registry.example.com": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/keys/a.gpg" }],
            "registry.example.com/team": [{ type: "signedBy", keyType: "GPGKeys", keyPaths: ["/a", "/b"], signedIdentity: { type: "matchRepository" } }],
            "mirror.example.com": [
              { type: "signedBy", keyType: "GPGKeys", keyData: KEY_DATA, signedIdentity: { type: "remapIdentity", prefix: "mirror.example.com", signedPrefix: "registry.example.com/team" } },
            ],
            "*.example.org": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/k", signedIdentity: { type: "exactRepository", dockerRepository: "example.org/app" } }],
            "example.net/app:1": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/k", signedIdentity: { type: "exactReference", dockerReference: "example.net/app:1" } }],
            "example.net/x": [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/k", signedIdentity: { type: "matchExact" } }],
            "example.net/s": [{ type: "sigstoreSigned", keyPath: "/cosign.pub", signedIdentity: { type: "matchRepository" } }],
          },
          dir: { "": [{ type: "insecureAcceptAnything" }], "/srv/images": [{ type: "reject" }] },
          "docker-daemon": { "": [{ type: "insecureAcceptAnything" }] },
          "future-transport": { "anything goes": [{ type: "reject" }] },
        },
      }),
    );
    expect(policy.default).toEqual([{ type: "reject" }]);
    const docker = policy.transports.get("docker")!;
    expect(docker.get("registry.example.com")).toEqual([
      { type: "signedBy", keyType: "GPGKeys", keyPath: "/keys/a.gpg", signedIdentity: { type: "matchRepoDigestOrExact" } },
    ]);
    expect(docker.get("registry.example.com/team")?.[0]).toMatchObject({ keyPaths: ["/a", "/b"], signedIdentity: { type: "matchRepository" } });
    const remap = docker.get("mirror.example.com")?.[0];
    expect(remap).toMatchObject({ signedIdentity: { type: "remapIdentity", prefix: "mirror.example.com", signedPrefix: "registry.example.com/team" } });
    expect(Buffer.from((remap as { keyData: Uint8Array }).keyData).toString()).toContain("BEGIN PGP PUBLIC KEY BLOCK");
    expect(docker.get("example.net/s")?.[0]).toMatchObject({ type: "sigstoreSigned" });
    expect(policy.transports.get("dir")?.get("/srv/images")).toEqual([{ type: "reject" }]);
    expect(policy.transports.get("future-transport")?.size).toBe(1);
  });

  it("reads the policy skopeo ships", () => {
    const p = parsePolicy('{\n  "default": [{"type": "insecureAcceptAnything"}],\n  "transports": {"docker-daemon": {"": [{"type":"insecureAcceptAnything"}]}}\n}\n');
    expect(p.default).toEqual([{ type: "insecureAcceptAnything" }]);
  });

  it("rejects the whole file on any doubt, naming the file and the field", () => {
    const sb = (extra: object) => JSON.stringify({ default: [{ type: "signedBy", keyType: "GPGKeys", keyPath: "/k", ...extra }] });
    const bad: [string, string | RegExp][] = [
      ["{}", 'invalid policy in "policy.json": the "default" policy is missing'],
      ['{"default":[]}', "default: the list of verification policy requirements must not be empty"],
      ['{"default":[{"type":"reject"}],"other":1}', 'unknown field "other" (allowed: default, transports)'],
      ['{"default":[{"type":"reject"}],"default":[{"type":"reject"}]}', /duplicate key "default" at line 1, column 32/],
      ['{"default":[{"type":"reject","why":"x"}]}', 'default[0]: unknown field "why"'],
      ['{"default":[{"type":"accept"}]}', 'default[0].type: unknown policy requirement type "accept"'],
      ['{"default":[{"type":"reject"}],"transports":{"docker":{"x":[{"type":"signedBy"}]}}}', 'transports.docker["x"][0]: missing field "keyType"'],
      [sb({ keyType: "PGP" }), 'default[0].keyType: unrecognized keyType value "PGP"'],
      [sb({ keyData: KEY_DATA }), "exactly one of keyPath, keyPaths and keyData must be specified, found keyPath and keyData"],
      [JSON.stringify({ default: [{ type: "signedBy", keyType: "GPGKeys" }] }), "none of them present"],
      [sb({ keyPath: "" }), "default[0].keyPath: must not be empty"],
      [JSON.stringify({ default: [{ type: "signedBy", keyType: "GPGKeys", keyPaths: [] }] }), "default[0].keyPaths: must list at least one key file"],
      [JSON.stringify({ default: [{ type: "signedBy", keyType: "GPGKeys", keyData: "not base64!" }] }), "default[0].keyData: is not valid base64"],
      [sb({ keyPath: 7 }), "default[0].keyPath: expected a string, got a number"],
      [sb({ signedIdentity: { type: "matchExact", extra: 1 } }), 'default[0].signedIdentity: unknown field "extra"'],
      [sb({ signedIdentity: { type: "matchSomething" } }), 'default[0].signedIdentity.type: unknown policy reference match type "matchSomething"'],
      [sb({ signedIdentity: { type: "exactReference", dockerReference: "example.com/app" } }), 'dockerReference "example.com/app" contains neither a tag nor a digest'],
      [sb({ signedIdentity: { type: "exactReference", dockerReference: "Bad Ref" } }), /invalid format of dockerReference "Bad Ref"/],
      [sb({ signedIdentity: { type: "exactRepository" } }), 'default[0].signedIdentity: missing field "dockerRepository"'],
      [sb({ signedIdentity: { type: "remapIdentity", prefix: "example.com", signedPrefix: "http://x" } }), 'signedPrefix: prefix "http://x" is not valid'],
      ['{"default":[{"type":"reject"}],"transports":{"dir":{"relative/path":[{"type":"reject"}]}}}', 'transports.dir["relative/path"]: invalid scope: must be an absolute path'],
      ['{"default":[{"type":"reject"}],"transports":{"oci":{"/srv/":[{"type":"reject"}]}}}', 'invalid scope: uses a non-canonical path format, perhaps try "/srv"'],
      ['{"default":[{"type":"reject"}],"transports":{"dir":{"/":[{"type":"reject"}]}}}', 'use the generic default scope "" instead of "/"'],
      ['{"default":[{"type":"reject"}],"transports":{"docker-archive":{"/x":[{"type":"reject"}]}}}', 'the docker-archive transport supports no scope except the default ""'],
      ['{"default":[{"type":"reject"}],"transports":{"docker":{"x":[]}}}', 'transports.docker["x"]: the list of verification policy requirements must not be empty'],
      ['{"default":[{"type":"reject"}],"transports":{"docker":[]}}', "transports.docker: expected a JSON object, got an array"],
      ['{"default":[{"type":"reject"}],}', /expected a string key at line 1/],
      ['{"default":{"type":"reject"}}', "default: expected an array of requirements, got an object"],
    ];
    for (const [text, why] of bad) {
      let err: unknown;
      try {
        parsePolicy(text);
      } catch (e) {
        err = e;
      }
      expect(err, text).toMatchObject({ code: "ERR_POLICY" });
      if (typeof why === "string") expect((err as Error).message, text).toContain(why);
      else expect((err as Error).message, text).toMatch(why);
    }
    expect(() => parsePolicy("{}", "/etc/containers/policy.json")).toThrow('invalid policy in "/etc/containers/policy.json"');
  });
});

describe("cleanPath", () => {
  it("cleans like Go's filepath.Clean", () => {
    const cases: [string, string][] = [
      ["/a/b/", "/a/b"],
      ["/a//b", "/a/b"],
      ["/a/./b/../c", "/a/c"],
      ["/../a", "/a"],
      ["a/../..", ".."],
      ["", "."],
      ["/", "/"],
    ];
    for (const [input, want] of cases) expect(cleanPath(input), input).toBe(want);
  });
});
