/**
 * Registry integrity at pull time (catalog T20, T27) against a scriptable Node registry:
 * a tag that moves between requests, with a lying Docker-Content-Digest header, pins the
 * digest computed from the first body; a foreign layer's `urls` are never followed (the
 * host behind them answers 401 to catch credentials) and the layer is verified when the
 * registry itself serves it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { rm, writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { sha256 } from '../content/digest.js';
import { DigestMismatchError } from '../errors.js';
import { ImageStore } from '../image/image-store.js';
import type { StoredImage } from '../image/types.js';
import { RegistryClient } from '../registry/client.js';
import { buildTestImage, freePort, tempDir } from '../registry/test-helpers/registry.js';

interface Server {
  host: string;
  requests: { method: string; path: string; authorization?: string }[];
  close(): Promise<void>;
}

async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Server> {
  const port = await freePort();
  const requests: Server['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', path: req.url ?? '', ...(req.headers.authorization === undefined ? {} : { authorization: req.headers.authorization }) });
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('registry pins and foreign layers (T20, T27)', () => {
  const dirs: string[] = [];
  let src: ContentStore;
  let one: StoredImage;
  let two: StoredImage;
  const manifests = new Map<string, () => { body: Buffer; type: string; digestHeader?: string }>();
  const blobs = new Map<string, Buffer | null>();
  let reg: Server;
  let foreignHost: Server;
  let configDir = '';

  before(async () => {
    const d = await tempDir('tsbuild-pins-src-');
    dirs.push(d);
    src = await ContentStore.open(d);
    one = await buildTestImage(src, { tag: 'one', bigLayers: 0 });
    two = await buildTestImage(src, { tag: 'two', bigLayers: 0 });
    for (const img of [one, two]) {
      blobs.set(img.configDigest, await src.readBlob(img.configDigest));
      for (const l of img.manifest.layers) blobs.set(l.digest, await src.readBlob(l.digest));
    }
    reg = await serve((req, res) => {
      const url = req.url ?? '';
      const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url);
      if (m !== null) {
        const doc = manifests.get(m[2]!)?.();
        if (doc === undefined) return void res.writeHead(404).end();
        const headers: Record<string, string> = { 'content-type': doc.type, 'content-length': String(doc.body.length) };
        if (doc.digestHeader !== undefined) headers['docker-content-digest'] = doc.digestHeader;
        return void res.writeHead(200, headers).end(req.method === 'HEAD' ? undefined : doc.body);
      }
      const b = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
      const body = b === null ? undefined : blobs.get(b[2]!);
      if (body === undefined || body === null) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': String(body.length) }).end(body);
    });
    configDir = await tempDir('tsbuild-pins-cfg-');
    dirs.push(configDir);
    await writeFile(`${configDir}/config.json`, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('u:registry-secret').toString('base64') } } }));
    foreignHost = await serve((_req, res) => {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:1/token",service="evil"` }).end();
    });
  });
  after(async () => {
    await reg?.close();
    await foreignHost?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function target(): Promise<{ store: ContentStore; images: ImageStore }> {
    const d = await tempDir('tsbuild-pins-dst-');
    dirs.push(d);
    const store = await ContentStore.open(d);
    return { store, images: await ImageStore.open(store) };
  }

  // registry credentials exist (docker config), so a client that followed `urls` to a 401 could leak them
  const client = (): RegistryClient => new RegistryClient({ retries: 1, retryDelayMs: 5, dockerConfigDir: configDir });

  test('T20: a tag that moves mid-pull, with a lying Docker-Content-Digest, pins the digest of the first body', async () => {
    const m1 = await src.readBlob(one.manifestDigest);
    const m2 = await src.readBlob(two.manifestDigest);
    let gets = 0;
    manifests.set('1', () => {
      gets++;
      // first answer M1 (claiming M2's digest in the header), later answers M2
      return gets === 1 ? { body: m1, type: one.manifest.mediaType, digestHeader: two.manifestDigest } : { body: m2, type: two.manifest.mediaType, digestHeader: two.manifestDigest };
    });
    manifests.set(one.manifestDigest, () => ({ body: m1, type: one.manifest.mediaType }));
    manifests.set(two.manifestDigest, () => ({ body: m2, type: two.manifest.mediaType }));
    const { store, images } = await target();
    reg.requests.length = 0;
    const img = await client().pull(store, images, `${reg.host}/app:1`);
    assert.equal(img.manifestDigest, sha256(m1), 'the pulled image must be the computed digest of the body received');
    assert.equal(img.configDigest, one.configDigest);
    // the tag was read once; every later fetch used M1's descriptors, none of M2's
    assert.equal(reg.requests.filter((r) => r.path.endsWith('/manifests/1')).length, 1);
    const fetched = reg.requests.filter((r) => r.path.includes('/blobs/')).map((r) => r.path.split('/').pop());
    for (const d of [two.configDigest, ...two.manifest.layers.map((l) => l.digest)]) assert.ok(!fetched.includes(d), `fetched ${d} of the moved tag`);
    const local = await images.resolve(`${reg.host}/app:1`);
    assert.equal(local?.manifestDigest, sha256(m1));
    assert.deepEqual(await store.readBlob(img.manifestDigest), m1);
  });

  test('T27: a foreign layer is never fetched from its urls; served by the registry it is digest-verified', async () => {
    const layer = one.manifest.layers[0]!;
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: one.configDigest, size: one.manifest.config.size },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', digest: layer.digest, size: layer.size, urls: [`http://${foreignHost.host}/x`] }],
    };
    const body = Buffer.from(JSON.stringify(manifest));
    manifests.set('foreign', () => ({ body, type: manifest.mediaType }));
    // (a) the registry does not have the blob: the pull succeeds without it, urls untouched
    blobs.set(layer.digest, null);
    const a = await target();
    const img = await client().pull(a.store, a.images, `${reg.host}/app:foreign`);
    assert.equal(img.manifestDigest, sha256(body));
    assert.equal(await a.store.has(layer.digest), false);
    assert.deepEqual(foreignHost.requests, [], 'the foreign url was contacted');
    // (b) the registry serves it: stored, verified
    blobs.set(layer.digest, await src.readBlob(layer.digest));
    const b = await target();
    await client().pull(b.store, b.images, `${reg.host}/app:foreign`);
    assert.equal(await b.store.has(layer.digest), true);
    // (c) the registry serves wrong bytes: refused, nothing stored under the digest
    const bad = Buffer.from(await src.readBlob(layer.digest));
    bad[bad.length >> 1]! ^= 1;
    blobs.set(layer.digest, bad);
    const c = await target();
    await assert.rejects(client().pull(c.store, c.images, `${reg.host}/app:foreign`), DigestMismatchError);
    assert.equal(await c.store.has(layer.digest), false);
    assert.deepEqual(foreignHost.requests, []);
  });
});
