import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { sha256, type Digest } from '../content/digest.js';
import { ContentTooLargeError, InvalidManifestError, NoMatchingPlatformError, SizeMismatchError } from '../errors.js';
import { canonicalJson } from './canonical-json.js';
import { readImage, writeImage } from './image.js';
import { hostPlatform, normalizePlatform } from './platform.js';
import { MediaTypes, type Descriptor, type Platform } from './types.js';
import { baseConfig, removeAll, storeGzipLayer, tempDir, tinyTar } from './test-helpers/fixtures.js';

const dirs: string[] = [];
after(() => removeAll(dirs));
async function store(): Promise<ContentStore> {
  return ContentStore.open(join(await tempDir('tsbuild-image-', dirs), 's'));
}
async function putJson(s: ContentStore, v: unknown): Promise<Descriptor & { digest: Digest }> {
  const bytes = Buffer.from(JSON.stringify(v));
  const info = await s.writeBlob(bytes);
  return { mediaType: '', digest: info.digest, size: info.size };
}

describe('canonicalJson', () => {
  it('sorts keys, drops undefined, no whitespace', () => {
    assert.equal(canonicalJson({ b: 1, a: [1, { d: undefined, c: 'x' }], e: null }), '{"a":[1,{"c":"x"}],"b":1,"e":null}');
    assert.throws(() => canonicalJson({ x: Number.NaN }), RangeError);
  });
});

