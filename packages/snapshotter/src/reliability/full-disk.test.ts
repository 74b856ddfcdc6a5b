/**
 * A content store on a full disk (catalog T39, the open path and the download phase):
 * opening an existing store writes nothing, so it works with no space left; creating its
 * files on a full disk fails with ENOSPC and leaves no temp file behind; a pull that runs
 * out of space leaves no ingest and no partial blob. Needs root (small tmpfs mounts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { openSnapshotter } from '../snapshots/snapshotter.js';
import { ImageStore } from '../image/image-store.js';
import { RegistryClient } from '../registry/client.js';
import { buildTestImage, freePort, tempDir } from '../registry/test-helpers/registry.js';

test('T39: a full disk neither fails opening an existing store nor leaves temp files when creating one', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('the full-disk test needs root (it mounts a tmpfs)');
    return t.skip('needs root (it mounts a tmpfs)');
  }
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-full-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tsbuild-full', root], { encoding: 'utf8' });
  assert.equal(m.status, 0, `mounting a tmpfs failed: ${m.stderr}`);
  try {
    await ContentStore.open(root);
    // fill the disk to the last block
    const fill = async (name: string): Promise<void> => {
      await writeFile(join(root, name), Buffer.alloc(2 * 1024 * 1024)).catch((err: NodeJS.ErrnoException) => assert.equal(err.code, 'ENOSPC'));
      await assert.rejects(writeFile(join(root, 'probe'), 'x'), /ENOSPC/);
      await unlink(join(root, 'probe')).catch(() => undefined);
    };
    await fill('filler');

    await ContentStore.open(root); // an existing store: nothing to write
    await unlink(join(root, 'oci-layout'));
    await fill('filler2'); // the page oci-layout freed
    await assert.rejects(ContentStore.open(root), (err: NodeJS.ErrnoException) => err.code === 'ENOSPC');
    const left = (await readdir(root)).filter((n) => n.includes('.tmp-'));
    assert.deepEqual(left, [], 'a temp file was left by the failed create');

    // the snapshotter's metadata lock: a lock that could not get its owner's pid written
    // must not stay behind (nobody could break it: every later open would wait forever).
    // It is a symlink created with its content, so on a full disk the open either works or
    // fails with ENOSPC, and leaves no lock either way
    await unlink(join(root, 'filler'));
    await unlink(join(root, 'filler2'));
    await openSnapshotter(root, { backend: 'copy' });
    await fill('filler');
    await openSnapshotter(root, { backend: 'copy' }).catch((err: NodeJS.ErrnoException) => assert.equal(err.code, 'ENOSPC', String(err)));
    assert.deepEqual((await readdir(join(root, 'snapshots'))).filter((n) => n.startsWith('lock')), [], 'the metadata lock was left behind');
    await unlink(join(root, 'filler'));
    const opened = await Promise.race([openSnapshotter(root, { backend: 'copy' }).then(() => 'opened'), new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000).unref())]);
    assert.equal(opened, 'opened');
  } finally {
    spawnSync('umount', ['-l', root]);
    await rmdir(root).catch(() => undefined);
  }
});

test('T39: a registry pull into a full store fails with ENOSPC, leaves no ingest or partial blob, and succeeds once there is room', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('the full-disk test needs root (it mounts a tmpfs)');
    return t.skip('needs root (it mounts a tmpfs)');
  }
  // the image: a 3 MiB incompressible layer, served by a plain Node registry on loopback
  const srcDir = await tempDir('tsbuild-full-src-');
  const src = await ContentStore.open(srcDir);
  const image = await buildTestImage(src, { tag: 'full', bigLayers: 1, bigSize: 3 * 1024 * 1024 });
  const manifest = await src.readBlob(image.manifestDigest);
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (/\/manifests\//.test(url)) return void res.writeHead(200, { 'content-type': image.manifest.mediaType }).end(manifest);
    const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
    if (m === null) return void res.writeHead(404).end();
    void src.readBlob(m[1]! as `sha256:${string}`).then((b) => res.writeHead(200, { 'content-length': String(b.length) }).end(b), () => res.writeHead(404).end());
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-full-pull-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tsbuild-full', root], { encoding: 'utf8' });
  assert.equal(m.status, 0, `mounting a tmpfs failed: ${m.stderr}`);
  try {
    const store = await ContentStore.open(root);
    const images = await ImageStore.open(store);
    const ref = `127.0.0.1:${port}/l/app:v1`;
    await assert.rejects(new RegistryClient({ retries: 1, retryDelayMs: 5 }).pull(store, images, ref), (err: NodeJS.ErrnoException) => err.code === 'ENOSPC' || /ENOSPC|no space/i.test(String((err as Error).message)));
    assert.deepEqual(await readdir(join(root, 'ingest')), [], 'an ingest was left behind');
    const big = image.manifest.layers.at(-1)!;
    assert.equal(await store.has(big.digest), false, 'the layer that did not fit is not in the store');
    assert.equal(await images.resolve(ref), undefined, 'the image was tagged without its layers');
    // every blob that is in the store is whole and verified
    for (const d of [image.manifest.config, ...image.manifest.layers]) if (await store.has(d.digest)) assert.equal((await store.info(d.digest)).size, d.size);
    // room again: the same pull succeeds
    const r = spawnSync('mount', ['-o', 'remount,size=16m', root], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const pulled = await new RegistryClient({ retries: 1, retryDelayMs: 5 }).pull(store, images, ref);
    assert.equal(pulled.manifestDigest, image.manifestDigest);
    assert.equal(await store.has(big.digest), true);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    spawnSync('umount', ['-l', root]);
    await rmdir(root).catch(() => undefined);
    await rm(srcDir, { recursive: true, force: true });
  }
});
