import { randomBytes } from 'node:crypto';
import { readdir, rename, rmdir, writeFile, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ContentStore, REF_NAME_ANNOTATION, sha256, type Descriptor, type Digest } from '@tsbuild/snapshotter';
import { RemoteCacheError } from '../errors.js';
import type { ProgressHandler } from '../progress.js';
import { CACHE_ARTIFACT_TYPE, CACHE_CONFIG_MEDIA_TYPE, encodeArtifact, OCI_MANIFEST_MEDIA_TYPE, type CacheArtifactConfig, type CacheArtifactRecord } from './cache-format.js';
import type { ImportedCache } from './cache-import.js';
import { registryClient, TransferReporter, type RegistryAccess } from './registry.js';

/** Where `--cache-to` writes a cache: a registry reference, or an OCI layout directory. */
export type CacheExportSpec =
  | { type: 'registry'; ref: string; mode?: 'min' | 'max' }
  | { type: 'local'; dest: string; tag?: string; mode?: 'min' | 'max' };

/** What an export wrote. */
export interface CacheExportResult {
  /** the artifact manifest */
  descriptor: Descriptor;
  /** records exported */
  records: number;
  /** layer blobs listed */
  layers: number;
  /** records left out because their layer blob was nowhere to be found */
  dropped: string[];
}

/**
 * Picks the records to export. `min`: the final image's chain (from `finalKey` down its
 * parents); `max`: every record of the build.
 */
export function selectRecords(all: ReadonlyMap<string, CacheArtifactRecord>, mode: 'min' | 'max', finalKey: string): CacheArtifactRecord[] {
  if (mode === 'max') return [...all.values()];
  const out: CacheArtifactRecord[] = [];
  const seen = new Set<string>();
  for (let k: string | undefined = finalKey; k !== undefined && !seen.has(k); ) {
    seen.add(k);
    const r = all.get(k);
    if (r === undefined) break;
    out.push(r);
    k = r.parent;
  }
  return out.reverse();
}

async function writeIndexAtomically(dir: string, tag: string, desc: Descriptor): Promise<void> {
  const path = join(dir, 'index.json');
  let manifests: Descriptor[] = [];
  try {
    const cur = JSON.parse(await readFile(path, 'utf8')) as { manifests?: Descriptor[] };
    if (Array.isArray(cur.manifests)) manifests = cur.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== tag);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
  }
  const entry = { ...desc, artifactType: CACHE_ARTIFACT_TYPE, annotations: { [REF_NAME_ANNOTATION]: tag } };
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [...manifests, entry] };
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, `${JSON.stringify(index)}\n`);
  await rename(tmp, path);
}

/**
 * Writes `records` as a cache artifact to a registry or a directory. Layer blobs come
 * from the local store; one that is absent there is skipped when the registry already
 * has it, else fetched from an imported cache; a record whose layer is nowhere is
 * dropped (and named in the result).
 */
export async function exportCache(
  store: ContentStore,
  records: readonly CacheArtifactRecord[],
  spec: CacheExportSpec,
  opts: { access?: RegistryAccess; imported?: ImportedCache; emit?: ProgressHandler; vertex?: string; signal?: AbortSignal } = {},
): Promise<CacheExportResult> {
  const mode = spec.mode ?? 'min';
  const reporter = opts.emit !== undefined && opts.vertex !== undefined ? new TransferReporter(opts.emit, opts.vertex, spec.type === 'registry' ? 'pushing' : 'writing') : undefined;
  const client = spec.type === 'registry' ? registryClient(opts.access, reporter?.handle, opts.signal) : undefined;
  const target = spec.type === 'registry' ? spec.ref : resolve(spec.dest);
  const destStore = spec.type === 'local' ? await ContentStore.open(target) : undefined;

  // Each layer must end up in the target: present there, or copied from the store
  // (fetched from an imported cache first when only that has it).
  const kept: CacheArtifactRecord[] = [];
  const dropped: string[] = [];
  const toCopy = new Map<Digest, Descriptor>();
  const ok = new Map<Digest, boolean>();
  for (const r of records) {
    const l = r.layer;
    if (l === undefined) {
      kept.push(r);
      continue;
    }
    let available = ok.get(l.digest);
    if (available === undefined) {
      const desc: Descriptor = { mediaType: l.mediaType, digest: l.digest, size: l.size };
      if (destStore !== undefined ? await destStore.has(l.digest) : await client!.hasBlob(target, l.digest)) available = true;
      else if (await store.has(l.digest)) {
        available = true;
        toCopy.set(l.digest, desc);
      } else if (opts.imported?.canFetch(l.digest) === true) {
        await opts.imported.ensureBlob(store, l, opts.emit !== undefined && opts.vertex !== undefined ? { emit: opts.emit, vertex: opts.vertex } : undefined);
        available = true;
        toCopy.set(l.digest, desc);
      } else available = false;
      ok.set(l.digest, available);
    }
    if (available) kept.push(r);
    else dropped.push(r.key);
  }
  if (kept.length === 0 && records.length > 0) throw new RemoteCacheError(target, `expected at least one record with its layer available, found none of ${records.length}`, 'FAILED_PRECONDITION');
  // A dropped record's descendants stay: their keys do not depend on the parent's layer.
  const config: CacheArtifactConfig = { schemaVersion: 1, mode, records: kept };
  const encoded = encodeArtifact(config, sha256);
  const configDesc: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: sha256(encoded.config), size: encoded.config.byteLength };
  const manifestDesc: Descriptor = { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: sha256(encoded.manifest), size: encoded.manifest.byteLength };

  if (client !== undefined) {
    await store.writeBlob(encoded.config, { digest: configDesc.digest });
    await store.writeBlob(encoded.manifest, { digest: manifestDesc.digest });
    await client.pushBlobs(store, target, [configDesc, ...toCopy.values()]);
    await client.pushManifest(store, target, manifestDesc);
  } else {
    const dest = destStore!;
    for (const d of toCopy.values()) {
      if (await dest.has(d.digest)) continue;
      const w = await dest.writer();
      try {
        let n = 0;
        for await (const chunk of store.createReadStream(d.digest)) {
          await w.write(chunk as Buffer);
          n += (chunk as Buffer).byteLength;
          reporter?.handle({ id: d.digest, action: 'push', current: n, total: d.size });
        }
        await w.commit({ digest: d.digest, size: d.size });
      } catch (err) {
        await w.abort();
        throw err;
      }
    }
    await dest.writeBlob(encoded.config, { digest: configDesc.digest });
    await dest.writeBlob(encoded.manifest, { digest: manifestDesc.digest });
    await writeIndexAtomically(target, spec.type === 'local' ? (spec.tag ?? 'latest') : 'latest', manifestDesc);
    // the content store's ingest directory is of no use in an exported layout
    const ingest = join(target, 'ingest');
    if ((await readdir(ingest).catch(() => ['?'])).length === 0) await rmdir(ingest).catch(() => {});
  }
  return { descriptor: manifestDesc, records: kept.length, layers: encoded.layers.length, dropped };
}
