// Pull and push against Debian's docker-registry on loopback (through a counting proxy).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { sha256 } from '../content/digest.js';
import { NoMatchingPlatformError } from '../errors.js';
import { saveOciArchive } from '../image/archive-save.js';
import { canonicalJson } from '../image/canonical-json.js';
import { ImageStore } from '../image/image-store.js';
import { MediaTypes, type StoredImage } from '../image/types.js';
import { RegistryClient } from './client.js';
import { buildTestImage, REGISTRY_BIN, requireTool, SKOPEO_BIN, startProxy, startRegistry, tempDir, type Proxy, type RunningRegistry } from './test-helpers/registry.js';
import type { TransferProgress } from './types.js';

async function openStores(cleanup: string[]): Promise<{ store: ContentStore; images: ImageStore }> {
  const dir = await tempDir('tsbuild-reg-store-');
  cleanup.push(dir);
  const store = await ContentStore.open(dir);
  return { store, images: await ImageStore.open(store) };
}

async function assertSameImage(a: ContentStore, ai: StoredImage, b: ContentStore, bi: StoredImage): Promise<void> {
  assert.equal(bi.manifestDigest, ai.manifestDigest);
  assert.equal(bi.configDigest, ai.configDigest);
  for (const d of [bi.manifestDigest, bi.configDigest, ...bi.manifest.layers.map((l) => l.digest)]) {
    const bytes = await b.readBlob(d);
    assert.equal(sha256(bytes), d);
    assert.deepEqual(bytes, await a.readBlob(d));
  }
}

