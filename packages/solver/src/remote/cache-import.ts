import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { digestHex, isDigest, openLayerStream, REF_NAME_ANNOTATION, sha256, type ContentStore, type Descriptor, type Digest, type RegistryClient } from '@tsbuild/snapshotter';
import type { RecordedLayer } from '../cache/cache-db.js';
import { RemoteCacheError } from '../errors.js';
import type { ProgressHandler } from '../progress.js';
import { definitionKey, isCopyFrom, MAX_CACHE_CONFIG_SIZE, OCI_MANIFEST_MEDIA_TYPE, parseArtifactConfig, parseArtifactManifest, type CacheArtifactRecord } from './cache-format.js';
import { registryClient, TransferReporter, type RegistryAccess } from './registry.js';

/** Where `--cache-from` reads a cache: a registry reference, or an OCI layout directory. */
export type CacheImportSpec = { type: 'registry'; ref: string } | { type: 'local'; src: string; tag?: string };

/** Reads an artifact's blobs on demand, verified. */
interface BlobSource {
  /** the ref or directory, for messages */
  readonly name: string;
  /** Copies one blob into `store` (verified against `desc`), reporting to `reporter`. */
  fetch(store: ContentStore, desc: Descriptor, reporter: TransferReporter | undefined): Promise<void>;
}

class RegistrySource implements BlobSource {
  readonly name: string;
  readonly #client: RegistryClient;
  readonly #reporters = new Map<Digest, TransferReporter>();

  constructor(ref: string, access: RegistryAccess, signal: AbortSignal | undefined) {
    this.name = ref;
    this.#client = registryClient(access, (e) => this.#reporters.get(e.id)?.handle(e), signal);
  }

  get client(): RegistryClient {
    return this.#client;
  }

  async fetch(store: ContentStore, desc: Descriptor, reporter: TransferReporter | undefined): Promise<void> {
    if (reporter !== undefined) this.#reporters.set(desc.digest, reporter);
    try {
      await this.#client.fetchBlob(store, this.name, desc);
    } finally {
      this.#reporters.delete(desc.digest);
    }
  }
}

class LocalSource implements BlobSource {
  readonly name: string;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    this.name = dir;
  }

  blobPath(d: Digest): string {
    return join(this.#dir, 'blobs', 'sha256', digestHex(d));
  }

  async fetch(store: ContentStore, desc: Descriptor, reporter: TransferReporter | undefined): Promise<void> {
    if (await store.has(desc.digest)) return;
    const w = await store.writer();
    let n = 0;
    try {
      for await (const chunk of createReadStream(this.blobPath(desc.digest), { highWaterMark: 1 << 20 })) {
        n += (chunk as Buffer).byteLength;
        if (n > desc.size) throw new RemoteCacheError(this.name, `expected blob ${desc.digest} of ${desc.size} bytes, found more`);
        await w.write(chunk as Buffer);
        reporter?.handle({ id: desc.digest, action: 'pull', current: n, total: desc.size });
      }
      await w.commit({ digest: desc.digest, size: desc.size });
    } catch (err) {
      await w.abort();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new RemoteCacheError(this.name, `expected blob ${desc.digest} in the directory, found none`, 'NOT_FOUND', { cause: err });
      throw err;
    }
    if (desc.size === 0) reporter?.handle({ id: desc.digest, action: 'pull', current: 0, total: 0 });
  }
}

/** An imported record and where its layer can be fetched from. */
export interface ImportedRecord {
  record: CacheArtifactRecord;
  source: string;
}

/** The artifact a directory's `index.json` names under `tag` (default `latest`; a single entry is taken whatever its name). */
async function localManifest(dir: string, tag: string | undefined): Promise<{ desc: Descriptor; bytes: Buffer }> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new RemoteCacheError(dir, missing ? 'expected an OCI layout with index.json, found none' : 'expected index.json to be JSON', missing ? 'NOT_FOUND' : 'INVALID_ARGUMENT', { cause: err });
  }
  const manifests = (index as { manifests?: unknown }).manifests;
  if (!Array.isArray(manifests)) throw new RemoteCacheError(dir, 'expected index.json to have a "manifests" array');
  const want = tag ?? 'latest';
  const named = manifests.filter((m: { annotations?: Record<string, unknown> }) => m?.annotations?.[REF_NAME_ANNOTATION] === want);
  const pick = (named.length > 0 ? named : manifests.length === 1 && tag === undefined ? manifests : [])[0] as { digest?: unknown; size?: unknown; mediaType?: unknown } | undefined;
  if (pick === undefined) throw new RemoteCacheError(dir, `expected a manifest named ${JSON.stringify(want)} in index.json, found ${manifests.length} other entries`, 'NOT_FOUND');
  if (typeof pick.digest !== 'string' || !isDigest(pick.digest) || typeof pick.size !== 'number' || pick.mediaType !== OCI_MANIFEST_MEDIA_TYPE) {
    throw new RemoteCacheError(dir, `expected an OCI image manifest descriptor in index.json, found ${JSON.stringify(pick)}`);
  }
  if (pick.size > MAX_CACHE_CONFIG_SIZE) throw new RemoteCacheError(dir, `expected a manifest of at most ${MAX_CACHE_CONFIG_SIZE} bytes, found ${pick.size}`);
  const bytes = await readFile(join(dir, 'blobs', 'sha256', digestHex(pick.digest)));
  const actual = sha256(bytes);
  if (actual !== pick.digest || bytes.byteLength !== pick.size) throw new RemoteCacheError(dir, `expected manifest ${pick.digest} (${pick.size} bytes), found ${actual} (${bytes.byteLength} bytes)`);
  return { desc: { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: pick.digest, size: pick.size }, bytes };
}

