/**
 * `--tls-details FILE`: reads a containers-tls-details.yaml(5) file and turns it into the base TLS
 * options every registry connection uses (`DockerContext.baseTls`). The YAML is read here because
 * @airlock/core reads no YAML; the names are mapped by core's `baseTlsOptions`.
 * @see https://github.com/containers/container-libs/blob/main/image/docs/containers-tls-details.yaml.5.md
 */
import { readFileSync } from "node:fs";
import { AirlockError, type BaseTlsOptions, baseTlsOptions, type TlsDetails } from "@airlock/core";
import { parse } from "yaml";

const cache = new Map<string, BaseTlsOptions>();

/**
 * The base TLS options of the containers-tls-details.yaml(5) file at `path` (read once per
 * process). Throws ERR_INVALID_ARGUMENT naming the file for an unreadable file, a field it does
 * not know, a value of the wrong type, or an unknown version, cipher suite or group.
 */
export function loadTlsDetails(path: string): BaseTlsOptions {
  const cached = cache.get(path);
  if (cached) return cached;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", `--tls-details ${path}: cannot read the file: ${(cause as Error).message}`, { cause });
  }
  const options = baseTlsOptions(parseTlsDetails(text, path), path);
  cache.set(path, options);
  return options;
}

/** Parses the text of a containers-tls-details.yaml(5) file strictly; `path` is named in errors. */
export function parseTlsDetails(text: string, path: string): TlsDetails {
  const bad = (message: string, cause?: unknown) =>
    new AirlockError("ERR_INVALID_ARGUMENT", `${path}: ${message} (see containers-tls-details.yaml(5): minVersion, cipherSuites, namedGroups)`, cause ? { cause } : undefined);
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (cause) {
    throw bad(`not valid YAML: ${(cause as Error).message}`, cause);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw bad("the file must be a YAML mapping");
  const details: TlsDetails = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (key === "minVersion") {
      if (typeof value !== "string") throw bad(`minVersion must be a quoted string such as "1.2" or "1.3", not ${JSON.stringify(value)}`);
      details.minVersion = value;
    } else if (key === "cipherSuites" || key === "namedGroups") {
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw bad(`${key} must be a list of names`);
      details[key] = value as string[];
    } else {
      throw bad(`unknown field ${JSON.stringify(key)}`);
    }
  }
  return details;
}