describe('registry client against docker-registry', () => {
  let registry: RunningRegistry | undefined;
  let proxy: Proxy;
  const cleanup: string[] = [];
  let src: { store: ContentStore; images: ImageStore };
  let image: StoredImage;

  before(async () => {
    if (!existsSync(REGISTRY_BIN)) return; // each test then fails (CI/root) or skips, naming the package
    registry = await startRegistry();
    proxy = await startProxy(registry.host);
    src = await openStores(cleanup);
    image = await buildTestImage(src.store, { bigLayers: 2, bigSize: 600 * 1024 });
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
    for (const d of cleanup) await rm(d, { recursive: true, force: true });
  });

  test('push, then pull into a clean store gives a digest-identical image, tagged', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry')) return;
    const events: TransferProgress[] = [];
    const client = new RegistryClient({ onProgress: (e) => events.push(e) });
    const pushed = await client.push(src.store, image, `${proxy.host}/test/app:v1`);
    assert.equal(pushed.digest, image.manifestDigest);
    assert.ok(events.some((e) => e.action === 'push' && e.id === image.manifest.layers[1]!.digest && e.current === image.manifest.layers[1]!.size));

    const dst = await openStores(cleanup);
    events.length = 0;
    const pulled = await client.pull(dst.store, dst.images, `${proxy.host}/test/app:v1`);
    await assertSameImage(src.store, image, dst.store, pulled);
    const tagged = await dst.images.get(`${proxy.host}/test/app:v1`);
    assert.equal(tagged.manifestDigest, image.manifestDigest);
    const last = events.filter((e) => e.id === image.manifest.layers[2]!.digest && e.action === 'pull').at(-1);
    assert.deepEqual(last, { id: image.manifest.layers[2]!.digest, action: 'pull', current: image.manifest.layers[2]!.size, total: image.manifest.layers[2]!.size });

    const resolved = await client.resolve(`${proxy.host}/test/app:v1`);
    assert.equal(resolved.descriptor.digest, image.manifestDigest);
    assert.equal(resolved.ref.canonical, `${proxy.host}/test/app:v1`);
    assert.equal(resolved.index, undefined);
  });

  test('a second push skips existing blobs (HEAD only, no upload)', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry')) return;
    const client = new RegistryClient();
    await client.push(src.store, image, `${proxy.host}/test/skip:v1`);
    const from = proxy.requests.length;
    const events: TransferProgress[] = [];
    const again = new RegistryClient({ onProgress: (e) => events.push(e) });
    await again.push(src.store, image, `${proxy.host}/test/skip:v2`);
    const reqs = proxy.requests.slice(from);
    const heads = reqs.filter((r) => r.method === 'HEAD' && r.path.includes('/blobs/'));
    const uploads = reqs.filter((r) => (r.method === 'PUT' || r.method === 'PATCH' || r.method === 'POST') && r.path.includes('/blobs/'));
    assert.equal(heads.length, 1 + image.manifest.layers.length);
    assert.equal(uploads.length, 0);
    assert.equal(events.filter((e) => e.action === 'exists').length, 1 + image.manifest.layers.length);
    assert.equal(reqs.filter((r) => r.method === 'PUT' && r.path.includes('/manifests/v2')).length, 1);
  });

  test('cross-repository mount: pushed to (or pulled from) one repo, mounted into another', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry')) return;
    const own = await openStores(cleanup);
    const img = await buildTestImage(own.store, { tag: 'mount', bigLayers: 1 });
    const events: TransferProgress[] = [];
    const client = new RegistryClient({ onProgress: (e) => events.push(e) });
    await client.push(own.store, img, `${proxy.host}/mount/first:v1`);
    let from = proxy.requests.length;
    events.length = 0;
    await client.push(own.store, img, `${proxy.host}/mount/second:v1`);
    let reqs = proxy.requests.slice(from);
    assert.equal(reqs.filter((r) => r.method === 'POST' && r.path.includes('mount=') && r.path.includes('from=mount%2Ffirst')).length, 1 + img.manifest.layers.length);
    assert.equal(reqs.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/')).length, 0);
    assert.equal(events.filter((e) => e.action === 'mounted').length, 1 + img.manifest.layers.length);

    // Pulled from "second" into a fresh store, then pushed to "third": mounted from "second".
    const fresh = await openStores(cleanup);
    const pulled = await client.pull(fresh.store, fresh.images, `${proxy.host}/mount/second:v1`);
    from = proxy.requests.length;
    await client.push(fresh.store, pulled, `${proxy.host}/mount/third:v1`);
    reqs = proxy.requests.slice(from);
    assert.ok(reqs.some((r) => r.path.includes('from=mount%2Fsecond')));
    assert.equal(reqs.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/')).length, 0);
    const check = await openStores(cleanup);
    await assertSameImage(own.store, img, check.store, await client.pull(check.store, check.images, `${proxy.host}/mount/third:v1`));
  });

  test('chunked upload (PATCH) for blobs above monolithicPushMax', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry')) return;
    const own = await openStores(cleanup);
    const img = await buildTestImage(own.store, { tag: 'chunked', bigLayers: 1, bigSize: 700 * 1024 });
    const client = new RegistryClient({ monolithicPushMax: 64 * 1024, chunkSize: 256 * 1024 });
    const from = proxy.requests.length;
    await client.push(own.store, img, `${proxy.host}/test/chunked:v1`);
    const patches = proxy.requests.slice(from).filter((r) => r.method === 'PATCH');
    const big = img.manifest.layers[1]!.size;
    assert.equal(patches.length, Math.ceil(big / (256 * 1024)));
    const dst = await openStores(cleanup);
    await assertSameImage(own.store, img, dst.store, await new RegistryClient().pull(dst.store, dst.images, `${proxy.host}/test/chunked:v1`));
  });

  test('a multi-platform index: the requested platform is pulled, only its blobs', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry')) return;
    const own = await openStores(cleanup);
    const amd = await buildTestImage(own.store, { tag: 'multi', architecture: 'amd64' });
    const arm = await buildTestImage(own.store, { tag: 'multi', architecture: 'arm64', variant: 'v8' });
    const client = new RegistryClient();
    await client.push(own.store, amd, `${proxy.host}/test/multi@${amd.manifestDigest}`);
    await client.push(own.store, arm, `${proxy.host}/test/multi@${arm.manifestDigest}`);
    const index = Buffer.from(
      canonicalJson({
        schemaVersion: 2,
        mediaType: MediaTypes.ociIndex,
        manifests: [
          { mediaType: MediaTypes.ociManifest, digest: amd.manifestDigest, size: amd.manifestSize, platform: { os: 'linux', architecture: 'amd64' } },
          { mediaType: MediaTypes.ociManifest, digest: arm.manifestDigest, size: arm.manifestSize, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
          {
            mediaType: MediaTypes.ociManifest,
            digest: amd.manifestDigest,
            size: amd.manifestSize,
            platform: { os: 'unknown', architecture: 'unknown' },
            annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
          },
        ],
      }),
    );
    const res = await fetch(`http://${proxy.host}/v2/test/multi/manifests/latest`, { method: 'PUT', headers: { 'content-type': MediaTypes.ociIndex }, body: index });
    assert.equal(res.status, 201);

    const dst = await openStores(cleanup);
    const pulled = await client.pull(dst.store, dst.images, `${proxy.host}/test/multi`, { platform: { os: 'linux', architecture: 'arm64' } });
    assert.equal(pulled.manifestDigest, arm.manifestDigest);
    assert.equal(pulled.config.architecture, 'arm64');
    assert.equal(await dst.store.has(amd.manifest.layers[0]!.digest), false);
    assert.equal(await dst.store.has(sha256(index)), true);
    const resolved = await client.resolve(`${proxy.host}/test/multi`, { platform: { os: 'linux', architecture: 'amd64' } });
    assert.equal(resolved.descriptor.digest, amd.manifestDigest);
    assert.equal(resolved.index?.digest, sha256(index));
    await assert.rejects(client.pull(dst.store, dst.images, `${proxy.host}/test/multi`, { platform: { os: 'linux', architecture: 'riscv64' } }), (err: unknown) => {
      assert.ok(err instanceof NoMatchingPlatformError);
      assert.match(err.message, /no match for platform linux\/riscv64; available: linux\/amd64, linux\/arm64\/v8$/);
      return true;
    });
    // By digest of the index, without force: the store already has what the platform needs.
    const from = proxy.requests.length;
    const again = await client.pull(dst.store, dst.images, `${proxy.host}/test/multi@${sha256(index)}`, { platform: { os: 'linux', architecture: 'arm64' } });
    assert.equal(again.manifestDigest, arm.manifestDigest);
    assert.equal(proxy.requests.length, from);
  });

  test('pull without force reuses a local tag with no network; force re-resolves', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry')) return;
    const client = new RegistryClient();
    await client.push(src.store, image, `${proxy.host}/test/cached:v1`);
    const dst = await openStores(cleanup);
    await client.pull(dst.store, dst.images, `${proxy.host}/test/cached:v1`);
    let from = proxy.requests.length;
    const local = await client.pull(dst.store, dst.images, `${proxy.host}/test/cached:v1`);
    assert.equal(local.manifestDigest, image.manifestDigest);
    assert.equal(proxy.requests.length, from);
    from = proxy.requests.length;
    const events: TransferProgress[] = [];
    await new RegistryClient({ onProgress: (e) => events.push(e) }).pull(dst.store, dst.images, `${proxy.host}/test/cached:v1`, { force: true });
    const reqs = proxy.requests.slice(from);
    assert.equal(reqs.filter((r) => r.path.includes('/manifests/')).length, 1);
    assert.equal(reqs.filter((r) => r.path.includes('/blobs/')).length, 0, 'blobs in the store are not downloaded again');
    assert.equal(events.filter((e) => e.action === 'exists').length, 1 + image.manifest.layers.length);
  });

  test('interoperates with skopeo copy both ways', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry') || !requireTool(t, SKOPEO_BIN, 'skopeo')) return;
    const work = await tempDir('tsbuild-skopeo-');
    cleanup.push(work);
    const archive = join(work, 'img.tar');
    await saveOciArchive(src.store, image, ['skopeo/in:v1'], archive);
    const skopeo = (...args: string[]) => {
      const r = spawnSync(SKOPEO_BIN, ['--insecure-policy', ...args], { encoding: 'utf8', env: { ...process.env, REGISTRY_AUTH_FILE: join(work, 'auth.json') } });
      assert.equal(r.status, 0, r.stderr);
    };
    skopeo('copy', '--dest-tls-verify=false', `oci-archive:${archive}`, `docker://${registry!.host}/skopeo/in:v1`);
    const client = new RegistryClient();
    const dst = await openStores(cleanup);
    await assertSameImage(src.store, image, dst.store, await client.pull(dst.store, dst.images, `${registry!.host}/skopeo/in:v1`));

    await client.push(src.store, image, `${registry!.host}/skopeo/out:v1`);
    skopeo('copy', '--src-tls-verify=false', `docker://${registry!.host}/skopeo/out:v1`, `oci:${join(work, 'layout')}:v1`);
    const index = JSON.parse(await readFile(join(work, 'layout', 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    assert.equal(index.manifests[0]!.digest, image.manifestDigest);
    for (const l of image.manifest.layers) {
      assert.equal(sha256(await readFile(join(work, 'layout', 'blobs', 'sha256', l.digest.slice(7)))), l.digest);
    }
  });
});
