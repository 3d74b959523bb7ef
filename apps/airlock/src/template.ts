/**
 * A small subset of Go's text/template, enough for `inspect --format` as skopeo users write it:
 * `{{.Field}}`, `{{.A.B}}`, `{{json .X}}`, `{{index .Labels "key"}}`, `{{join .RepoTags ","}}`,
 * `{{range .Layers}}…{{.}}…{{end}}`, `{{if .X}}…{{else}}…{{end}}`, and `{{"\n"}}`-style strings.
 */
import { UsageError } from "./errors.js";

type Node =
  | { kind: "text"; text: string }
  | { kind: "action"; expr: string }
  | { kind: "range"; expr: string; body: Node[] }
  | { kind: "if"; expr: string; then: Node[]; else: Node[] };

/** Renders `template` against `data`. Throws UsageError on a template it cannot parse. */
export function renderTemplate(template: string, data: unknown): string {
  const tokens = template.split(/({{-?\s*[\s\S]*?\s*-?}})/);
  let pos = 0;
  const parse = (stopAt: string[]): [Node[], string] => {
    const out: Node[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++] as string;
      if (!t.startsWith("{{")) {
        if (t) out.push({ kind: "text", text: t });
        continue;
      }
      const expr = t.replace(/^{{-?\s*/, "").replace(/\s*-?}}$/, "");
      if (stopAt.includes(expr)) return [out, expr];
      if (expr.startsWith("range ")) {
        const [body] = parse(["end"]);
        out.push({ kind: "range", expr: expr.slice(6), body });
      } else if (expr.startsWith("if ")) {
        const [then, stop] = parse(["else", "end"]);
        const [els] = stop === "else" ? parse(["end"]) : [[]];
        out.push({ kind: "if", expr: expr.slice(3), then, else: els });
      } else if (expr === "end" || expr === "else") {
        throw new UsageError(`--format: unexpected {{${expr}}}`);
      } else {
        out.push({ kind: "action", expr });
      }
    }
    if (stopAt.length) throw new UsageError(`--format: missing {{end}}`);
    return [out, ""];
  };
  const [nodes] = parse([]);
  return exec(nodes, data);
}

function exec(nodes: Node[], dot: unknown): string {
  let s = "";
  for (const n of nodes) {
    if (n.kind === "text") s += n.text;
    else if (n.kind === "action") s += show(evaluate(n.expr, dot));
    else if (n.kind === "range") {
      const v = evaluate(n.expr, dot);
      const items = Array.isArray(v) ? v : v && typeof v === "object" ? Object.values(v) : [];
      for (const item of items) s += exec(n.body, item);
    } else s += exec(truthy(evaluate(n.expr, dot)) ? n.then : n.else, dot);
  }
  return s;
}

function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v && typeof v === "object") return Object.keys(v).length > 0;
  return Boolean(v);
}

function show(v: unknown): string {
  if (v === undefined || v === null) return "<no value>";
  if (Array.isArray(v)) return `[${v.map(show).join(" ")}]`;
  if (typeof v === "object") return `map[${Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => `${k}:${show(x)}`).join(" ")}]`;
  return String(v);
}

function args(expr: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of expr.matchAll(re)) out.push(m[1] !== undefined ? JSON.stringify(JSON.parse(`"${m[1]}"`)) : (m[2] as string));
  return out;
}

function value(token: string, dot: unknown): unknown {
  if (token.startsWith('"')) return JSON.parse(token);
  if (token === ".") return dot;
  if (token.startsWith(".")) {
    let v: unknown = dot;
    for (const key of token.slice(1).split(".")) {
      v = v && typeof v === "object" ? (v as Record<string, unknown>)[key] : undefined;
    }
    return v;
  }
  if (/^-?\d+$/.test(token)) return Number(token);
  throw new UsageError(`--format: cannot evaluate ${JSON.stringify(token)}`);
}

function evaluate(expr: string, dot: unknown): unknown {
  const [fn, ...rest] = args(expr);
  if (fn === undefined) return "";
  switch (fn) {
    case "json":
      return JSON.stringify(value(rest[0] ?? ".", dot));
    case "index": {
      let v = value(rest[0] ?? ".", dot);
      for (const k of rest.slice(1)) v = v && typeof v === "object" ? (v as Record<string, unknown>)[String(value(k, dot))] : undefined;
      return v;
    }
    case "join": {
      const v = value(rest[0] ?? ".", dot);
      return Array.isArray(v) ? v.join(String(value(rest[1] ?? '""', dot))) : "";
    }
    case "len": {
      const v = value(rest[0] ?? ".", dot);
      return Array.isArray(v) || typeof v === "string" ? v.length : v && typeof v === "object" ? Object.keys(v).length : 0;
    }
    case "upper":
      return String(value(rest[0] ?? ".", dot)).toUpperCase();
    case "lower":
      return String(value(rest[0] ?? ".", dot)).toLowerCase();
    default:
      if (rest.length) throw new UsageError(`--format: unknown function ${JSON.stringify(fn)} (airlock knows json, index, join, len, upper, lower)`);
      return value(fn, dot);
  }
}
