/**
 * `signedIdentity` matching: whether the identity inside a signature is acceptable for the image
 * being checked (containers/image `signature/policy_reference_match.go`). References are compared
 * after normalisation (`docker.io`, `library/`), never with a default tag added.
 *
 * @see https://github.com/containers/image/blob/main/signature/policy_reference_match.go
 */
import { DockerReference } from "@airlock/core";
import type { SignedIdentity } from "./config.js";

const nameOnly = (r: DockerReference) => r.tag === undefined && r.digest === undefined;

function parseOrUndefined(s: string): DockerReference | undefined {
  try {
    return DockerReference.parse(s);
  } catch {
    return undefined;
  }
}

/** matchRepoDigestOrExact on parsed values: the same tag (or tag@digest), or, for a digest-only image, the same repository. */
function repoDigestOrExact(intended: DockerReference, signature: DockerReference): boolean {
  if (nameOnly(signature)) return false;
  if (intended.tag !== undefined) return signature.toString() === intended.toString();
  if (intended.digest !== undefined) return signature.name === intended.name;
  return false;
}

/** Reports whether `name` is `prefix` or lies under `prefix/` (prmRemapIdentity.refMatchesPrefix). */
function nameMatchesPrefix(name: string, prefix: string): boolean {
  return name === prefix || (name.startsWith(prefix) && name[prefix.length] === "/");
}

/**
 * Reports whether `untrustedSignedReference` (the identity from a verified signature) is accepted
 * by `rule` for an image known as `imageReference` (undefined when the image has no Docker
 * identity, e.g. `dir:`; then only exactReference and exactRepository can match).
 */
export function signedIdentityMatches(rule: SignedIdentity, imageReference: string | undefined, untrustedSignedReference: string): boolean {
  const signature = parseOrUndefined(untrustedSignedReference);
  if (signature === undefined) return false;
  switch (rule.type) {
    case "exactReference": {
      const intended = parseOrUndefined(rule.dockerReference);
      if (intended === undefined || nameOnly(intended) || nameOnly(signature)) return false;
      return signature.toString() === intended.toString();
    }
    case "exactRepository": {
      const intended = parseOrUndefined(rule.dockerRepository);
      return intended !== undefined && signature.name === intended.name;
    }
    default:
      break;
  }
  if (imageReference === undefined) return false;
  let intended = parseOrUndefined(imageReference);
  if (intended === undefined) return false;
  switch (rule.type) {
    case "matchExact":
      return !nameOnly(intended) && !nameOnly(signature) && signature.toString() === intended.toString();
    case "matchRepoDigestOrExact":
      return repoDigestOrExact(intended, signature);
    case "matchRepository":
      return signature.name === intended.name;
    case "remapIdentity": {
      if (nameMatchesPrefix(intended.name, rule.prefix)) {
        const rewritten = intended.toString().replace(rule.prefix, rule.signedPrefix);
        const reparsed = parseOrUndefined(rewritten);
        // ParseNamed: the rewritten reference must already be in canonical (normalised) form.
        if (reparsed === undefined || reparsed.toString() !== rewritten) return false;
        intended = reparsed;
      }
      return repoDigestOrExact(intended, signature);
    }
  }
}

/** Describes a signedIdentity rule in words, for rejection messages. */
export function describeSignedIdentity(rule: SignedIdentity): string {
  switch (rule.type) {
    case "exactReference":
      return `exactReference ${rule.dockerReference}`;
    case "exactRepository":
      return `exactRepository ${rule.dockerRepository}`;
    case "remapIdentity":
      return `remapIdentity ${rule.prefix} → ${rule.signedPrefix}`;
    default:
      return rule.type;
  }
}
