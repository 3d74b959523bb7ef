import { describe, expect, it } from "vitest";
import { normalizeArgv, parseCreds, parseDuration, systemContextFrom } from "./flags.js";

describe("skopeo flag handling", () => {
  it("gives optional booleans a value", () => {
    expect(normalizeArgv(["copy", "--src-tls-verify", "--dest-tls-verify=false", "--tls-verify", "a"])).toEqual(["copy", "--src-tls-verify=true", "--dest-tls-verify=false", "--tls-verify=true", "a"]);
  });

  it("parses credentials at the first colon", () => {
    expect(parseCreds("user:pa:ss", "--creds")).toEqual({ username: "user", password: "pa:ss" });
    expect(parseCreds("user", "--creds")).toEqual({ username: "user", password: "" });
    expect(() => parseCreds(":pw", "--src-creds")).toThrow(/--src-creds: the username is empty/);
  });

  it("parses Go durations", () => {
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(() => parseDuration("10 minutes")).toThrow(/invalid duration/);
  });

  it("builds a side's context and refuses skopeo's forbidden combinations", () => {
    const ctx = systemContextFrom({ srcCreds: "u:p", srcTlsVerify: false, destNoCreds: true, authfile: "/a.json", retryTimes: 2 }, "src-");
    expect(ctx.docker).toMatchObject({ credentials: { username: "u", password: "p" }, tlsVerify: false, authFile: "/a.json", retryTimes: 2 });
    expect(systemContextFrom({ destNoCreds: true }, "dest-").docker?.noCreds).toBe(true);
    expect(() => systemContextFrom({ creds: "u:p", noCreds: true }, "")).toThrow(/--creds and --no-creds/);
    expect(() => systemContextFrom({ username: "u" }, "")).toThrow(/--username and --password must be given together/);
    expect(() => systemContextFrom({ creds: "u:p", username: "u", password: "p" }, "")).toThrow(/--creds and --username/);
  });
});
