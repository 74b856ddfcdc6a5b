// The cache artifact format, record selection, and a local export/import round trip
// (no root, no registry: the registry side is tested from the CLI, src/registry.test.ts there).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ContentStore, sha256, type Digest } from '@tsbuild/snapshotter';
import type { KeyComponents, RecordedLayer } from '../cache/cache-db.js';
import { keyOf, type Key } from '../cache/keys.js';
import { RemoteCacheError } from '../errors.js';
import { CACHE_CONFIG_MEDIA_TYPE, definitionKey, encodeArtifact, parseArtifactConfig, parseArtifactManifest, type CacheArtifactConfig, type CacheArtifactRecord } from './cache-format.js';
import { exportCache, selectRecords } from './cache-export.js';
import { ImportedCache } from './cache-import.js';
import { insecureRegistriesFromEnv } from './registry.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempStore(): Promise<ContentStore> {
  const d = await mkdtemp(join(tmpdir(), 'tsbuild-remote-'));
  dirs.push(d);
  return ContentStore.open(d);
}

/** An uncompressed layer blob: its diffID is its digest. */
async function layer(store: ContentStore, text: string): Promise<RecordedLayer> {
  const info = await store.writeBlob(Buffer.from(text));
  return { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: info.digest, size: info.size, diffId: info.digest };
}

function chain(layers: RecordedLayer[]): CacheArtifactRecord[] {
  const out: CacheArtifactRecord[] = [];
  let parent = keyOf({ from: 'scratch' }) as string;
  for (const [i, l] of layers.entries()) {
    const key = keyOf({ parent, op: `step ${i}` });
    out.push({ key, parent, description: `RUN step ${i}`, layer: l });
    parent = key;
  }
  return out;
}

describe('cache artifact format', () => {
  it('round-trips through manifest and config, with canonical (stable) bytes', async () => {
    const store = await tempStore();
    const records = chain([await layer(store, 'a'), await layer(store, 'b')]);
    const copy: KeyComponents = { parent: records[1]!.key, op: JSON.stringify({ kind: 'COPY', dest: '/x' }), files: sha256('f') as string, inputs: { from: keyOf('stage') } };
    records.push({ key: keyOf(copy), parent: copy.parent, description: 'COPY --from=build /x /x', components: copy });
    const config: CacheArtifactConfig = { schemaVersion: 1, mode: 'max', records };
    const enc = encodeArtifact(config, sha256);
    assert.deepEqual(encodeArtifact(config, sha256).manifest, enc.manifest);
    const body = JSON.parse(enc.manifest.toString('utf8')) as Record<string, unknown>;
    assert.equal(body.artifactType, 'application/vnd.tsbuild.cache.v1');
    const m = parseArtifactManifest('t', body);
    assert.equal(m.config.mediaType, CACHE_CONFIG_MEDIA_TYPE);
    assert.equal(m.layers.length, 2);
    const back = parseArtifactConfig('t', enc.config, m.layers);
    assert.deepEqual(back, config);
    // a COPY --from record matches by definition (no file digest)
    assert.equal(definitionKey(copy), definitionKey({ parent: copy.parent, op: copy.op, inputs: { from: keyOf('stage') } }));
  });

  it('refuses records that do not fit the manifest, bad keys, components that do not hash to the key', async () => {
    const store = await tempStore();
    const records = chain([await layer(store, 'a')]);
    const good = encodeArtifact({ schemaVersion: 1, mode: 'min', records }, sha256);
    const layers = parseArtifactManifest('t', JSON.parse(good.manifest.toString('utf8')) as Record<string, unknown>).layers;
    const bad = (mutate: (c: { schemaVersion: number; mode: string; records: Record<string, unknown>[] }) => void): Buffer => {
      const c = JSON.parse(good.config.toString('utf8')) as { schemaVersion: number; mode: string; records: Record<string, unknown>[] };
      mutate(c);
      return Buffer.from(JSON.stringify(c));
    };
    const cases: [Buffer, RegExp][] = [
      [bad((c) => (c.records[0]!.layer = { ...(c.records[0]!.layer as object), size: 999 })), /among the manifest's layers/],
      [bad((c) => (c.records[0]!.key = 'sha256:nothex')), /expected key/],
      [bad((c) => (c.records[0]!.layer = { ...(c.records[0]!.layer as object), mediaType: 'text/plain' })), /expected a layer media type/],
      [bad((c) => (c.records[0]!.components = { parent: c.records[0]!.parent, op: 'forged' })), /expected its components to hash to/],
      [bad((c) => (c.mode = 'all')), /expected cache mode min or max/],
      [bad((c) => (c.schemaVersion = 2)), /schemaVersion 1/],
      [Buffer.from('{'), /to be JSON/],
    ];
    for (const [bytes, msg] of cases) assert.throws(() => parseArtifactConfig('t', bytes, layers), (err: unknown) => err instanceof RemoteCacheError && msg.test(err.message));
    assert.throws(() => parseArtifactManifest('t', { config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('x'), size: 1 }, layers: [] }), /expected a tsbuild cache manifest/);
  });

  it('selects the final chain for mode=min and every record for mode=max', async () => {
    const store = await tempStore();
    const main = chain([await layer(store, 'a'), await layer(store, 'b'), await layer(store, 'c')]);
    const side: CacheArtifactRecord = { key: keyOf('side'), parent: main[0]!.key, description: 'RUN other stage' };
    const all = new Map([...main, side].map((r) => [r.key, r]));
    assert.deepEqual(selectRecords(all, 'min', main[2]!.key).map((r) => r.key), main.map((r) => r.key));
    assert.equal(selectRecords(all, 'max', main[2]!.key).length, 4);
    assert.deepEqual(selectRecords(all, 'min', keyOf({ from: 'scratch' })), []);
  });

  it('reads TSBUILD_INSECURE_REGISTRIES', () => {
    assert.deepEqual(insecureRegistriesFromEnv({ TSBUILD_INSECURE_REGISTRIES: ' reg.lan:5000, ,10.0.0.2:5000 ' }), ['reg.lan:5000', '10.0.0.2:5000']);
    assert.deepEqual(insecureRegistriesFromEnv({}), []);
  });
});

