/**
 * TLS settings for one registry host, from `--cert-dir` or the per-host certs.d directories, as
 * containers-certs.d(5) describes: `*.crt` files are extra CA certificates, a `NAME.cert` with a
 * matching `NAME.key` is a client certificate.
 * @see https://github.com/containers/image/blob/main/docs/containers-certs.d.5.md
 */
import { promises as fs } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import type { SecureContext } from "node:tls";
import { tls } from "../builtins.js";
import { AirlockError } from "../errors.js";

/** Connection settings derived from a cert dir. */
export interface TlsSettings {
  /** Verify the server certificate (false with `--tls-verify=false`). */
  verify: boolean;
  /** Trusted CAs: the system roots plus every `*.crt` of the cert dir; undefined = system roots only. */
  ca?: string[];
  /** Client certificate and key (PEM), when the cert dir has a `.cert`/`.key` pair. */
  cert?: string;
  key?: string;
  /** The cert dir the settings came from, if any (named in error messages). */
  certDir?: string;
  /** The base TLS options of `--tls-details`, if any. */
  base?: BaseTlsOptions;
}

/**
 * The contents of a containers-tls-details.yaml(5) file, as written (IANA names): all fields
 * optional.
 * @see https://github.com/containers/container-libs/blob/main/image/docs/containers-tls-details.yaml.5.md
 */
export interface TlsDetails {
  /** The minimum TLS version: "1.2" or "1.3". */
  minVersion?: string;
  /** The allowed cipher suites (IANA names); an empty list allows no TLS 1.2 suite. */
  cipherSuites?: string[];
  /** The allowed key-exchange groups (IANA names: x25519, secp256r1, …). */
  namedGroups?: string[];
}

/** Node TLS options derived from a {@link TlsDetails}: applied to every registry TLS connection. */
export interface BaseTlsOptions {
  /** The file they came from (named in error messages). */
  source: string;
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /** An OpenSSL cipher list (TLS 1.3 suites first, then the allowed TLS 1.2 ones). */
  ciphers?: string;
  /** An OpenSSL group list (colon-separated), for the `ecdhCurve` option. */
  ecdhCurve?: string;
}

const TLS_VERSIONS: Record<string, "TLSv1.2" | "TLSv1.3"> = { "1.2": "TLSv1.2", "1.3": "TLSv1.3" };

/**
 * The TLS 1.0–1.2 cipher suites Go's crypto/tls implements, by IANA name, with their OpenSSL
 * names (suites OpenSSL does not ship, such as RC4 and 3DES, map to undefined).
 */
const TLS12_SUITES: Record<string, string | undefined> = {
  TLS_RSA_WITH_RC4_128_SHA: undefined,
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: undefined,
  TLS_RSA_WITH_AES_128_CBC_SHA: "AES128-SHA",
  TLS_RSA_WITH_AES_256_CBC_SHA: "AES256-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA256: "AES128-SHA256",
  TLS_RSA_WITH_AES_128_GCM_SHA256: "AES128-GCM-SHA256",
  TLS_RSA_WITH_AES_256_GCM_SHA384: "AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_RC4_128_SHA: undefined,
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: "ECDHE-ECDSA-AES128-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: "ECDHE-ECDSA-AES256-SHA",
  TLS_ECDHE_RSA_WITH_RC4_128_SHA: undefined,
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: undefined,
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: "ECDHE-RSA-AES128-SHA",
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: "ECDHE-RSA-AES256-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: "ECDHE-RSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "ECDHE-RSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "ECDHE-RSA-AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ECDHE-ECDSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
};

/**
 * The TLS 1.3 suites. As in Go, they cannot be restricted: naming them is accepted and every one
 * stays enabled (containers-tls-details.yaml(5): "it is not possible to change which cipher suites
 * are used in TLS 1.3").
 */
const TLS13_SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

/** Key-exchange groups by IANA name (lower case), with their OpenSSL names. */
const NAMED_GROUPS: Record<string, string> = {
  secp256r1: "P-256",
  secp384r1: "P-384",
  secp521r1: "P-521",
  x25519: "X25519",
  x448: "X448",
};

