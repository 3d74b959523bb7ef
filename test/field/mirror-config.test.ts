/**
 * mirror-config: the generated files parse (TOML with smol-toml, JSON, YAML), podman reads the
 * registries.conf drop-in, skopeo resolves upstream names through it to the images `airlock
 * import` wrote, and mapping.txt names exactly the references import wrote.
 * containerd's and Docker's files are only parsed here; a real containerd and dockerd pull through
 * them in mirror-config-containerd.test.ts and mirror-config-dockerd.test.ts.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { exportBundle, RegistryClient } from "@airlock/core";
import { parse as parseToml } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { type RunningRegistry, startRegistry } from "../harness/registry.js";
import { runCli } from "../support/cli.js";
import { generatedImage } from "../support/generated-image.js";

const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), "airlock-mirror-"));
const NAMES = ["docker.io/library/busybox:1.36", "quay.io/org/app:1.0", "registry.example.com:5000/team/api:2"];
let reg: RunningRegistry;
let bundle: string;
const digests = new Map<string, string>();

beforeAll(async () => {
  reg = await startRegistry({ mode: "plain" });
  bundle = join(tmp, "bundle.tar");
  const images = await Promise.all(NAMES.map(async (name, i) => ({ name, source: await generatedImage(`mirror-${i}`, 4096) })));
  for (const img of images) digests.set(img.name, img.source.manifest.digest);
  await exportBundle(images, bundle, { lock: { naming: "keep-path" } });
}, 60_000);

afterAll(async () => {
  await reg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const read = (dir: string, p: string) => readFileSync(join(dir, p), "utf8");

describe("mirror-config", () => {
  it("keep-path under a prefix: files parse, podman reads them, skopeo pulls through them, mapping.txt is what import wrote", async () => {
    const target = `${reg.host}/mirror`;
    const imp = await runCli(["import", bundle, "--to", target, "--dest-tls-verify=false", "-q"]);
    expect(imp.code).toBe(0);
    const out = join(tmp, "keep");
    const r = await runCli(["mirror-config", "--registry", target, "--for", "all", "--from", bundle, "--plain-http", "-o", out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/registry-mirrors applies only to docker\.io/);

    // containerd: one hosts.toml per upstream, the mirror as host with the namespace as API path.
    const hub = parseToml(read(out, "containerd/certs.d/docker.io/hosts.toml")) as Record<string, unknown>;
    expect(hub.server).toBe("https://registry-1.docker.io");
    expect(hub.host).toEqual({ [`http://${reg.host}/v2/mirror/docker.io`]: { capabilities: ["pull", "resolve"], override_path: true } });
    const ported = parseToml(read(out, "containerd/certs.d/registry.example.com:5000/hosts.toml")) as { server: string; host: Record<string, unknown> };
    expect(ported.server).toBe("https://registry.example.com:5000");
    expect(Object.keys(ported.host)).toEqual([`http://${reg.host}/v2/mirror/registry.example.com_5000`]);

    // registries.conf: TOML, podman's own parser accepts it.
    const conf = join(out, "registries.conf.d/50-airlock-mirror.conf");
    const rc = parseToml(readFileSync(conf, "utf8")) as { registry: { prefix: string; location: string; mirror: { location: string; insecure: boolean }[] }[] };
    expect(rc.registry.map((x) => [x.prefix, x.mirror[0]?.location, x.mirror[0]?.insecure])).toEqual([
      ["docker.io", `${target}/docker.io`, true],
      ["quay.io", `${target}/quay.io`, true],
      ["registry.example.com:5000", `${target}/registry.example.com_5000`, true],
    ]);
    const { stdout } = await run("podman", ["info", "--format", "{{json .Registries}}"], { env: { ...process.env, CONTAINERS_REGISTRIES_CONF: conf } });
    const regs = JSON.parse(stdout) as Record<string, { Mirrors: { Location: string; Insecure: boolean }[] }>;
    expect(regs["quay.io"]?.Mirrors).toEqual([expect.objectContaining({ Location: `${target}/quay.io`, Insecure: true })]);

    // skopeo (containers/image, the same code as CRI-O and podman) resolves upstream names through the mirrors.
    for (const name of NAMES) {
      const { stdout: d } = await run("skopeo", ["--registries-conf", conf, "inspect", "--raw", "--tls-verify=false", `docker://${name}`], { encoding: "buffer" });
      expect(`sha256:${createHash("sha256").update(d).digest("hex")}`).toBe(digests.get(name));
    }

    // Docker: valid JSON; a prefix cannot be a registry-mirror, so only insecure-registries.
    expect(JSON.parse(read(out, "docker/daemon.json"))).toEqual({ "insecure-registries": [reg.host] });

    // Kubernetes: the mirror sets, one source per upstream registry.
    const idms = parseYaml(read(out, "kubernetes/image-digest-mirror-set.yaml"));
    expect(idms).toMatchObject({ apiVersion: "config.openshift.io/v1", kind: "ImageDigestMirrorSet" });
    expect(idms.spec.imageDigestMirrors).toContainEqual({ source: "quay.io", mirrors: [`${target}/quay.io`] });
    expect(parseYaml(read(out, "kubernetes/image-tag-mirror-set.yaml")).spec.imageTagMirrors).toHaveLength(3);

    // mapping.txt: every destination is where import put the image.
    const lines = read(out, "mapping.txt").trim().split("\n");
    expect(lines.map((l) => l.split("=")[0])).toEqual(NAMES);
    const c = new RegistryClient(reg.host, { tlsVerify: false });
    for (const l of lines) {
      const [source, dest] = l.split("=") as [string, string];
      const m = /^[^/]+\/(.+):([^:]+)$/.exec(dest) as RegExpExecArray;
      expect((await c.repository(m[1] as string).headManifest(m[2] as string))?.digest).toBe(digests.get(source));
    }
    await c.close();
  });

  it("strip-registry at the root: Docker gets registry-mirrors, containerd a bare host; TLS options", async () => {
    const r = await runCli(["mirror-config", "--registry", "mirror.local", "--for", "docker,containerd", "--from", bundle, "--naming", "strip-registry", "--skip-verify", "--ca-file", "/etc/ca.pem"]);
    expect(r.code).toBe(0);
    const files = Object.fromEntries(
      r.stdout
        .split(/^# ---- /m)
        .filter(Boolean)
        .map((chunk) => [chunk.slice(0, chunk.indexOf("\n")), chunk.slice(chunk.indexOf("\n") + 1)]),
    );
    expect(JSON.parse(files["docker/daemon.json"])).toEqual({ "registry-mirrors": ["https://mirror.local"], "insecure-registries": ["mirror.local"] });
    expect(parseToml(files["containerd/certs.d/quay.io/hosts.toml"])).toEqual({ server: "https://quay.io", host: { "https://mirror.local": { capabilities: ["pull", "resolve"], skip_verify: true, ca: "/etc/ca.pem" } } });
    expect(files["mapping.txt"]).toContain("quay.io/org/app:1.0=mirror.local/org/app:1.0\n");
    expect(files["registries.conf.d/50-airlock-mirror.conf"]).toBeUndefined();
  });

  it("refuses an unknown runtime and a run with nothing to mirror", async () => {
    expect((await runCli(["mirror-config", "--registry", "m.local", "--for", "rkt", "--upstream", "quay.io"])).stderr).toMatch(/--for rkt: expected one of containerd/);
    expect((await runCli(["mirror-config", "--registry", "m.local", "--for", "all"])).stderr).toMatch(/nothing to mirror/);
  });
});
