/**
 * Registry clients shared within one process: every image source, destination and check that talks
 * to the same registry with the same settings at the same time uses one {@link RegistryClient} —
 * one `/v2/` ping, one token per scope, one pool of kept-alive connections — instead of one of
 * each per image (containers/image keeps a client per image; a sync or bundle of many images then
 * pings and authenticates many times). A client lives while someone holds it: the last
 * {@link SharedRegistryClient.release} closes it.
 */
import type { DockerContext } from "../transports/types.js";
import { RegistryClient, type RegistryClientOptions } from "./client.js";

/** A lease on a registry client: use {@link client}, then {@link release} it exactly once. */
export interface SharedRegistryClient {
  /** The client; shared with other holders of a lease with the same registry and settings. */
  readonly client: RegistryClient;
  /** Gives the lease back; the client is closed when it was the last one. Idempotent. */
  release(): Promise<void>;
}

interface Entry {
  client: RegistryClient;
  holders: number;
}

const shared = new Map<string, Entry>();

/**
 * The settings that decide how a client talks to a registry — everything in a DockerContext but the
 * signature locations, which the client never reads. Kept in memory only, never printed.
 */
function settingsKey(domain: string, ctx: DockerContext): string {
  const { lookaside: _l, lookasideStaging: _s, ...rest } = ctx;
  const sorted = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)));
  return `${domain}\n${JSON.stringify(sorted)}`;
}

/**
 * Acquires the client for `domain` with the settings of `ctx`, shared with every other current
 * holder of the same. With `options` (test hooks: a logger, credentials lookup, upload sizes) the
 * client is private to the caller, as those are the caller's own.
 */
export function acquireRegistryClient(domain: string, ctx: DockerContext = {}, options: RegistryClientOptions = {}): SharedRegistryClient {
  if (Object.values(options).some((v) => v !== undefined)) {
    const client = new RegistryClient(domain, ctx, options);
    let released = false;
    return {
      client,
      release: async () => {
        if (released) return;
        released = true;
        await client.close();
      },
    };
  }
  const key = settingsKey(domain, ctx);
  let entry = shared.get(key);
  if (!entry) {
    entry = { client: new RegistryClient(domain, ctx), holders: 0 };
    shared.set(key, entry);
  }
  entry.holders++;
  const held = entry;
  let released = false;
  return {
    client: held.client,
    release: async () => {
      if (released) return;
      released = true;
      held.holders--;
      if (held.holders > 0) return;
      if (shared.get(key) === held) shared.delete(key);
      await held.client.close();
    },
  };
}
