// A lying registry (a small Node server) serving wrong digests, wrong sizes, wrong media
// types, oversized manifests, dropped connections, 5xx/429 and cross-origin redirects.
import assert from 'node:assert/strict';
import { writeFile, rm } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { sha256, type Digest } from '../content/digest.js';
import { ContentTooLargeError, DigestMismatchError, InvalidManifestError, SizeMismatchError } from '../errors.js';
import { ImageStore } from '../image/image-store.js';
import { MediaTypes, type StoredImage } from '../image/types.js';
import { RegistryClient } from './client.js';
import { buildTestImage, freePort, noise, tempDir } from './test-helpers/registry.js';
import type { TransferProgress } from './types.js';

type BlobMode = 'ok' | 'flip' | 'short' | 'long' | 'drop-once' | 'drop-once-no-range' | '503-once' | '429-once' | 'redirect';

interface Behaviour {
  manifests: Map<string, { body: Buffer; contentType: string; chunked?: boolean }>;
  blobs: Map<string, Buffer>;
  blobMode: Map<string, BlobMode>;
  requireBasic?: string;
}

interface Seen {
  method: string;
  path: string;
  range?: string;
  authorization?: string;
}

async function listen(handler: http.RequestListener): Promise<{ host: string; close(): Promise<void> }> {
  const port = await freePort();
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('pulling from a hostile registry', () => {
  const cleanup: string[] = [];
  let src: ContentStore;
  let image: StoredImage;
  let reg: { host: string; close(): Promise<void> };
  let cdn: { host: string; close(): Promise<void> };
  const seen: Seen[] = [];
  const cdnSeen: Seen[] = [];
  const attempts = new Map<string, number>();
  let b: Behaviour;

  before(async () => {
    const d = await tempDir('tsbuild-hostile-src-');
    cleanup.push(d);
    src = await ContentStore.open(d);
    image = await buildTestImage(src, { tag: 'hostile', bigLayers: 1, bigSize: 512 * 1024 });
    cdn = await listen((req, res) => {
      cdnSeen.push({ method: req.method ?? '', path: req.url ?? '', ...(req.headers.authorization === undefined ? {} : { authorization: req.headers.authorization }) });
      const digest = (req.url ?? '').split('/').pop() ?? '';
      const body = b.blobs.get(digest);
      if (body === undefined) res.writeHead(404).end();
      else res.writeHead(200, { 'content-length': String(body.length) }).end(body);
    });
    reg = await listen((req, res) => {
      const url = req.url ?? '';
      const s: Seen = { method: req.method ?? '', path: url };
      if (req.headers.range !== undefined) s.range = req.headers.range;
      if (req.headers.authorization !== undefined) s.authorization = req.headers.authorization;
      seen.push(s);
      if (b.requireBasic !== undefined && req.headers.authorization !== b.requireBasic) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="hostile"' }).end();
        return;
      }
      let m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url);
      if (m !== null) {
        const doc = b.manifests.get(m[2]!);
        if (doc === undefined) {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
          return;
        }
        if (doc.chunked === true) {
          res.writeHead(200, { 'content-type': doc.contentType });
          res.end(doc.body);
        } else {
          res.writeHead(200, { 'content-type': doc.contentType, 'content-length': String(doc.body.length), 'docker-content-digest': sha256(doc.body) }).end(doc.body);
        }
        return;
      }
      m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
      if (m === null) {
        res.writeHead(404).end();
        return;
      }
      const digest = m[2]!;
      const body = b.blobs.get(digest);
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      const n = (attempts.get(digest) ?? 0) + 1;
      attempts.set(digest, n);
      const mode = b.blobMode.get(digest) ?? 'ok';
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const send = (bytes: Buffer, start = 0): void => {
        if (start > 0) res.writeHead(206, { 'content-length': String(bytes.length - start), 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` }).end(bytes.subarray(start));
        else res.writeHead(200, { 'content-length': String(bytes.length) }).end(bytes);
      };
      switch (mode) {
        case 'flip': {
          const copy = Buffer.from(body);
          copy[copy.length >> 1] ^= 1;
          send(copy);
          return;
        }
        case 'short':
          send(body.subarray(0, body.length - 1));
          return;
        case 'long':
          send(Buffer.concat([body, Buffer.from('x')]));
          return;
        case 'drop-once':
        case 'drop-once-no-range':
          if (n === 1) {
            res.writeHead(200, { 'content-length': String(body.length) });
            res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.destroy(), 20));
            return;
          }
          send(body, mode === 'drop-once' && range !== null ? Number(range[1]) : 0);
          return;
        case '503-once':
        case '429-once':
          if (n === 1) {
            res.writeHead(mode === '503-once' ? 503 : 429, { 'retry-after': '0' }).end('try later');
            return;
          }
          send(body);
          return;
        case 'redirect':
          res.writeHead(307, { location: `http://${cdn.host}/cdn/${digest}` }).end();
          return;
        default:
          send(body);
      }
    });
  });
  after(async () => {
    await reg.close();
    await cdn.close();
    for (const d of cleanup) await rm(d, { recursive: true, force: true });
  });
  beforeEach(async () => {
    seen.length = 0;
    cdnSeen.length = 0;
    attempts.clear();
    const manifestBytes = await src.readBlob(image.manifestDigest);
    b = {
      manifests: new Map([
        ['v1', { body: manifestBytes, contentType: MediaTypes.ociManifest }],
        [image.manifestDigest, { body: manifestBytes, contentType: MediaTypes.ociManifest }],
      ]),
      blobs: new Map(),
      blobMode: new Map(),
    };
    for (const d of [image.configDigest, ...image.manifest.layers.map((l) => l.digest)]) b.blobs.set(d, await src.readBlob(d));
  });

  async function fresh(): Promise<{ store: ContentStore; images: ImageStore }> {
    const d = await tempDir('tsbuild-hostile-dst-');
    cleanup.push(d);
    const store = await ContentStore.open(d);
    return { store, images: await ImageStore.open(store) };
  }

  const bigLayer = (): Digest => image.manifest.layers[1]!.digest;
  const client = (extra: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient => new RegistryClient({ retries: 2, retryDelayMs: 5, ...extra });

  async function assertNothingStored(dst: { store: ContentStore; images: ImageStore }, digest: Digest): Promise<void> {
    assert.equal(await dst.store.has(digest), false);
    assert.equal(await dst.store.has(image.manifestDigest), false, 'the manifest is stored only after every blob verified');
    assert.deepEqual(await dst.images.list(), []);
  }

  test('the control: an honest server pulls fine', async () => {
    const dst = await fresh();
    const img = await client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`);
    assert.equal(img.manifestDigest, image.manifestDigest);
  });

  test('a blob with one bit flipped is refused (digest mismatch), nothing stored', async () => {
    b.blobMode.set(bigLayer(), 'flip');
    const dst = await fresh();
    await assert.rejects(client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`), (err: unknown) => err instanceof DigestMismatchError && err.expected === bigLayer());
    await assertNothingStored(dst, bigLayer());
  });

  test('a truncated blob is retried, then refused (size mismatch)', async () => {
    b.blobMode.set(bigLayer(), 'short');
    const dst = await fresh();
    await assert.rejects(client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`), SizeMismatchError);
    assert.equal(attempts.get(bigLayer()), 3, 'first try plus 2 retries');
    await assertNothingStored(dst, bigLayer());
  });

  test('a blob longer than its descriptor is refused without reading past the size', async () => {
    b.blobMode.set(bigLayer(), 'long');
    const dst = await fresh();
    await assert.rejects(client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`), (err: unknown) => err instanceof SizeMismatchError && err.expected === image.manifest.layers[1]!.size);
    await assertNothingStored(dst, bigLayer());
  });

  test('a manifest whose bytes do not hash to the requested digest is refused', async () => {
    const other = Buffer.from(JSON.stringify({ ...image.manifest, annotations: { evil: 'yes' } }));
    b.manifests.set(image.manifestDigest, { body: other, contentType: MediaTypes.ociManifest });
    const dst = await fresh();
    await assert.rejects(client().pull(dst.store, dst.images, `${reg.host}/h/app@${image.manifestDigest}`), (err: unknown) => {
      assert.ok(err instanceof DigestMismatchError);
      assert.equal(err.expected, image.manifestDigest);
      assert.equal(err.actual, sha256(other));
      return true;
    });
    assert.deepEqual(seen.filter((s) => s.path.includes('/blobs/')), [], 'no blob is fetched for a bad manifest');
  });

  test('wrong or ambiguous media types are refused', async () => {
    const body = await src.readBlob(image.manifestDigest);
    const cases: { body: Buffer; contentType: string; message: RegExp }[] = [
      { body, contentType: MediaTypes.ociLayerGzip, message: /expected a manifest or index content type, found application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip/ },
      { body, contentType: MediaTypes.ociIndex, message: /served as application\/vnd\.oci\.image\.index\.v1\+json but the document says application\/vnd\.oci\.image\.manifest\.v1\+json/ },
      { body: Buffer.from(JSON.stringify({ ...image.manifest, mediaType: MediaTypes.ociConfig })), contentType: 'application/json', message: /expected an OCI or Docker schema2 manifest or index media type, found application\/vnd\.oci\.image\.config\.v1\+json/ },
      { body: Buffer.from(JSON.stringify({ ...image.manifest, manifests: [] })), contentType: MediaTypes.ociManifest, message: /ambiguous\/malicious manifest/ },
      { body: Buffer.from(JSON.stringify({ ...image.manifest, schemaVersion: 1 })), contentType: MediaTypes.ociManifest, message: /expected schemaVersion 2, found 1/ },
    ];
    for (const c of cases) {
      b.manifests.set('v1', { body: c.body, contentType: c.contentType });
      const dst = await fresh();
      await assert.rejects(client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`), (err: unknown) => err instanceof InvalidManifestError && c.message.test(err.message));
    }
  });

  test('manifests above 4 MiB are refused before parsing, with or without Content-Length', async () => {
    const huge = Buffer.alloc(5 * 1024 * 1024, 0x20);
    for (const chunked of [false, true]) {
      b.manifests.set('v1', { body: huge, contentType: MediaTypes.ociManifest, chunked });
      const dst = await fresh();
      await assert.rejects(client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`), (err: unknown) => err instanceof ContentTooLargeError && err.limit === 4 * 1024 * 1024);
    }
  });

  test('a connection dropped mid-blob is resumed with a Range request, and verified', async () => {
    b.blobMode.set(bigLayer(), 'drop-once');
    const dst = await fresh();
    const events: TransferProgress[] = [];
    const img = await client({ onProgress: (e) => events.push(e) }).pull(dst.store, dst.images, `${reg.host}/h/app:v1`);
    assert.equal(img.manifestDigest, image.manifestDigest);
    const gets = seen.filter((s) => s.path.endsWith(bigLayer()));
    assert.equal(gets.length, 2);
    assert.match(gets[1]!.range ?? '', /^bytes=[1-9]\d*-$/);
    assert.equal(sha256(await dst.store.readBlob(bigLayer())), bigLayer());
    assert.equal(events.filter((e) => e.id === bigLayer()).at(-1)?.current, image.manifest.layers[1]!.size);
  });

  test('a server that ignores Range after a drop makes the download start over', async () => {
    b.blobMode.set(bigLayer(), 'drop-once-no-range');
    const dst = await fresh();
    const img = await client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`);
    assert.equal(img.manifestDigest, image.manifestDigest);
    assert.equal(sha256(await dst.store.readBlob(bigLayer())), bigLayer());
  });

  test('a 20 MiB blob dropped halfway (past the writes still in flight) is resumed or restarted, and verified', async () => {
    // Bigger than the client's write batches and its in-flight write window, so the
    // bytes handed to the writer before the drop and the resume offset must agree.
    const bytes = noise(20 * 1024 * 1024 + 12_345, 7); // the drop falls inside a write batch
    const desc = { mediaType: MediaTypes.ociLayerGzip, digest: sha256(bytes), size: bytes.length };
    b.blobs.set(desc.digest, bytes);
    for (const mode of ['drop-once', 'drop-once-no-range'] as const) {
      b.blobMode.set(desc.digest, mode);
      attempts.clear();
      seen.length = 0;
      const dst = await fresh();
      const events: TransferProgress[] = [];
      await client({ onProgress: (e) => events.push(e) }).fetchBlob(dst.store, `${reg.host}/h/app:v1`, desc);
      const gets = seen.filter((x) => x.path.endsWith(desc.digest));
      assert.equal(gets.length, 2, mode);
      if (mode === 'drop-once') assert.match(gets[1]!.range ?? '', /^bytes=[1-9]\d*-$/);
      assert.equal(sha256(await dst.store.readBlob(desc.digest)), desc.digest, mode);
      assert.equal(events.at(-1)?.current, desc.size, mode);
    }
  });

  test('503 and 429 are retried', async () => {
    b.blobMode.set(bigLayer(), '503-once');
    b.blobMode.set(image.configDigest, '429-once');
    const dst = await fresh();
    const img = await client().pull(dst.store, dst.images, `${reg.host}/h/app:v1`);
    assert.equal(img.manifestDigest, image.manifestDigest);
    assert.equal(attempts.get(bigLayer()), 2);
    assert.equal(attempts.get(image.configDigest), 2);
  });

  test('a cross-origin blob redirect is followed without the Authorization header', async () => {
    const auth = `Basic ${Buffer.from('u:p').toString('base64')}`;
    b.requireBasic = auth;
    b.blobMode.set(bigLayer(), 'redirect');
    const cfg = await tempDir('tsbuild-hostile-cfg-');
    cleanup.push(cfg);
    await writeFile(join(cfg, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('u:p').toString('base64') } } }));
    const dst = await fresh();
    const img = await client({ dockerConfigDir: cfg }).pull(dst.store, dst.images, `${reg.host}/h/app:v1`);
    assert.equal(img.manifestDigest, image.manifestDigest);
    assert.equal(cdnSeen.length, 1);
    assert.equal(cdnSeen[0]!.authorization, undefined);
    assert.ok(seen.some((s) => s.path.endsWith(bigLayer()) && s.authorization === auth));
  });
});
