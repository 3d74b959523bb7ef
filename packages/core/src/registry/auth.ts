/**
 * Registry authentication: `WWW-Authenticate` challenges, credentials, and a per-scope cache of
 * bearer tokens.
 * @see https://distribution.github.io/distribution/spec/auth/token/
 * @see https://datatracker.ietf.org/doc/html/rfc7235#section-4.1
 */

/** Credentials for one registry: a username and password, or an identity (OAuth2 refresh) token. */
export interface RegistryCredentials {
  username: string;
  password: string;
  /** An identity token (auth file `identitytoken`): exchanged with the OAuth2 refresh_token grant. */
  identityToken?: string;
}

/** One challenge of a `WWW-Authenticate` header: the scheme (lowercased) and its parameters. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header into challenges, e.g.
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
 * Parameter names are lowercased; quoted values are unescaped.
 */
export function parseWWWAuthenticate(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseWWWAuthenticate(h));
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = () => {
    while (i < s.length && (s[i] === " " || s[i] === "\t")) i++;
  };
  const token = () => {
    const start = i;
    while (i < s.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(s[i] as string)) i++;
    return s.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < s.length) {
    skipWs();
    if (s[i] === ",") {
      i++;
      continue;
    }
    const start = i;
    const name = token();
    if (name === "") {
      i++;
      continue;
    }
    skipWs();
    if (s[i] === "=" && current !== undefined) {
      i++;
      skipWs();
      let value = "";
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === "\\" && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++;
      } else {
        const vs = i;
        while (i < s.length && s[i] !== "," && s[i] !== " ") i++;
        value = s.slice(vs, i);
      }
      current.params[name.toLowerCase()] = value;
    } else {
      // A new challenge: `Scheme [token68 | params]`.
      i = start + name.length;
      current = { scheme: name.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}

/** The `repository:NAME:ACTIONS` scope string for a repository path and actions. */
export function repositoryScope(path: string, actions: string): string {
  return `repository:${path}:${actions}`;
}

/**
 * Merges scope strings: actions for the same resource are united (`pull` + `push` →
 * `pull,push`, anything + `*` → `*`), the result sorted so that equal sets give equal keys.
 */
export function mergeScopes(scopes: readonly string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  const plain: string[] = [];
  for (const s of scopes) {
    const last = s.lastIndexOf(":");
    const first = s.indexOf(":");
    if (first < 0 || last === first) {
      plain.push(s);
      continue;
    }
    const resource = s.slice(0, last);
    const set = byResource.get(resource) ?? new Set<string>();
    for (const a of s.slice(last + 1).split(",")) if (a) set.add(a);
    byResource.set(resource, set);
  }
  const out = new Set(plain);
  for (const [resource, actions] of byResource) {
    const list = actions.has("*") ? ["*"] : [...actions].sort((a, b) => actionRank(a) - actionRank(b) || a.localeCompare(b));
    out.add(`${resource}:${list.join(",")}`);
  }
  return [...out].sort();
}

function actionRank(a: string): number {
  return a === "pull" ? 0 : a === "push" ? 1 : 2;
}

/** A bearer token and when it stops being usable. */
export interface CachedToken {
  token: string;
  /** Milliseconds since the epoch after which the token is not used any more. */
  expiresAt: number;
}

/** Shortest lifetime assumed for a token without `expires_in`, and the minimum honoured (seconds). */
export const MIN_TOKEN_LIFETIME_S = 60;

/** Parses a token endpoint's JSON answer: `token` or `access_token`, `expires_in`, `issued_at`, `refresh_token`. */
export function parseTokenResponse(body: string, now = Date.now()): (CachedToken & { refreshToken?: string }) | undefined {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const token = typeof json.token === "string" && json.token !== "" ? json.token : typeof json.access_token === "string" ? json.access_token : undefined;
  if (!token) return undefined;
  let lifetime = typeof json.expires_in === "number" ? json.expires_in : MIN_TOKEN_LIFETIME_S;
  if (lifetime < MIN_TOKEN_LIFETIME_S) lifetime = MIN_TOKEN_LIFETIME_S;
  let issued = now;
  if (typeof json.issued_at === "string") {
    const t = Date.parse(json.issued_at);
    if (!Number.isNaN(t) && t <= now) issued = t;
  }
  // Renew 10 s early so that a token does not expire in flight.
  const out: CachedToken & { refreshToken?: string } = { token, expiresAt: issued + lifetime * 1000 - 10_000 };
  if (typeof json.refresh_token === "string") out.refreshToken = json.refresh_token;
  return out;
}

/**
 * A cache of bearer tokens keyed by their scope set. Concurrent requests for the same scopes
 * share one token request.
 */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();

  /** Returns a valid cached token for `scopes`, or obtains one with `fetch` (once for concurrent callers). */
  async get(scopes: readonly string[], fetch: () => Promise<CachedToken>, now = Date.now()): Promise<CachedToken> {
    const key = scopes.join(" ");
    const hit = this.tokens.get(key);
    if (hit && hit.expiresAt > now) return hit;
    let p = this.pending.get(key);
    if (!p) {
      p = fetch().then(
        (t) => {
          this.tokens.set(key, t);
          this.pending.delete(key);
          return t;
        },
        (err: unknown) => {
          this.pending.delete(key);
          throw err;
        },
      );
      this.pending.set(key, p);
    }
    return p;
  }

  /** Forgets the token for `scopes` (after the registry refused it). */
  invalidate(scopes: readonly string[]): void {
    this.tokens.delete(scopes.join(" "));
  }
}

/** The `Authorization` value for HTTP basic authentication. */
export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, "utf8").toString("base64")}`;
}
