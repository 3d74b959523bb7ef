/**
 * `airlock mirror-config`: what the clusters need to pull the imported images from the offline
 * registry — containerd hosts.toml, a registries.conf drop-in, a daemon.json fragment, Kubernetes
 * mirror sets — and the list of rewritten image references.
 */
import { promises as fs } from "node:fs";
import { dirname, join } from "node:path";
import { AirlockError, BundleReader } from "@airlock/core";
import { type Command, Option } from "commander";
import { NAMING_MODES, type NamingMode, readLock } from "../config/index.js";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";
import { MIRROR_TARGETS, type MirrorTarget, type MirrorTls, mirrorFiles, planMirrors } from "../mirror/config.js";

/** The image names and naming mode recorded in a bundle or a lock. */
async function namesFrom(path: string, signal: AbortSignal): Promise<{ names: string[]; naming: NamingMode | undefined }> {
  if (/\.ya?ml$/i.test(path)) {
    const lock = await readLock(path);
    return { names: lock.images.map((i) => i.name), naming: lock.naming };
  }
  const reader = await BundleReader.open(path, { signal });
  try {
    const meta = await reader.metadata();
    if (meta) return { names: meta.images.map((i) => i.name), naming: (meta.lock as { naming?: NamingMode } | undefined)?.naming };
    const images = await reader.images();
    return { names: images.flatMap((i) => (i.name ? [i.name] : [])), naming: undefined };
  } finally {
    await reader.close();
  }
}

/** Registers `mirror-config`. */
export function registerMirrorConfig(program: Command, cli: CliContext): void {
  const cmd = program
    .command("mirror-config")
    .description("Write the mirror configuration that makes runtimes pull the imported images from the offline registry")
    .requiredOption("--registry <REGISTRY[/PREFIX]>", "the offline registry, as given to import --to")
    .requiredOption("--for <runtime...>", `${MIRROR_TARGETS.join(", ")} or all (repeat or separate with commas)`)
    .option("--from <bundle|lock>", "the bundle or images.lock.yaml whose images were imported (their registries and names)")
    .option("--upstream <registry...>", "upstream registries to mirror in addition to those of --from")
    .addOption(new Option("--naming <mode>", `how import named the images: ${NAMING_MODES.join(", ")} (default: as recorded in --from, else keep-path)`).choices([...NAMING_MODES]))
    .option("--plain-http", "the offline registry speaks plain HTTP")
    .option("--skip-verify", "do not verify the offline registry's TLS certificate")
    .option("--ca-file <path>", "CA certificate of the offline registry (a path on the nodes)")
    .option("-o, --output <dir>", "write the files under this directory (default: print them)");
  cmd.addHelpText(
    "after",
    `
Files (under -o DIR):
  containerd/certs.d/<upstream>/hosts.toml          containerd (config_path = "/etc/containerd/certs.d")
  registries.conf.d/50-airlock-mirror.conf          CRI-O and podman (/etc/containers/registries.conf.d/)
  docker/daemon.json                                Docker (registry-mirrors works for docker.io only)
  kubernetes/image-{digest,tag}-mirror-set.yaml     ImageDigestMirrorSet / ImageTagMirrorSet
  mapping.txt                                       SOURCE=OFFLINE-REFERENCE for every image

Example:
  airlock mirror-config --registry registry.airgap.local:5000/mirror --from bundle.tar --for all -o mirror/`,
  );
  cmd.action(async (opts: Record<string, unknown>) => {
    const wanted = (opts.for as string[]).flatMap((v) => v.split(",")).map((v) => v.trim().toLowerCase());
    const targets = wanted.includes("all") ? [...MIRROR_TARGETS] : wanted;
    for (const t of targets) if (!(MIRROR_TARGETS as readonly string[]).includes(t)) throw new UsageError(`--for ${t}: expected one of ${MIRROR_TARGETS.join(", ")} or all`);
    const from = opts.from ? await namesFrom(opts.from as string, cli.signal) : { names: [], naming: undefined };
    const upstreams = (opts.upstream as string[] | undefined) ?? [];
    if (from.names.length === 0 && upstreams.length === 0) throw new UsageError("nothing to mirror: give --from BUNDLE|LOCK (the images imported) or --upstream REGISTRY");
    const naming = (opts.naming as NamingMode | undefined) ?? from.naming ?? "keep-path";
    const plan = planMirrors(opts.registry as string, naming, from.names, upstreams);
    const tls: MirrorTls = {};
    if (opts.plainHttp) tls.plainHttp = true;
    if (opts.skipVerify) tls.skipVerify = true;
    if (opts.caFile) tls.caFile = opts.caFile as string;
    if (tls.plainHttp && (tls.skipVerify || tls.caFile)) throw new UsageError("--plain-http cannot be combined with --skip-verify or --ca-file");
    const files = mirrorFiles(plan, targets as MirrorTarget[], tls);
    const out = opts.output as string | undefined;
    for (const f of files) {
      if (out) {
        const p = join(out, f.path);
        await fs.mkdir(dirname(p), { recursive: true });
        await fs.writeFile(p, f.content);
        cli.stdout.write(`${p}\n`);
      } else {
        cli.stdout.write(`# ---- ${f.path}\n${f.content}`);
      }
      for (const n of f.notes) cli.stderr.write(`note: ${f.path}: ${n}\n`);
    }
    for (const u of plan.unmapped) cli.stderr.write(`note: ${u} names no upstream registry: pull it by its rewritten reference (mapping.txt)\n`);
    if (plan.upstreams.length === 0) throw new AirlockError("ERR_INVALID_ARGUMENT", "no upstream registry to mirror: every image has an as: name; use mapping.txt");
  });
}
