/**
 * `airlock serve`: an OCI registry for the air-gapped side, over an image store directory
 * (read-write) or straight out of a bundle (read-only, nothing extracted).
 */
import { BUNDLE_NAMINGS, type BundleNaming, serve } from "@airlock/registry";
import { type Command, Option } from "commander";
import type { CliContext } from "../context.js";
import { UsageError } from "../errors.js";

/** Images of a served bundle listed at start-up; `_catalog` has the rest. */
const MAX_LISTED = 20;

/** Registers the `serve` verb. */
export function registerServe(program: Command, cli: CliContext): void {
  program
    .command("serve")
    .description("Serve an image store or a bundle as an OCI registry the cluster can pull from")
    .argument("[bundle...]", "a bundle to serve read-only (a split bundle: all its volumes, e.g. bundle.tar.*)")
    .option("--root <dir>", "serve this OCI image layout directory read-write (created if missing)")
    .option("--listen <addr>", "address to listen on: HOST:PORT, :PORT or PORT", "127.0.0.1:5000")
    .addOption(new Option("--naming <mode>", `how a bundle's image names become repository names: ${BUNDLE_NAMINGS.join(", ")} (default: as the bundle's lock records, else keep-path)`).choices([...BUNDLE_NAMINGS]))
    .option("--read-only", "refuse pushes and deletes")
    .option("--enable-delete", "allow DELETE of manifests and tags")
    .option("--htpasswd <file>", "require basic auth with the users of this htpasswd file (bcrypt: htpasswd -B)")
    .option("--tls-cert <file>", "serve HTTPS with this PEM certificate (with --tls-key)")
    .option("--tls-key <file>", "the PEM private key of --tls-cert")
    .option("-q, --quiet", "no access log")
    .addHelpText(
      "after",
      `
Examples:
  airlock serve --root /srv/images --listen :5000            # a registry clusters pull from and push to
  airlock serve bundle.tar --listen 0.0.0.0:5000             # serve a bundle as it is, nothing extracted
  airlock serve bundle.tar.* --tls-cert c.pem --tls-key k.pem --htpasswd users

Images in a store are index.json entries named REPOSITORY:TAG (as written by
'airlock copy ... oci:/srv/images:REPOSITORY:TAG').

A bundle's images are served under the names 'airlock import BUNDLE --to HOST' would give them,
with the naming its lock records (default keep-path) or --naming:
  keep-path            registry.example.com:5000/team/app:1 -> registry.example.com_5000/team/app:1
                       docker.io/library/busybox:1.36      -> docker.io/library/busybox:1.36
  strip-registry       registry.example.com:5000/team/app:1 -> team/app:1
A name given with as: in images.yaml is served as it is; an image pinned by digest only is pulled
by its digest (REPOSITORY@sha256:...). The names served are printed at start-up.

Stops cleanly on SIGINT/SIGTERM. The access log goes to stderr, one line per request.`,
    )
    .action(async (bundle: string[], opts: Record<string, unknown>) => {
      if (opts.root && bundle.length) throw new UsageError("give either --root DIR or a bundle, not both");
      if (!opts.root && !bundle.length) throw new UsageError("nothing to serve: give --root DIR (an image store) or a bundle file");
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new UsageError("--tls-cert and --tls-key go together");
      if (opts.root && opts.naming) throw new UsageError("--naming applies to a bundle's image names, not to --root DIR");
      const server = await serve({
        ...(opts.root ? { root: opts.root as string } : { bundle }),
        listen: opts.listen as string,
        ...(opts.naming ? { naming: opts.naming as BundleNaming } : {}),
        readOnly: opts.readOnly === true,
        deleteEnabled: opts.enableDelete === true,
        ...(opts.htpasswd ? { htpasswd: opts.htpasswd as string } : {}),
        ...(opts.tlsCert ? { tlsCert: opts.tlsCert as string, tlsKey: opts.tlsKey as string } : {}),
        ...(opts.quiet ? {} : { log: (line: string) => cli.stderr.write(`${line}\n`) }),
        signal: cli.signal,
      });
      if (server.bundle) {
        const { images, naming } = server.bundle;
        const shown = images.slice(0, MAX_LISTED).map((i) => `  ${server.host}/${i.served}${i.served === i.name ? "" : `  (${i.name})`}\n`);
        const more = images.length > MAX_LISTED ? `  … and ${images.length - MAX_LISTED} more (GET /v2/_catalog lists the repositories)\n` : "";
        cli.stderr.write(`airlock serve: ${images.length} image(s), names mapped with ${naming}:\n${shown.join("")}${more}`);
      }
      cli.stderr.write(`airlock serve: listening on ${server.url}${server.readOnly ? " (read-only)" : ""}; stop with Ctrl-C\n`);
      await server.closed;
      cli.stderr.write("airlock serve: stopped\n");
    });
}