/**
 * Maps the contents of a containers-tls-details.yaml(5) file onto Node TLS options; `source` (the
 * file) is named in errors. Throws ERR_INVALID_ARGUMENT for a version, suite or group it does not
 * know, naming the file and the value.
 */
export function baseTlsOptions(details: TlsDetails, source: string): BaseTlsOptions {
  const out: BaseTlsOptions = { source };
  const bad = (what: string, value: string, known: string[]) =>
    new AirlockError("ERR_INVALID_ARGUMENT", `${source}: unknown ${what} ${JSON.stringify(value)}; known values: ${known.join(", ")} (see containers-tls-details.yaml(5))`);
  if (details.minVersion !== undefined) {
    const v = TLS_VERSIONS[details.minVersion];
    if (!v) throw bad("minVersion", details.minVersion, Object.keys(TLS_VERSIONS));
    out.minVersion = v;
  }
  if (details.cipherSuites !== undefined) {
    const tls12: string[] = [];
    for (const name of details.cipherSuites) {
      if (TLS13_SUITES.includes(name)) continue;
      if (!(name in TLS12_SUITES)) throw bad("cipher suite", name, [...Object.keys(TLS12_SUITES), ...TLS13_SUITES]);
      const openssl = TLS12_SUITES[name];
      if (openssl === undefined) {
        throw new AirlockError("ERR_INVALID_ARGUMENT", `${source}: cipher suite ${name} is not available in this runtime's TLS library (OpenSSL); remove it from cipherSuites`);
      }
      if (!tls12.includes(openssl)) tls12.push(openssl);
    }
    out.ciphers = [...TLS13_SUITES, ...tls12].join(":");
  }
  if (details.namedGroups !== undefined) {
    if (details.namedGroups.length === 0) {
      throw new AirlockError("ERR_INVALID_ARGUMENT", `${source}: namedGroups is empty, which allows no key exchange; list at least one group or leave namedGroups out`);
    }
    const groups: string[] = [];
    for (const name of details.namedGroups) {
      const openssl = NAMED_GROUPS[name.toLowerCase()];
      if (!openssl) throw bad("named group", name, Object.keys(NAMED_GROUPS));
      if (!groups.includes(openssl)) groups.push(openssl);
    }
    out.ecdhCurve = groups.join(":");
  }
  return out;
}

/**
 * The per-host cert directories consulted when no `--cert-dir` is given, in order (the first one
 * that exists is used): ~/.config/containers/certs.d/HOST, /etc/containers/certs.d/HOST,
 * /etc/docker/certs.d/HOST.
 */
export function defaultCertDirs(host: string): string[] {
  const configHome = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return [join(configHome, "containers", "certs.d", host), join("/etc/containers/certs.d", host), join("/etc/docker/certs.d", host)];
}

/** Loads the TLS settings for `host`: from `certDir` when given, else from the first existing default dir. */
export async function loadTlsSettings(
  host: string,
  options: { certDir?: string | undefined; tlsVerify?: boolean | undefined; base?: BaseTlsOptions | undefined },
): Promise<TlsSettings> {
  const settings: TlsSettings = { verify: options.tlsVerify !== false };
  if (options.base) settings.base = options.base;
  let dir = options.certDir;
  if (dir === undefined) {
    for (const d of defaultCertDirs(host)) {
      if (await isDir(d)) {
        dir = d;
        break;
      }
    }
  }
  if (dir === undefined) return settings;
  let names: string[];
  try {
    names = (await fs.readdir(dir)).sort();
  } catch (cause) {
    if (options.certDir === undefined) return settings;
    throw new AirlockError("ERR_INVALID_ARGUMENT", `cannot read cert dir ${dir}: ${(cause as Error).message}; --cert-dir must name a directory holding ca.crt (and optionally client.cert/client.key)`, { cause });
  }
  settings.certDir = dir;
  const cas: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (name.endsWith(".crt")) {
      cas.push(await fs.readFile(path, "utf8"));
    } else if (name.endsWith(".cert")) {
      const keyName = `${name.slice(0, -".cert".length)}.key`;
      if (!names.includes(keyName)) {
        throw new AirlockError("ERR_INVALID_ARGUMENT", `client certificate ${path} has no matching key ${join(dir, keyName)}; put both in the cert dir or remove the certificate`);
      }
      settings.cert = await fs.readFile(path, "utf8");
      settings.key = await fs.readFile(join(dir, keyName), "utf8");
    } else if (name.endsWith(".key")) {
      const certName = `${name.slice(0, -".key".length)}.cert`;
      if (!names.includes(certName)) {
        throw new AirlockError("ERR_INVALID_ARGUMENT", `client key ${path} has no matching certificate ${join(dir, certName)}; put both in the cert dir or remove the key`);
      }
    }
  }
  if (cas.length > 0) settings.ca = [...tls().rootCertificates, ...cas];
  return settings;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

