import { chainId, SnapshotNotFoundError, type LayerRef, type StoredImage } from '@tsbuild/snapshotter';
import type { BuildStepSummary, FileDigest, KeyComponents, RecordedLayer } from '../cache/cache-db.js';
import type { Key } from '../cache/keys.js';
import { BuildError } from '../errors.js';
import type { ProgressHandler } from '../progress.js';
import type { BuildStore } from '../store.js';
import { definitionKey, isCopyFrom, type CacheArtifactRecord } from './cache-format.js';
import { exportCache, selectRecords, type CacheExportResult, type CacheExportSpec } from './cache-export.js';
import { ImportedCache, type CacheImportSpec } from './cache-import.js';
import { pullImage, type RegistryAccess } from './registry.js';

/** The registry side of a build: base image pulls, `--cache-from` and `--cache-to`. */
export interface RemoteBuildOptions {
  /** re-resolve every image named by FROM / `COPY --from` / `--mount from=` from its registry (`--pull`) */
  pull?: boolean;
  /** insecure registries and docker config directory */
  registry?: RegistryAccess;
  /** caches to import before the build */
  cacheFrom?: readonly CacheImportSpec[];
  /** where to export the build's cache after it succeeds */
  cacheTo?: readonly CacheExportSpec[];
}

interface PendingHit {
  key: string;
  stepRef: string;
  components: KeyComponents;
  files: readonly FileDigest[];
  record: CacheArtifactRecord;
}

/**
 * One build's registry work, called by the Builder at a few points: resolving an image
 * name (local first, else pull), looking up a key that missed locally in the imported
 * caches, fetching imported layers only when needed, and, at the end, keeping the
 * imported hits whose layers are now local and exporting the cache.
 */
export class RemoteSession {
  readonly #store: BuildStore;
  readonly #opts: RemoteBuildOptions;
  readonly #emit: ProgressHandler;
  readonly #signal: AbortSignal | undefined;
  readonly #imported: ImportedCache;
  readonly #pending = new Map<string, PendingHit>();
  readonly #pulls = new Map<string, Promise<StoredImage>>();
  #seq = 0;
  /** the export results, in `cacheTo` order (after {@link finish}) */
  readonly exports: CacheExportResult[] = [];

  private constructor(store: BuildStore, opts: RemoteBuildOptions, emit: ProgressHandler, signal: AbortSignal | undefined, imported: ImportedCache) {
    this.#store = store;
    this.#opts = opts;
    this.#emit = emit;
    this.#signal = signal;
    this.#imported = imported;
  }

  /** Imports the `cacheFrom` caches (manifests and configs only), each under its own vertex. */
  static async open(store: BuildStore, opts: RemoteBuildOptions, emit: ProgressHandler, signal?: AbortSignal): Promise<RemoteSession> {
    let imported = ImportedCache.empty();
    const specs = opts.cacheFrom ?? [];
    if (specs.length > 0) {
      const vertex = 'remote-import';
      const name = `importing cache manifest from ${specs.map((s) => (s.type === 'registry' ? s.ref : s.src)).join(', ')}`;
      emit({ type: 'vertex', vertex, name, started: Date.now() });
      try {
        imported = await ImportedCache.load(store.content, specs, { ...(opts.registry ? { access: opts.registry } : {}), ...(signal ? { signal } : {}) });
      } catch (err) {
        emit({ type: 'vertex', vertex, name, completed: Date.now(), error: (err as Error).message });
        throw err;
      }
      emit({ type: 'vertex', vertex, name, completed: Date.now() });
    }
    return new RemoteSession(store, opts, emit, signal, imported);
  }

  /** The imported records (empty without `cacheFrom`). */
  get imported(): ImportedCache {
    return this.#imported;
  }

