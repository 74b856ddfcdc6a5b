import { RegistryClient, type Digest, type StoredImage, type TransferProgress } from '@tsbuild/snapshotter';
import type { ProgressHandler } from '../progress.js';
import type { BuildStore } from '../store.js';

/** How to reach registries: which ones speak plain HTTP, where docker's `config.json` is. */
export interface RegistryAccess {
  /**
   * Registries (`host[:port]`) spoken to over plain HTTP. `localhost`, 127.0.0.0/8 and
   * `::1` always are. Default: `$TSBUILD_INSECURE_REGISTRIES` (comma-separated).
   */
  insecureRegistries?: readonly string[];
  /** Directory holding docker's `config.json` (credentials); default `$DOCKER_CONFIG`, else `~/.docker`. */
  dockerConfigDir?: string;
}

/** The registries listed in `TSBUILD_INSECURE_REGISTRIES` (`host:port,host2`), trimmed, empty entries dropped. */
export function insecureRegistriesFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.TSBUILD_INSECURE_REGISTRIES ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** A registry client for `access` (the env's insecure registries added), reporting transfers to `onProgress`. */
export function registryClient(access: RegistryAccess = {}, onProgress?: (e: TransferProgress) => void, signal?: AbortSignal): RegistryClient {
  const insecure = [...new Set([...(access.insecureRegistries ?? []), ...insecureRegistriesFromEnv()])];
  return new RegistryClient({
    insecureRegistries: insecure,
    ...(access.dockerConfigDir !== undefined ? { dockerConfigDir: access.dockerConfigDir } : {}),
    ...(onProgress !== undefined ? { onProgress } : {}),
    ...(signal !== undefined ? { signal } : {}),
  });
}

const STATUS_INTERVAL_MS = 1000;

/**
 * Turns blob transfers into `status` events on one vertex: one when a blob starts, at
 * most one a second while it moves, and a last one with `started`/`completed` so a
 * renderer can show its throughput. Blobs already present emit nothing.
 */
export class TransferReporter {
  readonly #emit: ProgressHandler;
  readonly #vertex: string;
  readonly #verb: string;
  readonly #blobs = new Map<Digest, { started: number; last: number; done: boolean }>();
  /** bytes moved (not skipped) so far */
  bytes = 0;

  constructor(emit: ProgressHandler, vertex: string, verb: string) {
    this.#emit = emit;
    this.#vertex = vertex;
    this.#verb = verb;
  }

  /** Digests that were actually transferred (not found present). */
  get transferred(): Digest[] {
    return [...this.#blobs.keys()];
  }

  readonly handle = (e: TransferProgress): void => {
    if (e.action === 'exists' || e.action === 'mounted') {
      if (e.action === 'mounted') this.#emit({ type: 'status', vertex: this.#vertex, id: `mounted ${e.id.slice(7, 19)}`, current: e.total, total: e.total });
      return;
    }
    const now = Date.now();
    let b = this.#blobs.get(e.id);
    if (b === undefined) {
      b = { started: now, last: 0, done: false };
      this.#blobs.set(e.id, b);
    }
    if (b.done) return;
    const id = `${this.#verb} ${e.id.slice(7, 19)}`;
    if (e.current >= e.total) {
      b.done = true;
      this.bytes += e.total;
      this.#emit({ type: 'status', vertex: this.#vertex, id, current: e.total, total: e.total, started: b.started, completed: now });
    } else if (now - b.last >= STATUS_INTERVAL_MS) {
      b.last = now;
      this.#emit({ type: 'status', vertex: this.#vertex, id, current: e.current, total: e.total, started: b.started });
    }
  };
}

/**
 * Pulls `name` into the store (`RegistryClient.pull`: verified blobs, tagged under its
 * canonical name). Without `force` an image already in the store under that name is
 * returned with no network access. Transfers are reported as `status` events on `vertex`.
 */
export async function pullImage(
  store: BuildStore,
  name: string,
  opts: { access?: RegistryAccess; force?: boolean; emit?: ProgressHandler; vertex?: string; signal?: AbortSignal } = {},
): Promise<StoredImage> {
  const reporter = opts.emit !== undefined && opts.vertex !== undefined ? new TransferReporter(opts.emit, opts.vertex, 'pulling') : undefined;
  const client = registryClient(opts.access, reporter?.handle, opts.signal);
  return client.pull(store.content, store.images, name, { force: opts.force === true });
}

/**
 * Pushes `image` to `ref` (the registry and repository its name says; a tag or the
 * image's digest). Blobs the repository has are skipped, others mounted or uploaded.
 * Returns the pushed manifest digest and size.
 */
export async function pushImage(
  store: BuildStore,
  image: StoredImage,
  ref: string,
  opts: { access?: RegistryAccess; emit?: ProgressHandler; vertex?: string } = {},
): Promise<{ digest: Digest; size: number }> {
  const reporter = opts.emit !== undefined && opts.vertex !== undefined ? new TransferReporter(opts.emit, opts.vertex, 'pushing') : undefined;
  const client = registryClient(opts.access, reporter?.handle);
  return client.push(store.content, image, ref);
}
