/**
 * Strict, position-aware checking of YAML documents: the machinery behind `images.yaml` and
 * `images.lock.yaml`. Every problem is recorded as `FILE:LINE:COL: message` (1-based, as editors
 * and compilers print them) and all of them are reported at once in one {@link ConfigFileError}.
 *
 * The document is parsed with the `yaml` package (YAML 1.2, core schema) keeping node ranges; a
 * {@link LineCounter} turns offsets into lines and columns. Values are read from the node tree, not
 * from `toJS()`, so that each error points at the node that caused it.
 */
import { AirlockError } from "@airlock/core";
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type Scalar, type YAMLMap } from "yaml";

/** One problem found in a configuration file, at a 1-based line and column. */
export interface ConfigIssue {
  /** The file name as it was given (e.g. `images.yaml`). */
  file: string;
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  col: number;
  /** What is wrong and what to write instead. Never contains the value of a secret. */
  message: string;
}

/** Formats an issue as `FILE:LINE:COL: message`. */
export function formatIssue(issue: ConfigIssue): string {
  return `${issue.file}:${issue.line}:${issue.col}: ${issue.message}`;
}

/**
 * A configuration file that is not valid: an ERR_INVALID_ARGUMENT whose message has a summary line
 * followed by one `FILE:LINE:COL: message` line per problem, and whose `issues` lists them as data.
 */
export class ConfigFileError extends AirlockError {
  /** Every problem found, in file order. */
  readonly issues: readonly ConfigIssue[];

  constructor(file: string, what: string, issues: readonly ConfigIssue[]) {
    const n = issues.length;
    super("ERR_INVALID_ARGUMENT", [`${file} is not a valid ${what} (${n} ${n === 1 ? "error" : "errors"}):`, ...issues.map(formatIssue)].join("\n"));
    this.name = "ConfigFileError";
    this.issues = issues;
  }
}

/** A key of a mapping and the node of its value (null for `key:` with no value). */
export interface Entry {
  key: Scalar;
  value: Node | null;
}

/** Keys whose presence with a value means someone wrote a secret into the file. */
const SECRET_KEYS = new Set(["password", "passwd", "pass", "secret", "token", "auth", "identitytoken", "registrytoken", "accesstoken", "apikey"]);

/** Reports whether a mapping key names a secret (`password`, `token`, `auth`, …). */
export function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(key.toLowerCase().replace(/[-_]/g, ""));
}

const q = (s: string): string => JSON.stringify(s);

/** A short, safe rendering of a scalar's source text for messages (never used for secrets). */
function shown(node: Node | null): string {
  if (node === null) return "nothing";
  if (isScalar(node)) {
    const src = typeof node.source === "string" ? node.source : String(node.value);
    return src.length > 60 ? `${q(src.slice(0, 57))}…` : q(src);
  }
  return isMap(node) ? "a mapping" : isSeq(node) ? "a list" : "an alias";
}

/** What kind of YAML value a node holds, for "expected X, found Y" messages. */
function kindOf(node: Node | null): string {
  if (node === null) return "nothing";
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return "null";
    if (typeof v === "string") return `the string ${shown(node)}`;
    if (typeof v === "number") return `the number ${shown(node)}`;
    if (typeof v === "boolean") return `the boolean ${shown(node)}`;
  }
  return "an unsupported value";
}

