/**
 * Mirror configuration for the clusters on the air-gapped side: where each upstream registry's
 * images are in the offline registry (as `airlock import --to REGISTRY[/PREFIX]` named them), in the
 * formats of containerd (hosts.toml), CRI-O and podman (containers-registries.conf(5)), Docker
 * (daemon.json) and Kubernetes on OpenShift (ImageDigestMirrorSet / ImageTagMirrorSet).
 */
import { stringify } from "yaml";
import { destinationName, registryPathComponent, splitBundleName } from "../config/naming.js";
import type { NamingMode } from "../config/naming.js";

/** The runtimes `mirror-config --for` knows. */
export const MIRROR_TARGETS = ["containerd", "cri-o", "podman", "docker", "kubernetes"] as const;

/** One runtime of {@link MIRROR_TARGETS}. */
export type MirrorTarget = (typeof MIRROR_TARGETS)[number];

/** Transport settings of the offline registry, as the runtimes should use it. */
export interface MirrorTls {
  /** The offline registry speaks plain HTTP. */
  plainHttp?: boolean;
  /** HTTPS without certificate verification. */
  skipVerify?: boolean;
  /** A CA certificate file (a path on the nodes) to verify the offline registry with. */
  caFile?: string;
}

/** One upstream registry and where its repositories are in the offline registry. */
export interface UpstreamMirror {
  /** The upstream registry host, e.g. `docker.io` or `quay.io`. */
  registry: string;
  /** The offline namespace: `HOST[/PATH]`, e.g. `registry.local:5000/mirror/docker.io`. */
  mirror: string;
}

/** What a mirror configuration is made from. */
export interface MirrorPlan {
  /** The offline registry host. */
  host: string;
  upstreams: UpstreamMirror[];
  /** Every image: its source name and the reference import gave it. */
  references: { source: string; destination: string }[];
  /** Images that name no upstream registry (`as:` names): reachable only by their rewritten reference. */
  unmapped: string[];
}

/**
 * Computes where every upstream registry of `names` (bundle names such as
 * `docker.io/library/busybox:1.36`) lives under `target` (`REGISTRY[/PREFIX]`) with `naming`,
 * the same rule as import (destinationName). `extraUpstreams` adds registries with no image listed.
 */
