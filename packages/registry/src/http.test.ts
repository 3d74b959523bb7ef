import { describe, expect, it } from "vitest";
import { clfDate, parseContentRange, parseListenAddress, parseRange } from "./http.js";

describe("Range (RFC 9110)", () => {
  it.each<[string | undefined, unknown]>([
    [undefined, undefined],
    ["bytes=0-9", { start: 0, end: 9 }],
    ["bytes=10-", { start: 10, end: 99 }],
    ["bytes=-5", { start: 95, end: 99 }],
    ["bytes=-500", { start: 0, end: 99 }],
    ["bytes=90-200", { start: 90, end: 99 }],
    ["bytes=100-", "unsatisfiable"],
    ["bytes=-0", "unsatisfiable"],
    ["bytes=5-3", undefined],
    ["bytes=0-1,5-6", undefined],
    ["items=0-1", undefined],
  ])("%j of 100 bytes is %j", (h, want) => {
    expect(parseRange(h, 100)).toEqual(want);
  });

  it("nothing of an empty blob is satisfiable", () => {
    expect(parseRange("bytes=0-", 0)).toBe("unsatisfiable");
  });
});

describe("upload Content-Range", () => {
  it("reads START-END and tolerates a bytes prefix", () => {
    expect(parseContentRange("0-99")).toEqual({ start: 0, end: 99 });
    expect(parseContentRange("bytes 100-199")).toEqual({ start: 100, end: 199 });
    expect(parseContentRange(undefined)).toBeUndefined();
  });

  it.each(["abc", "5-3", "-3", "1-", "0-1/2"])("refuses %j with 416 BLOB_UPLOAD_INVALID", (h) => {
    expect(() => parseContentRange(h)).toThrow(expect.objectContaining({ status: 416, code: "BLOB_UPLOAD_INVALID" }));
  });
});

describe("listen addresses", () => {
  it.each<[string, unknown]>([
    ["5000", { host: undefined, port: 5000 }],
    [":5000", { host: undefined, port: 5000 }],
    ["127.0.0.1:0", { host: "127.0.0.1", port: 0 }],
    ["localhost:5000", { host: "localhost", port: 5000 }],
    ["[::1]:5000", { host: "::1", port: 5000 }],
  ])("%s", (addr, want) => {
    expect(parseListenAddress(addr)).toEqual(want);
  });

  it.each(["", "host", "host:", "host:70000", "[nope]:1", "a b:1", "1.2.3.4:-1"])("refuses %j", (addr) => {
    expect(() => parseListenAddress(addr)).toThrow(/invalid listen address/);
  });
});

it("writes common-log-format dates in UTC", () => {
  expect(clfDate(new Date(Date.UTC(2026, 10, 7, 3, 4, 5)))).toBe("07/Nov/2026:03:04:05 +0000");
});
