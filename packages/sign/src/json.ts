/**
 * JSON as containers/image reads and writes it for signatures and policies.
 *
 * Reading is paranoid, as c/image's `ParanoidUnmarshalJSONObject`: RFC 8259 only (no comments, no
 * trailing commas), and a key that appears twice in one object is an error instead of "the last
 * one wins" (`JSON.parse` would silently take the last, so a policy or payload could say two
 * things at once). Errors name the line and column.
 *
 * Writing is Go's `json.Marshal` of maps: keys sorted by their UTF-8 bytes, no whitespace, and
 * `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`… — so the payload airlock signs is byte for
 * byte what containers/image would sign for the same values.
 *
 * @see https://github.com/containers/image/blob/main/signature/internal/json.go
 */
import { Buffer } from "node:buffer";

/** A JSON value as the strict parser returns it. Objects have a null prototype. */
export type JSONValue = null | boolean | number | string | JSONValue[] | JSONObject;

/** A JSON object as the strict parser returns it (null prototype, no inherited keys). */
export interface JSONObject {
  [key: string]: JSONValue;
}

/** A syntax error in strict JSON, with the 1-based line and column where it was found. */
export class StrictJSONError extends Error {
  /** 1-based line of the error. */
  readonly line: number;
  /** 1-based column of the error. */
  readonly column: number;

  constructor(message: string, line: number, column: number) {
    super(`${message} at line ${line}, column ${column}`);
    this.name = "StrictJSONError";
    this.line = line;
    this.column = column;
  }
}

/** Objects and arrays nested deeper than this are refused (stack safety). */
const MAX_DEPTH = 512;
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/**
 * Parses `text` as one strict JSON value: RFC 8259 grammar, duplicate keys refused, nothing but
 * whitespace after the value. Throws {@link StrictJSONError}.
 */
export function parseStrictJSON(text: string): JSONValue {
  let i = 0;

  const fail = (message: string, at = i): never => {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < at && k < text.length; k++) {
      if (text.charCodeAt(k) === 10) {
        line++;
        lineStart = k + 1;
      }
    }
    throw new StrictJSONError(message, line, at - lineStart + 1);
  };
  const describe = (at: number): string => (at >= text.length ? "end of input" : `character ${JSON.stringify(text[at])}`);

  const skipSpace = (): void => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };

  const parseString = (): string => {
    const start = i;
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail("unterminated string", start);
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) fail("control character in string");
      i += c === 0x5c ? 2 : 1;
    }
    i++; // closing quote
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail("invalid escape in string", start);
    }
  };

  const parseValue = (depth: number): JSONValue => {
    skipSpace();
    const c = text[i];
    if (c === "{") return parseObject(depth + 1);
    if (c === "[") return parseArray(depth + 1);
    if (c === '"') return parseString();
    for (const [word, value] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return value;
      }
    }
    NUMBER_RE.lastIndex = i;
    const m = NUMBER_RE.exec(text);
    if (m) {
      i += m[0].length;
      return Number(m[0]);
    }
    return fail(`unexpected ${describe(i)}, expected a value`);
  };

  const parseObject = (depth: number): JSONObject => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    const obj = Object.create(null) as JSONObject;
    i++; // {
    skipSpace();
    if (text[i] === "}") {
      i++;
      return obj;
    }
    for (;;) {
      skipSpace();
      if (text[i] !== '"') fail(`unexpected ${describe(i)}, expected a string key`);
      const keyAt = i;
      const key = parseString();
      if (Object.hasOwn(obj, key)) fail(`duplicate key ${JSON.stringify(key)}`, keyAt);
      skipSpace();
      if (text[i] !== ":") fail(`unexpected ${describe(i)}, expected ":"`);
      i++;
      obj[key] = parseValue(depth);
      skipSpace();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return obj;
      }
      fail(`unexpected ${describe(i)}, expected "," or "}"`);
    }
  };

  const parseArray = (depth: number): JSONValue[] => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    const arr: JSONValue[] = [];
    i++; // [
    skipSpace();
    if (text[i] === "]") {
      i++;
      return arr;
    }
    for (;;) {
      arr.push(parseValue(depth));
      skipSpace();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") {
        i++;
        return arr;
      }
      fail(`unexpected ${describe(i)}, expected "," or "]"`);
    }
  };

  const value = parseValue(0);
  skipSpace();
  if (i < text.length) fail(`unexpected ${describe(i)} after the JSON value`);
  return value;
}

/** Reports whether `v` is a JSON object (not an array, not null). */
export function isJSONObject(v: JSONValue | undefined): v is JSONObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The JSON type of `v` in words, for error messages ("a string", "null", "an array"…). */
export function jsonTypeOf(v: JSONValue): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  return `a ${typeof v}`;
}

const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const GO_ESCAPES: Record<string, string> = { "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029" };

/** A string as Go's encoding/json writes it: HTML-safe escapes, invalid UTF-16 replaced by U+FFFD. */
function goString(s: string): string {
  return JSON.stringify(s.replace(LONE_SURROGATE_RE, "\uFFFD")).replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c] as string);
}

const utf8 = new TextEncoder();

/** A value Go's `json.Marshal` would write for a `map[string]any` built of strings, integers, maps and slices. */
export type GoJSONValue = string | number | boolean | null | GoJSONValue[] | { [key: string]: GoJSONValue };

/**
 * Serialises `value` exactly as Go's `json.Marshal` does for maps: object keys sorted by their
 * UTF-8 bytes, compact, HTML-safe string escapes. Numbers must be integers (the only kind the
 * signature payload has); anything else throws.
 */
export function goJSONMarshal(value: GoJSONValue): string {
  if (value === null) return "null";
  if (typeof value === "string") return goString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new RangeError(`goJSONMarshal: ${value} is not a safe integer`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(goJSONMarshal).join(",")}]`;
  const keys = Object.keys(value).sort((a, b) => Buffer.compare(utf8.encode(a), utf8.encode(b)));
  return `{${keys.map((k) => `${goString(k)}:${goJSONMarshal(value[k] as GoJSONValue)}`).join(",")}}`;
}
