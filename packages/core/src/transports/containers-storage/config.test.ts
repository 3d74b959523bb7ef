import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectDriver, resolveStoreOptions } from "./config.js";

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), "airlock-cs-conf-"));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe("containers-storage: storage.conf", () => {
  it("reads CONTAINERS_STORAGE_CONF's [storage] table; STORAGE_DRIVER and the reference's specifier override it", async () => {
    const conf = join(dir, "storage.conf");
    await fs.writeFile(conf, '[storage]\ndriver = "overlay"\ngraphroot = "$HOME/g"\nrunroot = "/run/r"\n[storage.options.overlay]\nmountopt = "nodev"\n');
    const e = { env: { CONTAINERS_STORAGE_CONF: conf }, uid: 0, home: "/root" };
    expect(await resolveStoreOptions(undefined, e)).toMatchObject({ graphRoot: "/root/g", runRoot: "/run/r", driver: "overlay", configFile: conf });
    expect((await resolveStoreOptions(undefined, { ...e, env: { ...e.env, STORAGE_DRIVER: "vfs" } })).driver).toBe("vfs");
    expect(await resolveStoreOptions({ driver: "vfs", graphRoot: "/x" }, e)).toMatchObject({ graphRoot: "/x", runRoot: "/run/r", driver: "vfs" });
    await expect(resolveStoreOptions(undefined, { ...e, env: { CONTAINERS_STORAGE_CONF: join(dir, "absent.conf") } })).rejects.toThrow(/does not exist/);
  });

  it("gives a rootless user ~/.config/containers/storage.conf, else the XDG defaults", async () => {
    const home = join(dir, "home");
    const e = { env: { XDG_RUNTIME_DIR: "/run/user/1000" }, uid: 1000, home };
    const defaults = await resolveStoreOptions(undefined, e);
    if (defaults.configFile === undefined) {
      expect(defaults).toMatchObject({ graphRoot: join(home, ".local/share/containers/storage"), runRoot: "/run/user/1000/containers", rootless: true });
    }
    await fs.mkdir(join(home, ".config", "containers"), { recursive: true });
    await fs.writeFile(join(home, ".config", "containers", "storage.conf"), '[storage]\ndriver = "vfs"\ngraphroot = "/home/u/store"\n');
    expect(await resolveStoreOptions(undefined, e)).toMatchObject({ graphRoot: "/home/u/store", runRoot: "/run/user/1000/containers", driver: "vfs" });
  });

  it("detects the driver whose layers.json is in the graph root, and refuses two", async () => {
    const g = join(dir, "graph");
    expect(await detectDriver(g)).toBeUndefined();
    await fs.mkdir(join(g, "vfs-layers"), { recursive: true });
    await fs.writeFile(join(g, "vfs-layers", "layers.json"), "[]");
    expect(await detectDriver(g)).toBe("vfs");
    await fs.mkdir(join(g, "overlay-layers"), { recursive: true });
    await fs.writeFile(join(g, "overlay-layers", "layers.json"), "[]");
    await expect(detectDriver(g)).rejects.toThrow(/several valid graph drivers/);
  });
});