/** Counts bytes of a stream and hashes them. */
async function digestOfStream(src: NodeJS.ReadableStream): Promise<Digest> {
  const h = createHash('sha256');
  await pipeline(
    src,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        h.update(chunk);
        cb();
      },
    }),
  );
  return `sha256:${h.digest('hex')}`;
}

/**
 * Cache records imported with `--cache-from`: a step whose key is among them is CACHED
 * without running, and its layer blob is fetched only when something needs it
 * ({@link ensureBlob}): the final image, or a parent snapshot for a step that runs.
 */
export class ImportedCache {
  readonly #records = new Map<string, ImportedRecord>();
  readonly #byDefinition = new Map<string, CacheArtifactRecord>();
  readonly #layerSources = new Map<Digest, BlobSource>();
  readonly #sources = new Map<string, BlobSource>();
  readonly #inflight = new Map<Digest, Promise<boolean>>();
  /** digests fetched by this import, in order */
  readonly fetched: Digest[] = [];

  private constructor() {}

  /** An import with no records (no `--cache-from`). */
  static empty(): ImportedCache {
    return new ImportedCache();
  }

  /**
   * Reads each cache's manifest and config (never its layers). The first import that
   * has a key wins. A missing cache is an error: the user asked for it.
   */
  static async load(store: ContentStore, specs: readonly CacheImportSpec[], opts: { access?: RegistryAccess; signal?: AbortSignal } = {}): Promise<ImportedCache> {
    const out = new ImportedCache();
    for (const spec of specs) {
      let source: BlobSource;
      let manifestBody: Record<string, unknown>;
      let name: string;
      if (spec.type === 'registry') {
        const src = new RegistrySource(spec.ref, opts.access ?? {}, opts.signal);
        source = src;
        name = spec.ref;
        const m = await src.client.getManifest(spec.ref).catch((err: unknown) => {
          const code = (err as { code?: unknown }).code === 'NOT_FOUND' ? 'NOT_FOUND' : 'FAILED_PRECONDITION';
          throw new RemoteCacheError(spec.ref, `could not read the cache manifest: ${(err as Error).message}`, code, { cause: err });
        });
        if (m.kind !== 'manifest' || m.mediaType !== OCI_MANIFEST_MEDIA_TYPE) throw new RemoteCacheError(spec.ref, `expected an OCI image manifest, found ${m.mediaType}`);
        manifestBody = m.body;
      } else {
        const dir = resolve(spec.src);
        const local = new LocalSource(dir);
        source = local;
        name = dir;
        const m = await localManifest(dir, spec.tag);
        manifestBody = JSON.parse(m.bytes.toString('utf8')) as Record<string, unknown>;
      }
      const { config, layers } = parseArtifactManifest(name, manifestBody);
      // the config is small: fetch it into the store (verified), then parse
      await source.fetch(store, config, undefined);
      const cfg = parseArtifactConfig(name, await store.readBlob(config.digest), layers);
      out.#sources.set(name, source);
      for (const l of layers) if (!out.#layerSources.has(l.digest)) out.#layerSources.set(l.digest, source);
      for (const r of cfg.records) {
        if (out.#records.has(r.key)) continue;
        out.#records.set(r.key, { record: r, source: name });
        if (r.components !== undefined && isCopyFrom(r.components)) out.#byDefinition.set(definitionKey(r.components), r);
      }
    }
    return out;
  }

  /** How many records were imported. */
  get size(): number {
    return this.#records.size;
  }

  /** The imported record for a key. */
  get(key: string): ImportedRecord | undefined {
    return this.#records.get(key);
  }

  /** An imported `COPY --from` record with this definition ({@link definitionKey}). */
  byDefinition(def: string): CacheArtifactRecord | undefined {
    return this.#byDefinition.get(def);
  }

  /** Whether a layer blob can be fetched from an imported cache. */
  canFetch(digest: Digest): boolean {
    return this.#layerSources.has(digest);
  }

  /** Every imported record. */
  records(): IterableIterator<ImportedRecord> {
    return this.#records.values();
  }

  /**
   * Makes sure a layer blob is in `store`: fetched from the cache that listed it when
   * absent, verified against its digest and size, and its diffID checked by
   * decompressing it. Returns true when it was fetched now. Concurrent calls for one
   * blob share one download.
   */
  async ensureBlob(store: ContentStore, layer: RecordedLayer, progress?: { emit: ProgressHandler; vertex: string }): Promise<boolean> {
    const running = this.#inflight.get(layer.digest);
    if (running !== undefined) return running;
    const p = (async (): Promise<boolean> => {
      if (await store.has(layer.digest)) return false;
      const source = this.#layerSources.get(layer.digest);
      if (source === undefined) throw new RemoteCacheError('(import)', `expected layer ${layer.digest} in an imported cache, found it in none`, 'NOT_FOUND');
      const reporter = progress !== undefined ? new TransferReporter(progress.emit, progress.vertex, 'fetching') : undefined;
      await source.fetch(store, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, reporter);
      const diffId = await digestOfStream(openLayerStream(store, layer));
      if (diffId !== layer.diffId) {
        await store.delete(layer.digest);
        throw new RemoteCacheError(source.name, `expected layer ${layer.digest} to decompress to ${layer.diffId}, found ${diffId}`);
      }
      this.fetched.push(layer.digest);
      return true;
    })();
    this.#inflight.set(layer.digest, p);
    try {
      return await p;
    } finally {
      this.#inflight.delete(layer.digest);
    }
  }
}
