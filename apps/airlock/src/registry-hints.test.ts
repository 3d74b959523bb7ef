import { describe, expect, it } from "vitest";
import { flagHints, withFlagHints } from "./registry-hints.js";

describe("flagHints", () => {
  it("names the flags of the side, and the credentials flag the user gave", () => {
    expect(flagHints({}, "dest-")).toEqual({ credentials: "--dest-creds USERNAME:PASSWORD (or --dest-registry-token)", tlsVerify: "--dest-tls-verify=false", certDir: "--dest-cert-dir DIR" });
    expect(flagHints({}, "")).toEqual({ credentials: "--creds USERNAME:PASSWORD (or --registry-token)", tlsVerify: "--tls-verify=false", certDir: "--cert-dir DIR" });
    expect(flagHints({ srcCreds: "u:secret" }, "src-").credentials).toBe("--src-creds");
    expect(flagHints({ screds: "u:secret" }, "src-").credentials).toBe("--screds");
    expect(flagHints({ destUsername: "u", destPassword: "secret" }, "dest-").credentials).toBe("--dest-username/--dest-password");
    expect(flagHints({ destNoCreds: true }, "dest-").credentials).toBe("--dest-creds USERNAME:PASSWORD in place of --dest-no-creds");
    expect(JSON.stringify(flagHints({ creds: "u:secret", username: "u", password: "secret" }, ""))).not.toContain("secret");
  });

  it("adds them without changing the context it was given", () => {
    const ctx = { tmpDir: "/t", docker: { tlsVerify: false } };
    const hinted = withFlagHints(ctx, {}, "src-");
    expect(hinted).toEqual({ tmpDir: "/t", docker: { tlsVerify: false, hints: flagHints({}, "src-") } });
    expect(ctx.docker).toEqual({ tlsVerify: false });
  });
});