describe('writeImage/readImage', () => {
  it('is deterministic and round-trips', async () => {
    const s1 = await store();
    const s2 = await store();
    const tar = tinyTar('hello.txt', 'hello\n');
    const img1 = await writeImage(s1, { config: baseConfig(), layers: [await storeGzipLayer(s1, tar)], annotations: { z: '1' } });
    const img2 = await writeImage(s2, { config: baseConfig(), layers: [await storeGzipLayer(s2, tar)], annotations: { z: '1' } });
    assert.equal(img1.manifestDigest, img2.manifestDigest);
    assert.equal(img1.configDigest, img2.configDigest);
    const raw = (await s1.readBlob(img1.manifestDigest)).toString();
    assert.ok(!/\s/.test(raw.replace(/"[^"]*"/g, '')), 'no whitespace outside strings');
    assert.equal(JSON.parse(raw).mediaType, MediaTypes.ociManifest);
    assert.deepEqual(img1.config.rootfs.diff_ids, [sha256(tar)]);
    const back = await readImage(s1, img1.manifestDigest);
    assert.deepEqual(back, img1);
    assert.equal(back.size, img1.manifestSize + img1.manifest.config.size + img1.manifest.layers[0]!.size);
  });

  it('refuses diff_ids that disagree with the layers and missing layers', async () => {
    const s = await store();
    const layer = await storeGzipLayer(s, tinyTar('a', 'a'));
    const cfg = baseConfig();
    cfg.rootfs.diff_ids = [sha256('other')];
    await assert.rejects(writeImage(s, { config: cfg, layers: [layer] }), InvalidManifestError);
    await assert.rejects(writeImage(s, { config: baseConfig(), layers: [{ ...layer, size: layer.size + 1 }] }), SizeMismatchError);
  });

  it('reads Docker schema2 manifests and refuses bad media types', async () => {
    const s = await store();
    const tar = tinyTar('x', 'y');
    const layer = await storeGzipLayer(s, tar);
    const cfg = await putJson(s, { ...baseConfig(), rootfs: { type: 'layers', diff_ids: [layer.diffId] } });
    const dockerManifest = {
      schemaVersion: 2,
      mediaType: MediaTypes.dockerManifest,
      config: { mediaType: MediaTypes.dockerConfig, digest: cfg.digest, size: cfg.size },
      layers: [{ mediaType: MediaTypes.dockerLayerGzip, digest: layer.digest, size: layer.size }],
    };
    const m = await putJson(s, dockerManifest);
    const img = await readImage(s, m.digest);
    assert.equal(img.manifest.mediaType, MediaTypes.dockerManifest);
    assert.equal(img.configDigest, cfg.digest);
    // config with a layer media type (T23e)
    const bad1 = await putJson(s, { ...dockerManifest, config: { ...dockerManifest.config, mediaType: MediaTypes.dockerLayerGzip } });
    await assert.rejects(readImage(s, bad1.digest), InvalidManifestError);
    // both manifests and layers (T23a)
    const bad2 = await putJson(s, { ...dockerManifest, manifests: [] });
    await assert.rejects(readImage(s, bad2.digest), /ambiguous/);
    // unknown schemaVersion (T23f)
    const bad3 = await putJson(s, { ...dockerManifest, schemaVersion: 1 });
    await assert.rejects(readImage(s, bad3.digest), InvalidManifestError);
    // wrong layer count
    const bad4 = await putJson(s, { ...dockerManifest, layers: [] });
    await assert.rejects(readImage(s, bad4.digest), /diff_id/);
    // oversized JSON is refused before parsing
    const big = await s.writeBlob(Buffer.alloc(5 * 1024 * 1024, 0x20));
    await assert.rejects(readImage(s, big.digest), ContentTooLargeError);
  });

  it('selects the platform from an index (T24)', async () => {
    const s = await store();
    const mk = async (arch: string, variant?: string): Promise<Descriptor> => {
      const layer = await storeGzipLayer(s, tinyTar(`${arch}${variant ?? ''}`, arch));
      const cfg = { ...baseConfig(), architecture: arch, ...(variant ? { variant } : {}) };
      const img = await writeImage(s, { config: cfg, layers: [layer] });
      const platform: Platform = { os: 'linux', architecture: arch, ...(variant ? { variant } : {}) };
      return { mediaType: MediaTypes.ociManifest, digest: img.manifestDigest, size: img.manifestSize, platform };
    };
    const amd = await mk('amd64');
    const arm64 = await mk('arm64');
    const v6 = await mk('arm', 'v6');
    const v7 = await mk('arm', 'v7');
    const att = { ...(await mk('amd64', 'v9')), platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } };
    const unknown = { mediaType: 'application/vnd.example.thing', digest: sha256('nope'), size: 4, platform: { os: 'linux', architecture: 'amd64' } };
    const nestedIdx = await putJson(s, { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [await mk('ppc64le')] });
    const idx = await putJson(s, {
      schemaVersion: 2,
      mediaType: MediaTypes.ociIndex,
      manifests: [att, unknown, v6, amd, arm64, v7, { mediaType: MediaTypes.ociIndex, digest: nestedIdx.digest, size: nestedIdx.size }],
    });
    const pick = async (p?: Platform): Promise<Digest> => (await readImage(s, idx.digest, p ? { platform: p } : {})).manifestDigest;
    assert.equal(await pick({ os: 'linux', architecture: 'arm', variant: 'v7' }), v7.digest);
    assert.equal(await pick({ os: 'linux', architecture: 'arm' }), v7.digest);
    assert.equal(await pick({ os: 'linux', architecture: 'arm', variant: 'v6' }), v6.digest);
    assert.equal(await pick({ os: 'linux', architecture: 'aarch64' }), arm64.digest);
    assert.equal(await pick({ os: 'linux', architecture: 'ppc64le' }), (await readImage(s, nestedIdx.digest, { platform: { os: 'linux', architecture: 'ppc64le' } })).manifestDigest);
    if (normalizePlatform(hostPlatform()).architecture === 'amd64') assert.equal(await pick(), amd.digest);
    await assert.rejects(pick({ os: 'linux', architecture: 'riscv64' }), (e: unknown) =>
      e instanceof NoMatchingPlatformError && /no match for platform linux\/riscv64; available: .*linux\/amd64/.test(e.message));
    // an index descriptor that claims manifest but points at an index (T23d)
    const lying = await putJson(s, { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [{ mediaType: MediaTypes.ociManifest, digest: nestedIdx.digest, size: nestedIdx.size, platform: { os: 'linux', architecture: 'amd64' } }] });
    await assert.rejects(readImage(s, lying.digest, { platform: { os: 'linux', architecture: 'amd64' } }), InvalidManifestError);
  });
});
