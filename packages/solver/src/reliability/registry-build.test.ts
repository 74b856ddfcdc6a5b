/**
 * Hostile registry answers met by a build (catalog T19–T21 at the build level): `FROM`
 * pulls through the same registry client as `tsbuild pull`. A Node server on loopback
 * serves busybox:local with a flipped bit in its layer, or a manifest that is not the
 * one a digest reference names; the build fails with a clean error and the store keeps
 * nothing of it (no blob under the bad digest, no tag, no ingest). The honest server is
 * the control: the same build then succeeds with the served manifest.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { StoredImage } from '@tsbuild/snapshotter';
import { build } from '../frontend/build.js';
import { BuildStore } from '../store.js';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';
import { assertClean, makeContext } from './test-helpers/harness.js';

type Mode = 'honest' | 'flip-layer' | 'other-manifest';

describe('hostile registry answers during a build (T19, T21)', { concurrency: false }, () => {
  let src: TestStore | undefined;
  let image: StoredImage;
  let manifest: Buffer;
  let server: http.Server | undefined;
  let host = '';
  let mode: Mode = 'honest';
  let ctx = '';
  const roots: string[] = [];

  before(async () => {
    if (process.getuid?.() !== 0) return;
    src = await tempStoreWithBusybox();
    image = (await src.store.images.resolve('busybox:local'))!;
    manifest = await src.store.content.readBlob(image.manifestDigest);
    // a different, valid manifest: the same one with an annotation
    const other = Buffer.from(JSON.stringify({ ...JSON.parse(manifest.toString()), annotations: { swapped: 'yes' } }));
    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      if (url === '/v2/') return void res.writeHead(200).end();
      if (url.includes('/manifests/')) {
        const body = mode === 'other-manifest' ? other : manifest;
        return void res.writeHead(200, { 'content-type': image.manifest.mediaType, 'content-length': String(body.length) }).end(body);
      }
      const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
      if (m === null) return void res.writeHead(404).end();
      void src!.store.content.readBlob(m[1]! as `sha256:${string}`).then(
        (b) => {
          const out = Buffer.from(b);
          if (mode === 'flip-layer' && m[1] === image.manifest.layers[0]!.digest) out[out.length >> 1]! ^= 0x01;
          res.writeHead(200, { 'content-length': String(out.length) }).end(out);
        },
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    ctx = await makeContext({});
  });
  after(async () => {
    server?.closeAllConnections();
    if (server) await new Promise((r) => server!.close(r));
    await src?.cleanup();
    if (ctx) await rm(ctx, { recursive: true, force: true });
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });

  /** Builds FROM `ref` into a fresh, empty store; returns the store (open) and the outcome. */
  async function buildFrom(ref: string): Promise<{ store: BuildStore; root: string; error?: unknown; digest?: string }> {
    const root = await mkdtemp(join(tmpdir(), 'tsbuild-regbuild-'));
    roots.push(root);
    const store = await BuildStore.open(root);
    try {
      const r = await build(store, { context: ctx, dockerfileText: `FROM ${ref}\nRUN test -x /bin/busybox\n`, sourceDateEpoch: 0, isolation: 'runc' });
      return { store, root, digest: r.image.manifestDigest };
    } catch (error) {
      return { store, root, error };
    }
  }

  /**
   * Builds FROM `ref` (served in `mode`) and expects a clean failure whose message
   * matches `message`, with nothing of the pull kept (no layer, no tag, no ingest).
   */
  async function assertRefused(t: { diagnostic(msg: string): void }, ref: string, message: RegExp): Promise<void> {
    const r = await buildFrom(ref);
    try {
      assert.ok(r.error !== undefined, `the build from ${ref} succeeded (${mode})`);
      assert.equal(typeof (r.error as { code?: unknown }).code, 'string', `expected a clean tsbuild error, found ${String(r.error)}`);
      t.diagnostic((r.error as Error).message);
      assert.match((r.error as Error).message, message);
      for (const l of image.manifest.layers) assert.equal(await r.store.content.has(l.digest), false, `layer ${l.digest} was stored`);
      assert.equal(await r.store.images.resolve(ref), undefined, 'the image was tagged');
      assert.deepEqual(await readdir(join(r.root, 'ingest')), [], 'an ingest was left');
      const { checkStore } = await import('../check/index.js');
      assertClean(await checkStore(r.store), 'after the refused pull');
    } finally {
      await r.store.close();
    }
  }

  test('T21: a layer with a flipped bit fails the build naming the digest; nothing of it is kept', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    mode = 'flip-layer';
    await assertRefused(t, `${host}/l/busybox:v1`, new RegExp(`expected ${image.manifest.layers[0]!.digest}`));
  });

  test('T19: a manifest that is not the one the digest reference names fails the build; nothing is kept', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    mode = 'other-manifest';
    await assertRefused(t, `${host}/l/busybox@${image.manifestDigest}`, new RegExp(`expected ${image.manifestDigest}`));
  });

  test('control: the honest registry serves the same build', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    mode = 'honest';
    const ref = `${host}/l/busybox:v1`;
    const r = await buildFrom(ref);
    try {
      assert.equal(r.error, undefined, String(r.error));
      assert.equal((await r.store.images.resolve(ref))?.manifestDigest, image.manifestDigest);
    } finally {
      await r.store.close();
    }
  });
});
