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
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
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
export async function loadTlsSettings(host: string, options: { certDir?: string | undefined; tlsVerify?: boolean | undefined }): Promise<TlsSettings> {
  const settings: TlsSettings = { verify: options.tlsVerify !== false };
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
  if (cas.length > 0) settings.ca = [...rootCertificates, ...cas];
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
 * A TLS secure context for settings with extra CAs or a client certificate (undefined otherwise),
 * shared by every connection with the same settings: building one parses every CA and is slow.
 */
export function secureContextFor(settings: TlsSettings): SecureContext | undefined {
  if (!settings.ca && !settings.cert) return undefined;
  const key = createHash("sha256")
    .update(JSON.stringify([settings.ca?.length ?? 0, settings.ca?.slice(rootCertificates.length) ?? [], settings.cert ?? "", settings.key ?? ""]))
    .digest("hex");
  let ctx = secureContexts.get(key);
  if (!ctx) {
    ctx = createSecureContext({
      ...(settings.ca ? { ca: settings.ca } : {}),
      ...(settings.cert ? { cert: settings.cert } : {}),
      ...(settings.key ? { key: settings.key } : {}),
    });
    secureContexts.set(key, ctx);
  }
  return ctx;
}
