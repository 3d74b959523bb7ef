/**
 * HTTP basic authentication against an htpasswd file with bcrypt entries (`htpasswd -B`), as
 * docker-registry's `auth.htpasswd`. Entries hashed otherwise (MD5, SHA-1, crypt) are refused:
 * only bcrypt is safe to keep on disk.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import { AirlockError } from "@airlock/core";
import bcrypt from "bcryptjs";

/** The user names and bcrypt hashes of an htpasswd file. */
export class Htpasswd {
  private readonly users: Map<string, string>;
  /** sha256 of `user:password` pairs already verified, so bcrypt runs once per credential. */
  private readonly verified = new Set<string>();
  /** A hash to compare against for unknown users, so they take about as long as known ones. */
  private static dummy: string | undefined;

  private constructor(users: Map<string, string>) {
    this.users = users;
  }

  /**
   * Reads an htpasswd file. `warn` is told about each line that is skipped (never its hash).
   * Throws ERR_INVALID_ARGUMENT when the file cannot be read or holds no bcrypt entry.
   */
  static async load(path: string, warn: (message: string) => void = () => {}): Promise<Htpasswd> {
    let text: string;
    try {
      text = await fs.readFile(path, "utf8");
    } catch (cause) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read the htpasswd file ${path}: ${(cause as Error).message}`, { cause });
    }
    const users = Htpasswd.parse(text, (line, why) => warn(`${path}:${line}: ${why}; the entry is ignored`));
    if (users.size === 0) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `the htpasswd file ${path} has no bcrypt entry; create one with: htpasswd -B ${path} USER`);
    }
    return new Htpasswd(users);
  }

  /** Parses htpasswd text; `skip` is told the line number and reason of each unusable line. */
  static parse(text: string, skip: (line: number, why: string) => void = () => {}): Map<string, string> {
    const users = new Map<string, string>();
    for (const [i, raw] of text.split(/\r?\n/).entries()) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      const colon = line.indexOf(":");
      if (colon <= 0) {
        skip(i + 1, "not USER:HASH");
        continue;
      }
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (!/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
        skip(i + 1, `the password of ${JSON.stringify(user)} is not bcrypt-hashed (use htpasswd -B)`);
        continue;
      }
      users.set(user, hash);
    }
    return users;
  }

  /** Creates an Htpasswd from parsed entries (user → bcrypt hash). */
  static fromEntries(users: Map<string, string>): Htpasswd {
    return new Htpasswd(new Map(users));
  }

  /** Reports whether `password` is the password of `user`. */
  async verify(user: string, password: string): Promise<boolean> {
    const key = createHash("sha256").update(`${user}\0${password}`).digest("hex");
    if (this.verified.has(key)) return true;
    const hash = this.users.get(user);
    Htpasswd.dummy ??= bcrypt.hashSync("airlock-dummy-password", 5);
    const ok = await bcrypt.compare(password, hash ?? Htpasswd.dummy);
    if (!ok || hash === undefined) return false;
    if (this.verified.size > 10_000) this.verified.clear();
    this.verified.add(key);
    return true;
  }
}

/** Reads the user and password of an `Authorization: Basic …` header; undefined when it is not one. */
export function parseBasicAuth(header: string | undefined): { username: string; password: string } | undefined {
  if (!header) return undefined;
  const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = text.indexOf(":");
  if (colon < 0) return undefined;
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}
