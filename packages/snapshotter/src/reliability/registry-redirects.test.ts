/**
 * Redirects and upload locations with credentials configured (catalog T25 HEAD/PUT/PATCH
 * and relative or foreign upload `Location`s; T26 (b) a token realm on another host).
 * Two Node servers on loopback play the registry (Basic or Bearer auth, a small upload
 * protocol that verifies every blob's digest) and a second origin (a blob store / CDN or
 * token server); every request each one sees is recorded with its Authorization.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { ImageStore } from '../image/image-store.js';
import type { StoredImage } from '../image/types.js';
import { RegistryClient } from '../registry/client.js';
import { buildTestImage, freePort, tempDir } from '../registry/test-helpers/registry.js';

interface Seen {
  method: string;
  path: string;
  auth: string | undefined;
}

/** A loopback server whose handler can be swapped per test; records every request. */
async function recordingServer(): Promise<{ host: string; seen: Seen[]; handle: (h: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void) => void; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  let handler: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void = (_q, s) => void s.writeHead(500).end();
  const port = await freePort();
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', path: req.url ?? '', auth: req.headers.authorization });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${port}`,
    seen,
    handle: (h) => {
      handler = h;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('redirects and upload locations with credentials (T25, T26 b)', () => {
  const dirs: string[] = [];
  let src: ContentStore;
  let image: StoredImage;
  let reg: Awaited<ReturnType<typeof recordingServer>>;
  let other: Awaited<ReturnType<typeof recordingServer>>;
  let configDir = '';
  const ALICE = basic('alice', 'registry-password');

  before(async () => {
    const d = await tempDir('tsbuild-redirects-src-');
    dirs.push(d);
    src = await ContentStore.open(d);
    // two 64 KiB layers: pushed in PATCH chunks below; the config and small layer in one PUT
    image = await buildTestImage(src, { tag: 'redirects', bigLayers: 2, bigSize: 64 * 1024 });
    reg = await recordingServer();
    other = await recordingServer();
    configDir = await mkdtemp(join(tmpdir(), 'tsbuild-redirects-cfg-'));
    dirs.push(configDir);
    // credentials for the registry only; a (different) login for the other host must never be used for the registry
    await writeFile(join(configDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { username: 'alice', password: 'registry-password' }, [other.host]: { username: 'mallory', password: 'other-password' } } }));
  });
  after(async () => {
    await reg.close();
    await other.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  beforeEach(() => {
    reg.seen.length = 0;
    other.seen.length = 0;
  });

  const client = (extra: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient =>
    new RegistryClient({ retries: 0, retryDelayMs: 5, dockerConfigDir: configDir, ...extra });

  /** The registry's gate: Basic alice, else a Basic challenge. True when the request may go on. */
  function gate(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (req.headers.authorization === ALICE) return true;
    res.writeHead(401, { 'www-authenticate': 'Basic realm="tsbuild-test"' }).end();
    return false;
  }

  /**
   * An upload protocol (POST opens, PATCH appends with a Content-Range check, PUT ?digest
   * completes and verifies) served at `/u/<id>` of whichever server calls it; `next(id, n)`
   * is the Location answered after the n-th step of upload `id`. With `expect`, every
   * step must arrive exactly at `expect(id)` with the `s` query of the previous step's
   * Location (else 404, noted in `misses`).
   */
  function uploads(
    stored: Map<string, Buffer>,
    next: (id: number, n: number) => string,
    expect?: { path: (id: number) => string; misses: string[] },
  ): (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean {
    const parts = new Map<number, Buffer[]>();
    const steps = new Map<number, number>();
    let ids = 0;
    return (req, res, body) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'POST' && url.pathname === '/v2/l/app/blobs/uploads/') {
        const id = ++ids;
        parts.set(id, []);
        steps.set(id, 0);
        res.writeHead(202, { location: next(id, 0), 'content-length': '0' }).end();
        return true;
      }
      const m = /\/u\/(\d+)$/.exec(url.pathname);
      if (m === null) return false;
      const id = Number(m[1]);
      const have = parts.get(id);
      if (have === undefined) return void res.writeHead(404).end(), true;
      const n = (steps.get(id) ?? 0) + 1;
      if (expect !== undefined && (url.pathname !== expect.path(id) || url.searchParams.get('s') !== String(n - 1))) {
        expect.misses.push(`${req.method} ${req.url} (step ${n} of upload ${id})`);
        return void res.writeHead(404).end(), true;
      }
      steps.set(id, n);
      const offset = have.reduce((a, b) => a + b.length, 0);
      if (req.method === 'PATCH') {
        const range = /^(\d+)-(\d+)$/.exec(req.headers['content-range'] ?? '');
        if (range === null || Number(range[1]) !== offset || Number(range[2]) !== offset + body.length - 1) return void res.writeHead(416).end(), true;
        have.push(body);
        res.writeHead(202, { location: next(id, n), range: `0-${offset + body.length - 1}`, 'content-length': '0' }).end();
        return true;
      }
      if (req.method === 'PUT') {
        have.push(body);
        const blob = Buffer.concat(have);
        const digest = url.searchParams.get('digest') ?? '';
        if (sha256(blob) !== digest) return void res.writeHead(400).end(JSON.stringify({ errors: [{ code: 'DIGEST_INVALID' }] })), true;
        stored.set(digest, blob);
        parts.delete(id);
        res.writeHead(201, { 'docker-content-digest': digest, 'content-length': '0' }).end();
        return true;
      }
      return false;
    };
  }

  /** The registry's side of a push: HEAD 404 until stored, uploads by `up`, manifests accepted. */
  function registryPush(stored: Map<string, Buffer>, up: ReturnType<typeof uploads>): void {
    reg.handle((req, res, body) => {
      if (!gate(req, res)) return;
      const url = new URL(req.url ?? '/', 'http://x');
      const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
      if (req.method === 'HEAD' && blob !== null) return void res.writeHead(stored.has(blob[1]!) ? 200 : 404).end();
      if (req.method === 'PUT' && /\/manifests\//.test(url.pathname)) {
        stored.set('manifest', body);
        return void res.writeHead(201, { 'docker-content-digest': sha256(body) }).end();
      }
      if (!up(req, res, body)) res.writeHead(404).end();
    });
  }

  function assertPushed(stored: Map<string, Buffer>): void {
    for (const d of [image.manifest.config, ...image.manifest.layers]) assert.equal(stored.get(d.digest)?.length, d.size, `blob ${d.digest} was not stored whole`);
    assert.equal(stored.has('manifest'), true);
  }

  test('T25: relative upload Locations (path-relative, dot segments, query-only, path-absolute) resolve against the request URL', async () => {
    const stored = new Map<string, Buffer>();
    const misses: string[] = [];
    // the POST goes to …/blobs/uploads/, every later step to …/blobs/uploads/u/<id>?s=<n>: each form names that same URL
    const forms = (id: number, n: number): string => [`u/${id}?s=${n}`, `../u/${id}?s=${n}`, `?s=${n}`, `/v2/l/app/blobs/uploads/u/${id}?s=${n}`, `./${id}?s=${n}`][n === 0 ? 0 : 1 + ((id + n) % 4)]!;
    registryPush(stored, uploads(stored, forms, { path: (id) => `/v2/l/app/blobs/uploads/u/${id}`, misses }));
    await client({ monolithicPushMax: 16 * 1024, chunkSize: 12 * 1024 }).push(src, image, `${reg.host}/l/app:v1`);
    assert.deepEqual(misses, [], 'an upload step went to a wrongly resolved Location');
    assertPushed(stored);
    const patches = reg.seen.filter((s) => s.method === 'PATCH');
    assert.ok(patches.length >= 2 * 5, `expected the big layers in PATCH chunks, found ${patches.length} PATCHes`);
    // every upload request carried the credentials (same origin)
    for (const s of reg.seen.filter((x) => x.method === 'PATCH' || x.method === 'PUT')) assert.equal(s.auth, ALICE, `${s.method} ${s.path} without the registry's credentials`);
    assert.deepEqual(other.seen, []);
  });

  test('T25: an upload Location on another host gets the blob but never the registry credentials', async () => {
    const stored = new Map<string, Buffer>();
    const misses: string[] = [];
    const up = uploads(stored, (id, n) => `http://${other.host}/storage/u/${id}?s=${n}`, { path: (id) => `/storage/u/${id}`, misses });
    registryPush(stored, up);
    other.handle((req, res, body) => {
      if (!up(req, res, body)) res.writeHead(404).end();
    });
    await client({ monolithicPushMax: 16 * 1024, chunkSize: 20 * 1024 }).push(src, image, `${reg.host}/l/app:v1`);
    assert.deepEqual(misses, []);
    assertPushed(stored);
    assert.ok(other.seen.some((s) => s.method === 'PATCH') && other.seen.some((s) => s.method === 'PUT'), `expected the uploads on the other host: ${JSON.stringify(other.seen)}`);
    assert.deepEqual(other.seen.filter((s) => s.auth !== undefined), [], 'a credential was sent to the upload host');
    assert.ok(reg.seen.some((s) => s.method === 'POST' && s.auth === ALICE));
  });

  test('T25: HEAD and PUT redirects: followed with the same method and body, credentials only on same-origin hops', async () => {
    const stored = new Map<string, Buffer>();
    const up = uploads(stored, (id) => `/v2/l/app/blobs/u/${id}`);
    reg.handle((req, res, body) => {
      if (!gate(req, res)) return;
      const url = new URL(req.url ?? '/', 'http://x');
      const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
      // HEAD: first a same-origin hop, then a CDN on another origin answers
      if (req.method === 'HEAD' && blob !== null) return void res.writeHead(307, { location: `/v2/l/app/blobs/moved/${blob[1]}` }).end();
      if (req.method === 'HEAD' && url.pathname.startsWith('/v2/l/app/blobs/moved/')) return void res.writeHead(302, { location: `http://${other.host}/cdn/${url.pathname.split('/').at(-1)}` }).end();
      // the completing PUT of every upload is sent to storage on the other origin (a 307 keeps method and body)
      if (req.method === 'PUT' && /\/u\/\d+$/.test(url.pathname) && url.searchParams.has('digest')) return void res.writeHead(307, { location: `http://${other.host}/put${url.pathname}${url.search}` }).end();
      if (req.method === 'PUT' && url.pathname === '/v2/l/app/manifests/stored') {
        stored.set('manifest-after-redirect', body);
        return void res.writeHead(201).end();
      }
      if (req.method === 'PUT' && /\/manifests\//.test(url.pathname)) {
        stored.set('manifest', body);
        return void res.writeHead(308, { location: `/v2/l/app/manifests/stored` }).end();
      }
      if (!up(req, res, body)) res.writeHead(404).end();
    });
    other.handle((req, res, body) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'HEAD' && url.pathname.startsWith('/cdn/')) return void res.writeHead(stored.has(url.pathname.slice(5)) ? 200 : 404).end();
      if (req.method === 'PUT' && url.pathname.startsWith('/put/')) {
        if (!up(req, res, body)) res.writeHead(404).end();
        return;
      }
      res.writeHead(404).end();
    });
    const c = client();
    const ref = `${reg.host}/l/app:v1`;
    assert.equal(await c.hasBlob(ref, image.manifest.config.digest), false);
    await c.push(src, image, ref);
    assertPushed(stored);
    assert.deepEqual(stored.get('manifest-after-redirect'), stored.get('manifest'), 'the manifest body was not sent again after the 308');
    assert.equal(await c.hasBlob(ref, image.manifest.config.digest), true);
    // the other origin saw HEADs and PUTs (never turned into GET), all without credentials
    assert.ok(other.seen.some((s) => s.method === 'HEAD') && other.seen.some((s) => s.method === 'PUT'));
    assert.deepEqual(other.seen.filter((s) => s.method !== 'HEAD' && s.method !== 'PUT'), []);
    assert.deepEqual(other.seen.filter((s) => s.auth !== undefined), [], 'a credential crossed to the other origin');
    // same-origin hops kept them: the moved HEAD and the manifest PUT after its 308
    assert.ok(reg.seen.some((s) => s.method === 'HEAD' && s.path.startsWith('/v2/l/app/blobs/moved/') && s.auth === ALICE));
    assert.ok(reg.seen.some((s) => s.method === 'PUT' && s.path === '/v2/l/app/manifests/stored' && s.auth === ALICE));
  });

  test('T26 (b): a token realm on another host gets the registry’s credentials (loopback); the registry only ever sees the token', async () => {
    const tokenQueries: URLSearchParams[] = [];
    other.handle((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== '/token') return void res.writeHead(404).end();
      tokenQueries.push(url.searchParams);
      if (req.headers.authorization !== ALICE) return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'tok-for-alice', expires_in: 300 }));
    });
    reg.handle((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.headers.authorization !== 'Bearer tok-for-alice') {
        return void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${other.host}/token",service="reg",scope="repository:l/app:pull"` }).end();
      }
      const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
      if (/\/manifests\//.test(url.pathname)) return void res.writeHead(200, { 'content-type': image.manifest.mediaType }).end(JSON.stringify(image.manifest));
      if (blob === null) return void res.writeHead(404).end();
      void src.readBlob(blob[1]! as `sha256:${string}`).then((b) => res.writeHead(200, { 'content-length': String(b.length) }).end(b));
    });
    const d = await tempDir('tsbuild-redirects-dst-');
    dirs.push(d);
    const store = await ContentStore.open(d);
    const pulled = await client().pull(store, await ImageStore.open(store), `${reg.host}/l/app:v1`);
    assert.equal(pulled.manifest.layers.length, image.manifest.layers.length);
    assert.equal(tokenQueries.length, 1);
    assert.deepEqual(tokenQueries[0]!.getAll('scope'), ['repository:l/app:pull']);
    // the realm got the registry's login (not its own host's), only on /token; the registry never saw a password
    assert.deepEqual(other.seen.map((s) => `${s.path.split('?')[0]} ${s.auth}`), [`/token ${ALICE}`]);
    assert.deepEqual(reg.seen.filter((s) => s.auth !== undefined && s.auth !== 'Bearer tok-for-alice'), []);
    assert.ok(reg.seen.filter((s) => s.auth === 'Bearer tok-for-alice').length >= 1 + image.manifest.layers.length);
  });
});
