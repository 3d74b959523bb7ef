/**
 * `airlock serve` as a function: opens the store (an OCI layout directory, or a bundle served
 * read-only), starts the registry server and returns it running. The CLI maps its flags onto
 * {@link ServeOptions} and calls {@link serve}; shutting down is `close()` or aborting `signal`.
 */
import { AirlockError } from "@airlock/core";
import { createRegistryServer, type ListeningAddress } from "./server.js";
import type { BundleNaming } from "./names.js";
import { openBundleStore, type ServedImage } from "./store/bundle.js";
import { LayoutRegistryStore } from "./store/layout.js";
import type { RegistryStore } from "./store/types.js";

/** Options of {@link serve}: plain data, as the CLI's flags. */
export interface ServeOptions {
  /** Serve this OCI image layout directory (created when missing, unless read-only). */
  root?: string;
  /** Serve this bundle, read-only: the paths of its volumes (one for an unsplit bundle). */
  bundle?: string[];
  /** Where to listen: `HOST:PORT`, `:PORT` or `PORT`. */
  listen: string;
  /**
   * How a bundle's image names become repository names (default: as the bundle's lock records,
   * else keep-path): as `airlock import --to HOST` would name them.
   */
  naming?: BundleNaming;
  /** Refuse pushes and deletes (always so for a bundle). */
  readOnly?: boolean;
  /** Allow DELETE of manifests and tags. */
  deleteEnabled?: boolean;
  /** An htpasswd file (bcrypt entries): require basic authentication. */
  htpasswd?: string;
  /** A PEM certificate file: serve HTTPS (with `tlsKey`). */
  tlsCert?: string;
  /** The PEM private key file of `tlsCert`. */
  tlsKey?: string;
  /** Receives an access-log line per request. */
  log?: (line: string) => void;
  /** Aborting it shuts the server down (as `close()`). */
  signal?: AbortSignal;
}

/** A running `airlock serve`. */
export interface RunningServer extends ListeningAddress {
  /** Whether the server refuses writes. */
  readOnly: boolean;
  /** When serving a bundle: its images and the names they are served under, and the naming used. */
  bundle?: { images: readonly ServedImage[]; naming: BundleNaming };
  /** Shuts down: stops accepting, lets requests in flight finish, removes upload files, closes the store. */
  close(): Promise<void>;
  /** Settles when the server has shut down (by `close()` or the signal). */
  closed: Promise<void>;
}

/**
 * Starts a registry over `options.root` or `options.bundle` (exactly one) on `options.listen`.
 * Throws ERR_INVALID_ARGUMENT for contradictory options, ERR_INVALID_LAYOUT for a directory that is
 * not a layout, ERR_IO when the address cannot be listened on.
 */
export async function serve(options: ServeOptions): Promise<RunningServer> {
  if ((options.root === undefined) === (options.bundle === undefined || options.bundle.length === 0)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", "serve needs exactly one of a store directory (--root DIR) or a bundle (BUNDLE…) to serve");
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", "TLS needs both a certificate and its key (--tls-cert and --tls-key)");
  }
  options.signal?.throwIfAborted();
  if (options.naming !== undefined && options.root !== undefined) {
    throw new AirlockError("ERR_INVALID_ARGUMENT", "a naming mode applies to a bundle's image names, not to a store directory: drop it, or serve a bundle");
  }
  let store: RegistryStore;
  let readOnly = options.readOnly ?? false;
  let bundle: RunningServer["bundle"];
  if (options.root !== undefined) {
    store = await LayoutRegistryStore.open(options.root, { create: !readOnly });
  } else {
    const b = await openBundleStore(options.bundle ?? [], {
      ...(options.log ? { warn: (m: string) => options.log?.(`warning: ${m}`) } : {}),
      ...(options.naming !== undefined ? { naming: options.naming } : {}),
    });
    bundle = { images: b.images, naming: b.naming };
    store = b;
    readOnly = true;
  }
  const server = createRegistryServer({
    store,
    readOnly,
    deleteEnabled: options.deleteEnabled ?? false,
    ...(options.htpasswd !== undefined ? { auth: { htpasswdFile: options.htpasswd } } : {}),
    ...(options.tlsCert !== undefined && options.tlsKey !== undefined ? { tls: { cert: options.tlsCert, key: options.tlsKey } } : {}),
    ...(options.log ? { log: options.log } : {}),
  });
  let address: ListeningAddress;
  try {
    address = await server.listen(options.listen);
  } catch (err) {
    await store.close();
    throw err;
  }
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => {
    resolveClosed = r;
  });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      options.signal?.removeEventListener("abort", close);
      try {
        await server.close();
      } finally {
        await store.close();
        resolveClosed();
      }
    })();
    return closing;
  };
  options.signal?.addEventListener("abort", close, { once: true });
  return { ...address, readOnly, ...(bundle ? { bundle } : {}), close, closed };
}