const CERT_ERRORS = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "INVALID_CA",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "HOSTNAME_MISMATCH",
]);

/** Reports whether `err` is a failed verification of the server's certificate. */
export function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && CERT_ERRORS.has(code);
}

/**
 * Reports whether `err` is a TLS alert the server sent during the handshake (OpenSSL's
 * `ERR_SSL_…_ALERT_…` codes): the server speaks TLS and refused this client, so falling back to
 * plain HTTP would only hide why.
 */
export function isTlsAlert(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && code.startsWith("ERR_SSL_") && code.includes("_ALERT_");
}

/** Reports whether `err` is the server refusing the client's certificate, or its absence (mutual TLS). */
export function isClientCertificateRefused(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /_ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE)$/.test(code);
}

/** Reports whether `err` means that a TLS client met a server that speaks plain HTTP. */
export function isPlainHttpResponse(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return (
    e?.code === "ERR_SSL_WRONG_VERSION_NUMBER" ||
    e?.code === "ERR_SSL_PACKET_LENGTH_TOO_LONG" ||
    (e?.code === "EPROTO" && /wrong version number|packet length too long|http request/i.test(String(e.message)))
  );
}

/** The flags that make airlock accept a registry's TLS setup, for error messages. */
export const TLS_VERIFY_FLAG_HINT = "--tls-verify=false (or --src-tls-verify=false / --dest-tls-verify=false for copy)";
/** The flag that adds a CA, for error messages. */
export const CERT_DIR_FLAG_HINT = "--cert-dir DIR (or --src-cert-dir / --dest-cert-dir for copy)";

const secureContexts = new Map<string, SecureContext>();

/**
 * A TLS secure context for settings with extra CAs, a client certificate or `--tls-details` base
 * options (undefined otherwise), shared by every connection with the same settings: building one
 * parses every CA and is slow.
 */
export function secureContextFor(settings: TlsSettings): SecureContext | undefined {
  const base = settings.base;
  if (!settings.ca && !settings.cert && !base) return undefined;
  const key = createHash("sha256")
    .update(
      JSON.stringify([
        settings.ca?.length ?? 0,
        settings.ca?.slice(tls().rootCertificates.length) ?? [],
        settings.cert ?? "",
        settings.key ?? "",
        base?.minVersion ?? "",
        base?.ciphers ?? "",
        base?.ecdhCurve ?? "",
      ]),
    )
    .digest("hex");
  let ctx = secureContexts.get(key);
  if (!ctx) {
    ctx = tls().createSecureContext({
      ...(settings.ca ? { ca: settings.ca } : {}),
      ...(settings.cert ? { cert: settings.cert } : {}),
      ...(settings.key ? { key: settings.key } : {}),
      ...(base?.minVersion ? { minVersion: base.minVersion } : {}),
      ...(base?.ciphers ? { ciphers: base.ciphers } : {}),
      ...(base?.ecdhCurve ? { ecdhCurve: base.ecdhCurve } : {}),
    });
    secureContexts.set(key, ctx);
  }
  return ctx;
}