export function planMirrors(target: string, naming: NamingMode, names: string[], extraUpstreams: string[] = []): MirrorPlan {
  const base = target.replace(/^docker:\/\//, "").replace(/\/+$/, "");
  destinationName("example/check:1", naming, base); // validates the target with import's message
  const host = base.split("/")[0] as string;
  const registries = new Set<string>(extraUpstreams);
  const references: MirrorPlan["references"] = [];
  const unmapped: string[] = [];
  for (const name of names) {
    const { registry } = splitBundleName(name);
    references.push({ source: name, destination: destinationName(name, naming, base).toString() });
    if (registry) registries.add(registry);
    else unmapped.push(name);
  }
  const upstreams = [...registries].sort().map((registry) => ({ registry, mirror: naming === "strip-registry" ? base : `${base}/${registryPathComponent(registry)}` }));
  return { host, upstreams, references, unmapped };
}

/** One file of a mirror configuration: a path relative to the output directory and its content. */
export interface MirrorFile {
  path: string;
  content: string;
  /** Things the user must know about this file (limits of the runtime). */
  notes: string[];
}

const HEADER = "Written by airlock mirror-config";
const tomlString = (s: string) => JSON.stringify(s); // a TOML basic string: JSON's escapes are TOML's

/** The upstream's real endpoint, as containerd's `server` (Docker Hub's API is not at docker.io). */
function upstreamServer(registry: string): string {
  return registry === "docker.io" ? "https://registry-1.docker.io" : `https://${registry}`;
}

/**
 * containerd: one `certs.d/<upstream>/hosts.toml` per upstream registry (config_path, containerd
 * ≥ 1.5), with the offline registry as a host for pull and resolve. A namespace below the host is
 * given as the host's API path (`/v2/PREFIX`) with `override_path = true`.
 */
export function containerdHosts(plan: MirrorPlan, tls: MirrorTls): MirrorFile[] {
  const scheme = tls.plainHttp ? "http" : "https";
  return plan.upstreams.map(({ registry, mirror }) => {
    const slash = mirror.indexOf("/");
    const path = slash < 0 ? "" : mirror.slice(slash + 1);
    const url = path ? `${scheme}://${plan.host}/v2/${path}` : `${scheme}://${plan.host}`;
    const lines = [`# ${HEADER}: pull ${registry} images from the offline registry ${mirror}.`, `server = ${tomlString(upstreamServer(registry))}`, "", `[host.${tomlString(url)}]`, `  capabilities = ["pull", "resolve"]`];
    if (path) lines.push("  override_path = true");
    if (tls.skipVerify) lines.push("  skip_verify = true");
    if (tls.caFile) lines.push(`  ca = ${tomlString(tls.caFile)}`);
    return { path: `containerd/certs.d/${registry}/hosts.toml`, content: `${lines.join("\n")}\n`, notes: [] };
  });
}

/**
 * CRI-O and podman: a containers-registries.conf(5) drop-in (version 2 format) with one
 * `[[registry]]` per upstream and the offline namespace as its `[[registry.mirror]]`.
 */
export function registriesConf(plan: MirrorPlan, tls: MirrorTls): MirrorFile {
  const lines = [`# ${HEADER}: pull upstream images from the offline registry ${plan.host}.`, "# Install as /etc/containers/registries.conf.d/50-airlock-mirror.conf (CRI-O and podman read it)."];
  for (const { registry, mirror } of plan.upstreams) {
    lines.push("", "[[registry]]", `prefix = ${tomlString(registry)}`, `location = ${tomlString(registry)}`, "", "[[registry.mirror]]", `location = ${tomlString(mirror)}`);
    if (tls.plainHttp || tls.skipVerify) lines.push("insecure = true");
  }
  const notes = tls.caFile ? [`registries.conf has no CA setting: put the CA in /etc/containers/certs.d/${plan.host}/ca.crt`] : [];
  return { path: "registries.conf.d/50-airlock-mirror.conf", content: `${lines.join("\n")}\n`, notes };
}

/**
 * Docker: a daemon.json fragment. `registry-mirrors` applies to Docker Hub (docker.io) only and
 * needs Hub's repositories at the mirror's root, so it is written only when docker.io maps to the
 * bare offline host (strip-registry, no prefix); otherwise pull by the rewritten references.
 */
export function dockerDaemon(plan: MirrorPlan, tls: MirrorTls): MirrorFile {
  const json: Record<string, unknown> = {};
  const notes: string[] = ["Docker's registry-mirrors applies only to docker.io images; images of other registries must be pulled by their rewritten references (mapping.txt)."];
  const hub = plan.upstreams.find((u) => u.registry === "docker.io");
  if (hub && hub.mirror === plan.host) {
    json["registry-mirrors"] = [`${tls.plainHttp ? "http" : "https"}://${plan.host}`];
  } else if (hub) {
    notes.push(`docker.io maps to ${hub.mirror}, a path below the host, which Docker's registry-mirrors cannot express (import with --naming strip-registry and no prefix for that); no registry-mirrors written`);
  }
  if (tls.plainHttp || tls.skipVerify) json["insecure-registries"] = [plan.host];
  if (tls.caFile) notes.push(`Docker reads a registry's CA from /etc/docker/certs.d/${plan.host}/ca.crt`);
  return { path: "docker/daemon.json", content: `${JSON.stringify(json, null, 2)}\n`, notes };
}

/**
 * Kubernetes (OpenShift's config.openshift.io/v1 API, also honoured by CRI-O-based distributions
 * that import it): an ImageDigestMirrorSet (pulls by digest) and an ImageTagMirrorSet (by tag).
 */
export function kubernetesMirrorSets(plan: MirrorPlan, name = "airlock-mirror"): MirrorFile[] {
  const mirrors = plan.upstreams.map(({ registry, mirror }) => ({ source: registry, mirrors: [mirror] }));
  const doc = (kind: string, key: string) => stringify({ apiVersion: "config.openshift.io/v1", kind, metadata: { name }, spec: { [key]: mirrors } });
  return [
    { path: "kubernetes/image-digest-mirror-set.yaml", content: `# ${HEADER}\n${doc("ImageDigestMirrorSet", "imageDigestMirrors")}`, notes: [] },
    { path: "kubernetes/image-tag-mirror-set.yaml", content: `# ${HEADER}\n${doc("ImageTagMirrorSet", "imageTagMirrors")}`, notes: [] },
  ];
}

/** The rewritten references, one `SOURCE=DESTINATION` line per image (oc-mirror's mapping.txt form). */
export function mappingFile(plan: MirrorPlan): MirrorFile {
  return { path: "mapping.txt", content: plan.references.map((r) => `${r.source}=${r.destination}\n`).join(""), notes: [] };
}

/** Every file for the runtimes in `targets`, plus mapping.txt. */
export function mirrorFiles(plan: MirrorPlan, targets: readonly MirrorTarget[], tls: MirrorTls): MirrorFile[] {
  const out: MirrorFile[] = [];
  if (targets.includes("containerd")) out.push(...containerdHosts(plan, tls));
  if (targets.includes("cri-o") || targets.includes("podman")) out.push(registriesConf(plan, tls));
  if (targets.includes("docker")) out.push(dockerDaemon(plan, tls));
  if (targets.includes("kubernetes")) out.push(...kubernetesMirrorSets(plan));
  out.push(mappingFile(plan));
  return out;
}
