import { describe, expect, it } from "vitest";
import { goJSONMarshal, parseStrictJSON, StrictJSONError } from "./json.js";

describe("parseStrictJSON", () => {
  it("parses what JSON.parse parses, for valid documents", () => {
    for (const text of ['{"a":[1,2.5,-3e2,true,false,null,"x\\u0041\\n"],"b":{}}', "[]", '"s"', "0", " \t\r\n{ } "]) {
      expect(parseStrictJSON(text)).toEqual(JSON.parse(text));
    }
  });

  it("refuses a key repeated in one object, with its position", () => {
    expect(() => parseStrictJSON('{"a":1,\n "a":2}')).toThrow(/duplicate key "a" at line 2, column 2/);
    expect(() => parseStrictJSON('{"x":{"k":1,"k":1}}')).toThrow(/duplicate key "k"/);
    // The same key in two different objects is fine.
    expect(parseStrictJSON('[{"a":1},{"a":2}]')).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it("refuses what RFC 8259 does not allow", () => {
    const bad: [string, RegExp][] = [
      ['{"a":1,}', /expected a string key/],
      ["[1,]", /expected a value/],
      ["// c\n{}", /expected a value/],
      ["{'a':1}", /expected a string key/],
      ["01", /after the JSON value/],
      ['{"a":1} x', /after the JSON value/],
      ['"a\tb"', /control character/],
      ['"\\x"', /invalid escape/],
      ['"abc', /unterminated string/],
      ["NaN", /expected a value/],
      ["", /end of input/],
      ['{"a" 1}', /expected ":"/],
    ];
    for (const [text, why] of bad) expect(() => parseStrictJSON(text), text).toThrow(why);
    expect(() => parseStrictJSON("{}}")).toThrow(StrictJSONError);
  });

  it("keeps __proto__ as an ordinary key and refuses deep nesting", () => {
    const v = parseStrictJSON('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(() => parseStrictJSON("[".repeat(600) + "]".repeat(600))).toThrow(/nesting deeper/);
  });
});

describe("goJSONMarshal", () => {
  it("sorts keys, writes compactly and escapes like Go's encoding/json", () => {
    expect(goJSONMarshal({ b: 1, a: { d: "x", c: [1, "y"] } })).toBe('{"a":{"c":[1,"y"],"d":"x"},"b":1}');
    expect(goJSONMarshal("<a&b>\u2028\u2029\"\\\n\u0001")).toBe('"\\u003ca\\u0026b\\u003e\\u2028\\u2029\\"\\\\\\n\\u0001"');
    // Invalid UTF-16 (a lone surrogate) becomes U+FFFD, as Go writes invalid UTF-8.
    expect(goJSONMarshal("a\uD800b")).toBe('"a\uFFFDb"');
    // Keys are ordered by UTF-8 bytes: "Z" < "a" < "é".
    expect(goJSONMarshal({ é: 1, a: 2, Z: 3 })).toBe('{"Z":3,"a":2,"é":1}');
    expect(() => goJSONMarshal(1.5)).toThrow(RangeError);
  });
});