  #vertex(name: string): string {
    const vertex = `remote-${++this.#seq}`;
    this.#emit({ type: 'vertex', vertex, name, started: Date.now() });
    return vertex;
  }

  #done(vertex: string, name: string, error?: string): void {
    this.#emit({ type: 'vertex', vertex, name, completed: Date.now(), ...(error !== undefined ? { error } : {}) });
  }

  /**
   * The image a name refers to: from the local store, else pulled from its registry;
   * with `pull`, always resolved again at the registry. Transfers show as `status`
   * events on `vertex` (or on a vertex of its own). One pull per name per build.
   */
  resolveImage(name: string, vertex?: string): Promise<StoredImage> {
    let p = this.#pulls.get(name);
    if (p === undefined) {
      p = this.#resolve(name, vertex);
      this.#pulls.set(name, p);
    }
    return p;
  }

  async #resolve(name: string, vertex: string | undefined): Promise<StoredImage> {
    const force = this.#opts.pull === true;
    if (!force) {
      const local = await this.#store.images.resolve(name);
      if (local !== undefined) return local;
    }
    const own = vertex === undefined ? this.#vertex(`pulling ${name}`) : undefined;
    try {
      const image = await pullImage(this.#store, name, {
        force,
        emit: this.#emit,
        vertex: vertex ?? own!,
        ...(this.#opts.registry ? { access: this.#opts.registry } : {}),
        ...(this.#signal ? { signal: this.#signal } : {}),
      });
      if (own !== undefined) this.#done(own, `pulling ${name}`);
      return image;
    } catch (err) {
      const why = (err as Error).message;
      if (own !== undefined) this.#done(own, `pulling ${name}`, why);
      const code = (err as { code?: unknown }).code === 'NOT_FOUND' ? 'NOT_FOUND' : 'FAILED_PRECONDITION';
      throw new BuildError(
        force ? `${name}: pulling it failed (--pull): ${why}` : `${name}: not found in the local store, and pulling it failed: ${why}`,
        code,
        { cause: err },
      );
    }
  }

  /**
   * A key that missed locally, looked up in the imported caches. On a hit the step is
   * CACHED with the imported layer (fetched later, only if needed) and is remembered so
   * {@link finish} can keep it in the local index.
   */
  lookup(key: string, stepRef: string, components: KeyComponents, files: readonly FileDigest[]): { layer: LayerRef | null; created?: number } | undefined {
    const hit = this.#imported.get(key);
    if (hit === undefined) return undefined;
    this.#pending.set(key, { key, stepRef, components, files, record: hit.record });
    return { layer: hit.record.layer ?? null, ...(hit.record.created !== undefined ? { created: hit.record.created } : {}) };
  }

  /**
   * A `COPY --from` step matched by its definition (parent key, instruction, source
   * stage key) in the imported caches: its full key components, so the step can be
   * looked up without reading the source stage's files. Undefined when none matches.
   */
  lookupDefinition(c: { parent: string; op: string; inputs: Record<string, string> }): KeyComponents | undefined {
    return this.#imported.byDefinition(definitionKey(c))?.components;
  }

  /**
   * Makes sure the blobs a chain of layers needs are in the store, fetching imported
   * ones. With `all` every layer's blob (an image being written); otherwise only those
   * above the deepest snapshot that already exists (what unpacking will read).
   */
  async ensureLayers(layers: readonly LayerRef[], opts: { all?: boolean } = {}): Promise<void> {
    if (this.#imported.size === 0 || layers.length === 0) return;
    let from = 0;
    if (opts.all !== true) {
      for (let i = layers.length - 1; i >= 0; i--) {
        const id = chainId(layers.slice(0, i + 1).map((l) => l.diffId))!;
        try {
          const info = await this.#store.snapshots.stat(id);
          if (info.kind === 'committed') {
            from = i + 1;
            break;
          }
        } catch (err) {
          if (!(err instanceof SnapshotNotFoundError)) throw err;
        }
      }
    }
    const need: LayerRef[] = [];
    for (const l of layers.slice(from)) if (!(await this.#store.content.has(l.digest)) && this.#imported.canFetch(l.digest)) need.push(l);
    if (need.length === 0) return;
    const name = `fetching ${need.length} cached layer${need.length === 1 ? '' : 's'}`;
    const vertex = this.#vertex(name);
    try {
      await Promise.all(need.map((l) => this.#imported.ensureBlob(this.#store.content, l as RecordedLayer, { emit: this.#emit, vertex })));
    } catch (err) {
      this.#done(vertex, name, (err as Error).message);
      throw err;
    }
    this.#done(vertex, name);
  }

  /**
   * After a successful build: saves the imported hits whose layers are now in the store
   * (or that have none) to the local index, then exports the cache to each `cacheTo`.
   * `steps` are the build's steps; `finalKey` the key of the built image's last step.
   */
  async finish(steps: readonly BuildStepSummary[], finalKey: string): Promise<void> {
    const now = Date.now();
    for (const p of this.#pending.values()) {
      const layer = p.record.layer;
      if (layer !== undefined && !(await this.#store.content.has(layer.digest))) continue;
      this.#store.db.save({ key: p.key as Key, stepRef: p.stepRef, description: p.record.description, components: p.components, ...(layer ? { layer } : {}), created: p.record.created ?? now, lastUsed: now, usageCount: 1 }, p.files);
    }
    const targets = this.#opts.cacheTo ?? [];
    if (targets.length === 0) return;
    const all = new Map<string, CacheArtifactRecord>();
    for (const s of steps) {
      if (s.key === undefined || all.has(s.key)) continue;
      const rec = this.#store.db.get(s.key);
      if (rec !== undefined) {
        all.set(s.key, {
          key: rec.key,
          parent: rec.components.parent,
          description: rec.description,
          ...(rec.layer ? { layer: rec.layer } : {}),
          created: rec.created,
          ...(isCopyFrom(rec.components) ? { components: rec.components } : {}),
        });
        continue;
      }
      const imp = this.#imported.get(s.key);
      if (imp !== undefined) all.set(s.key, imp.record);
    }
    for (const spec of targets) {
      const where = spec.type === 'registry' ? spec.ref : spec.dest;
      const name = `exporting cache to ${where} (mode=${spec.mode ?? 'min'})`;
      const vertex = this.#vertex(name);
      try {
        const records = selectRecords(all, spec.mode ?? 'min', finalKey);
        const res = await exportCache(this.#store.content, records, spec, {
          imported: this.#imported,
          emit: this.#emit,
          vertex,
          ...(this.#opts.registry ? { access: this.#opts.registry } : {}),
          ...(this.#signal ? { signal: this.#signal } : {}),
        });
        this.exports.push(res);
        if (res.dropped.length > 0) this.#emit({ type: 'warning', message: `cache export to ${where}: ${res.dropped.length} record(s) left out: their layers are no longer in the store` });
        this.#emit({ type: 'status', vertex, id: `exported ${res.records} records, ${res.layers} layers as ${res.descriptor.digest}`, current: res.descriptor.size, total: res.descriptor.size });
      } catch (err) {
        this.#done(vertex, name, (err as Error).message);
        throw err;
      }
      this.#done(vertex, name);
    }
  }
}