/** Suggests a known key for a mistyped one: same letters ignoring case and -/_, or within edit distance 2. */
function suggest(key: string, allowed: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  const exact = allowed.find((a) => norm(a) === norm(key));
  if (exact) return exact;
  let best: string | undefined;
  let bestD = 3;
  for (const a of allowed) {
    const d = editDistance(norm(key), norm(a));
    if (d < bestD) {
      bestD = d;
      best = a;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] as number;
      prev[j] = Math.min(up + 1, (prev[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] as number;
}

/**
 * A parsed YAML document and the problems found in it so far. The reading methods record an
 * issue and return undefined when a value is not of the expected shape, so that checking goes on
 * and every problem is reported in one run.
 */
export class YamlChecker {
  /** The file name used in messages. */
  readonly file: string;
  /** The problems found so far. */
  readonly issues: ConfigIssue[] = [];
  /** The root node of the document, or null when it is empty or could not be parsed. */
  readonly root: Node | null;
  private readonly lines: LineCounter;
  private readonly brokenAliases = new WeakSet<Node>();
  private readonly doc: ReturnType<typeof parseDocument>;

  /** Parses `text`; syntax errors (including duplicate keys and a second document) become issues. */
  constructor(text: string, file: string) {
    this.file = file;
    this.lines = new LineCounter();
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, uniqueKeys: true, strict: true, keepSourceTokens: false });
    for (const e of [...this.doc.errors, ...this.doc.warnings]) {
      // The library's message is its first line; never echo source text (it might hold a secret).
      this.errorAt(e.pos[0], yamlMessage(e.code, e.message));
    }
    // A duplicate key leaves a well-formed tree: go on checking it, so that every problem shows at
    // once. After any other syntax error the tree may be partial: stop there.
    const fatal = this.doc.errors.some((e) => e.code !== "DUPLICATE_KEY");
    this.root = fatal ? null : ((this.doc.contents as Node | null) ?? null);
  }

  /** The 1-based line and column of an offset in the text. */
  position(offset: number): { line: number; col: number } {
    return this.lines.linePos(offset);
  }

  /** `FILE:LINE:COL` of a node (where its value starts), or of the document start. */
  where(node: Node | null | undefined): string {
    const { line, col } = this.position(node?.range?.[0] ?? 0);
    return `${this.file}:${line}:${col}`;
  }

  /** Records a problem at an offset. */
  errorAt(offset: number, message: string): void {
    const { line, col } = this.position(offset);
    this.issues.push({ file: this.file, line, col, message });
  }

  /** Records a problem at a node (the document start when there is no node). */
  error(node: Node | null | undefined, message: string): void {
    if (node != null && this.brokenAliases.has(node)) return; // already reported: "refers to no anchor"
    this.errorAt(node?.range?.[0] ?? 0, message);
  }

  /** Throws a {@link ConfigFileError} listing every issue (sorted by position) if there is any. */
  throwIfIssues(what: string): void {
    if (this.issues.length === 0) return;
    const sorted = [...this.issues].sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigFileError(this.file, what, sorted);
  }

  /** Follows an alias (`*name`) to the node it refers to; records an issue if it refers to nothing. */
  deref(node: Node | null): Node | null {
    if (node !== null && isAlias(node)) {
      const target = node.resolve(this.doc) as Node | undefined;
      if (target === undefined) {
        this.error(node, `alias *${node.source} refers to no anchor`);
        this.brokenAliases.add(node);
        return null;
      }
      return target;
    }
    return node;
  }

  /**
   * Reads a mapping whose keys must all be in `allowed`: returns its entries by key. Unknown keys
   * are issues (with a suggestion); a key that names a secret gets a message saying where
   * credentials come from instead.
   */
  mapping(node: Node | null, path: string, allowed: readonly string[] | undefined, secretHint?: string): Map<string, Entry> | undefined {
    const n = this.deref(node);
    if (n === null || !isMap(n)) {
      this.error(n ?? node, `${path} must be a mapping, found ${kindOf(n)}`);
      return undefined;
    }
    return this.entries(n, path, allowed, secretHint);
  }

  /** Reads the entries of a mapping with string keys; see {@link mapping}. `allowed` undefined = any key. */
  entries(map: YAMLMap, path: string, allowed: readonly string[] | undefined, secretHint?: string): Map<string, Entry> {
    const out = new Map<string, Entry>();
    for (const pair of map.items) {
      const key = pair.key as Node | null;
      if (key === null || !isScalar(key) || (typeof key.value !== "string" && typeof key.value !== "number")) {
        this.error(key ?? (pair.value as Node | null), `${path}: keys must be plain strings`);
        continue;
      }
      const name = String(key.value);
      const value = (pair.value as Node | null) ?? null;
      if (allowed !== undefined && !allowed.includes(name)) {
        if (isSecretKey(name)) {
          this.error(key, `${path}: ${q(name)} looks like a secret; secrets never go in this file${secretHint ? `: ${secretHint}` : ""}`);
        } else {
          const s = suggest(name, allowed);
          this.error(key, `${path}: unknown key ${q(name)}${s ? ` (did you mean ${q(s)}?)` : ""}; allowed keys: ${allowed.join(", ")}`);
        }
        continue;
      }
      out.set(name, { key: key as Scalar, value });
    }
    return out;
  }

  /** Records "PATH: KEY is required" at the mapping when `key` is missing. */
  require(entries: Map<string, Entry>, key: string, map: Node | null, path: string): Entry | undefined {
    const e = entries.get(key);
    if (e === undefined) this.error(map, `${path}: ${q(key)} is required`);
    return e;
  }

  /** Reads a string scalar; numbers and booleans are refused with a hint to quote them. */
  string(node: Node | null, path: string, options: { secret?: boolean } = {}): string | undefined {
    const n = this.deref(node);
    if (n !== null && isScalar(n) && typeof n.value === "string") {
      if (n.value === "") {
        this.error(n, `${path} must not be empty`);
        return undefined;
      }
      return n.value;
    }
    if (n !== null && isScalar(n) && (typeof n.value === "number" || typeof n.value === "boolean") && !options.secret) {
      const src = typeof n.source === "string" ? n.source : String(n.value);
      const note = typeof n.value === "number" && String(n.value) !== src ? ` (YAML reads ${src} as the number ${n.value})` : "";
      this.error(n, `${path} must be a string, found ${kindOf(n)}${note}; quote it: ${q(src)}`);
      return undefined;
    }
    this.error(n ?? node, `${path} must be a string, found ${options.secret ? "something else" : kindOf(n)}`);
    return undefined;
  }

  /** Reads a boolean scalar (`true` / `false`). */
  boolean(node: Node | null, path: string): boolean | undefined {
    const n = this.deref(node);
    if (n !== null && isScalar(n) && typeof n.value === "boolean") return n.value;
    this.error(n ?? node, `${path} must be true or false, found ${kindOf(n)}`);
    return undefined;
  }

  /** Reads an integer scalar of at least `min`. */
  integer(node: Node | null, path: string, min: number): number | undefined {
    const n = this.deref(node);
    if (n !== null && isScalar(n) && typeof n.value === "number" && Number.isSafeInteger(n.value) && n.value >= min) return n.value;
    this.error(n ?? node, `${path} must be an integer of at least ${min}, found ${kindOf(n)}`);
    return undefined;
  }

  /** Reads a list; returns its item nodes (aliases followed). */
  list(node: Node | null, path: string): (Node | null)[] | undefined {
    const n = this.deref(node);
    if (n === null || !isSeq(n)) {
      this.error(n ?? node, `${path} must be a list, found ${kindOf(n)}`);
      return undefined;
    }
    return n.items.map((i) => this.deref((i as Node | null) ?? null));
  }

  /** Reads a string or a list of strings, as a list. */
  stringList(node: Node | null, path: string): { value: string; node: Node | null }[] | undefined {
    const n = this.deref(node);
    if (n !== null && isScalar(n) && typeof n.value === "string") return [{ value: n.value, node: n }];
    if (n === null || !isSeq(n)) {
      this.error(n ?? node, `${path} must be a string or a list of strings, found ${kindOf(n)}`);
      return undefined;
    }
    const out: { value: string; node: Node | null }[] = [];
    n.items.forEach((item, i) => {
      const v = this.string((item as Node | null) ?? null, `${path}[${i}]`);
      if (v !== undefined) out.push({ value: v, node: this.deref((item as Node | null) ?? null) });
    });
    return out;
  }

  /** The value of a string scalar (aliases followed), or undefined for anything else; records nothing. */
  scalarString(node: Node | null): string | undefined {
    const n = this.deref(node);
    return n !== null && isScalar(n) && typeof n.value === "string" ? n.value : undefined;
  }

  /** Reports whether a node is a scalar with the given value. */
  isScalarValue(node: Node | null, value: unknown): boolean {
    const n = this.deref(node);
    return n !== null && isScalar(n) && n.value === value;
  }

  /** Reports whether a node (after aliases) is a mapping. */
  isMapping(node: Node | null): boolean {
    const n = this.deref(node);
    return n !== null && isMap(n);
  }

  /** Reports whether a node (after aliases) is a list. */
  isList(node: Node | null): boolean {
    const n = this.deref(node);
    return n !== null && isSeq(n);
  }
}

/** The yaml library's message without position and source excerpt, with the code for reference. */
function yamlMessage(code: string, message: string): string {
  const first = (message.split("\n")[0] ?? message).replace(/ at line \d+, column \d+:?$/, "").trim();
  return `YAML syntax: ${first} (${code})`;
}
