import { describe, expect, it } from "vitest";
import { isNotFound } from "../errors.js";
import { type FailedRequest, mapRegistryError, parseRegistryErrors } from "./errors.js";

const base: FailedRequest = { what: "reading manifest latest of r.example/app", kind: "manifest", host: "r.example", status: 404, body: "", credentialsSent: false };
const body = (code: string, message = code.toLowerCase()) => JSON.stringify({ errors: [{ code, message, detail: { name: "app" } }] });

describe("mapRegistryError", () => {
  it.each([
    [{ status: 404, body: body("MANIFEST_UNKNOWN") }, "ERR_IMAGE_NOT_FOUND", false],
    [{ status: 404, body: body("NAME_UNKNOWN"), kind: "tags" as const }, "ERR_IMAGE_NOT_FOUND", false],
    [{ status: 404, body: "404 page not found" }, "ERR_IMAGE_NOT_FOUND", false],
    [{ status: 404, body: body("BLOB_UNKNOWN"), kind: "blob" as const }, "ERR_BLOB_NOT_FOUND", false],
    [{ status: 404, body: "", kind: "blob" as const }, "ERR_BLOB_NOT_FOUND", false],
    [{ status: 401, body: body("UNAUTHORIZED") }, "ERR_UNAUTHORIZED", false],
    [{ status: 403, body: body("DENIED") }, "ERR_DENIED", false],
    [{ status: 429, body: body("TOOMANYREQUESTS") }, "ERR_REGISTRY", true],
    [{ status: 503, body: "" }, "ERR_REGISTRY", true],
    [{ status: 400, body: body("MANIFEST_INVALID") }, "ERR_REGISTRY", false],
    [{ status: 405, body: body("UNSUPPORTED") }, "ERR_UNSUPPORTED", false],
  ])("%j → %s", (f, code, retryable) => {
    const err = mapRegistryError({ ...base, ...f });
    expect(err.code).toBe(code);
    expect(err.retryable).toBe(retryable);
    expect(err.status).toBe(f.status);
    expect(err.message.startsWith(base.what)).toBe(true);
  });

  it("says what to do, and keeps the registry's codes", () => {
    const nf = mapRegistryError({ ...base, body: body("MANIFEST_UNKNOWN", "manifest unknown") });
    expect(isNotFound(nf)).toBe(true);
    expect(nf.registryCode).toBe("MANIFEST_UNKNOWN");
    expect(nf.message).toContain("MANIFEST_UNKNOWN: manifest unknown");
    expect(mapRegistryError({ ...base, status: 401 }).message).toContain('airlock login r.example');
    expect(mapRegistryError({ ...base, status: 401, credentialsSent: true }).message).toContain("rejected the credentials");
    expect(mapRegistryError({ ...base, status: 429, retryAfter: "30" }).message).toContain("retry after 30");
  });

  it("explains a 401 insufficient_scope: a missing repository or missing rights", () => {
    const anon = mapRegistryError({ ...base, status: 401, authError: "insufficient_scope" });
    expect(anon.code).toBe("ERR_UNAUTHORIZED");
    expect(anon.message).toMatch(/does not exist or requires authentication/);
    const authed = mapRegistryError({ ...base, status: 401, authError: "insufficient_scope", credentialsSent: true });
    expect(authed.code).toBe("ERR_DENIED");
    expect(authed.message).toMatch(/may not access it/);
  });

  it("names the caller's credentials setting, and airlock login only where auth files are read", () => {
    const hints = { credentials: "--dest-creds USERNAME:PASSWORD" };
    const missing = mapRegistryError({ ...base, status: 401, hints });
    expect(missing.message).toContain('authentication is required: run "airlock login r.example" or use --dest-creds USERNAME:PASSWORD');
    expect(missing.message).not.toContain("--creds");
    const given = mapRegistryError({ ...base, status: 401, credentialsSent: true, hints: { credentials: "--dest-creds" }, authFilesConsulted: false });
    expect(given.message).toContain("the registry rejected the credentials given with --dest-creds: check the username and password");
    expect(given.message).not.toContain("airlock login");
    const stored = mapRegistryError({ ...base, status: 401, credentialsSent: true, hints, authFile: "/run/auth.json" });
    expect(stored.message).toContain('rejected the credentials stored by "airlock login --authfile /run/auth.json r.example": run it again with the right username and password, or use --dest-creds USERNAME:PASSWORD');
    const scope = mapRegistryError({ ...base, status: 401, authError: "insufficient_scope", hints, authFilesConsulted: false });
    expect(scope.message).toContain("check the name, or use --dest-creds USERNAME:PASSWORD");
    // Without hints, the generic flags.
    expect(mapRegistryError({ ...base, status: 401 }).message).toContain("pass --creds USERNAME:PASSWORD");
  });

  it("parses error bodies of registries and token servers", () => {
    expect(parseRegistryErrors(body("DENIED", "no"))).toEqual([{ code: "DENIED", message: "no", detail: { name: "app" } }]);
    expect(parseRegistryErrors('{"details":"incorrect username or password"}')).toEqual([{ code: "UNKNOWN", message: "incorrect username or password" }]);
    expect(parseRegistryErrors("<html>")).toEqual([]);
  });
});