describe('local cache export and import', () => {
  it('exports to an OCI layout directory; an import fetches a layer only when asked, verified', async () => {
    const src = await tempStore();
    const l1 = await layer(src, 'first layer');
    const l2 = await layer(src, 'second layer');
    const records = chain([l1, l2]);
    const dest = await mkdtemp(join(tmpdir(), 'tsbuild-cache-dir-'));
    dirs.push(dest);
    const res = await exportCache(src, records, { type: 'local', dest, mode: 'max' });
    assert.equal(res.records, 2);
    assert.deepEqual(res.dropped, []);
    const index = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0]!.digest, res.descriptor.digest);
    assert.equal(index.manifests[0]!.annotations['org.opencontainers.image.ref.name'], 'latest');

    const dst = await tempStore();
    const imported = await ImportedCache.load(dst, [{ type: 'local', src: dest }]);
    assert.equal(imported.size, 2);
    assert.equal(imported.get(records[1]!.key)?.record.layer?.digest, l2.digest);
    assert.equal(await dst.has(l1.digest), false, 'loading must not fetch layers');
    assert.equal(await imported.ensureBlob(dst, l2), true);
    assert.equal(await dst.has(l2.digest), true);
    assert.equal(await dst.has(l1.digest), false);
    assert.equal(await imported.ensureBlob(dst, l2), false);

    // a record whose layer is nowhere is left out of an export, and named
    const gone: RecordedLayer = { mediaType: l1.mediaType, digest: sha256('never stored') as Key, size: 12, diffId: sha256('never stored') as Key };
    const dropped = await exportCache(dst, [...records, { key: keyOf('x'), parent: records[1]!.key, description: 'RUN x', layer: gone }], { type: 'local', dest: join(dest, 'again') }, { imported });
    assert.equal(dropped.records, 2);
    assert.equal(dropped.dropped.length, 1);
  });

  it('refuses a fetched layer whose content does not decompress to the recorded diffID', async () => {
    const src = await tempStore();
    const l = await layer(src, 'payload');
    const lying: RecordedLayer = { ...l, diffId: sha256('something else') as Digest };
    const dest = await mkdtemp(join(tmpdir(), 'tsbuild-cache-dir-'));
    dirs.push(dest);
    await exportCache(src, [{ key: keyOf('k'), parent: keyOf({ from: 'scratch' }), description: 'RUN k', layer: lying }], { type: 'local', dest, tag: 'v1' });
    const dst = await tempStore();
    await assert.rejects(ImportedCache.load(dst, [{ type: 'local', src: dest, tag: 'nope' }]), /expected a manifest named "nope"/);
    const imported = await ImportedCache.load(dst, [{ type: 'local', src: dest, tag: 'v1' }]);
    await assert.rejects(imported.ensureBlob(dst, lying), /to decompress to/);
    assert.equal(await dst.has(l.digest), false, 'the bad blob is removed');
    // a tampered index.json entry is caught by the manifest digest
    await writeFile(join(dest, 'index.json'), (await readFile(join(dest, 'index.json'), 'utf8')).replace(/"size":\d+/, '"size":1'));
    await assert.rejects(ImportedCache.load(await tempStore(), [{ type: 'local', src: dest, tag: 'v1' }]), /expected manifest sha256:/);
  });
});
