/**
 * Hostile registry responses the client must bound (catalog T22 body caps, T25 redirect
 * hop cap and https downgrade, T26 token flow): a small Node server per case plays the
 * registry (and its token realm); each read stops at its cap, each loop at its bound.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { ContentTooLargeError, InvalidManifestError, RegistryAuthError, RegistryProtocolError, RegistryResponseError, SizeMismatchError } from '../errors.js';
import { ImageStore } from '../image/image-store.js';
import { MediaTypes, type StoredImage } from '../image/types.js';
import { RegistryClient } from '../registry/client.js';
import { DockerCredentials } from '../registry/credentials.js';
import { discard, endpointFor, RegistryTransport } from '../registry/transport.js';
import { buildTestImage, freePort, tempDir } from '../registry/test-helpers/registry.js';

const MiB = 1024 * 1024;

// A self-signed P-256 certificate for 127.0.0.1 (valid until 2126), made once with
// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
// -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1`; test-only, trusts nothing.
const TEST_TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglx0kA7kQrJV9nIAA
3bmnfNh8RZrvkDLPNAKfd+JOARuhRANCAATCkK9AApQA5YjldCwgud4FsTsMibKa
pXS+huAk2zYK+sQU8h435r9+eesBmPdgxc5iT8FmGYr8gBwMhQ+RxonZ
-----END PRIVATE KEY-----
`;
const TEST_TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBjzCCATagAwIBAgIUYuEX3qyLZVBbiAk3AlJ5/czD+W0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyODA1NDkwMFoYDzIxMjYxMTA0
MDU0OTAwWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATCkK9AApQA5YjldCwgud4FsTsMibKapXS+huAk2zYK+sQU8h435r9+
eesBmPdgxc5iT8FmGYr8gBwMhQ+RxonZo2QwYjAdBgNVHQ4EFgQUMq6D0iU5s7+E
1tFygjt7mQAKongwHwYDVR0jBBgwFoAUMq6D0iU5s7+E1tFygjt7mQAKongwDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0cAMEQC
IDvC/u0c2eN96mk//y5jVGiBNMahz91iWwGB4rYpadJjAiB/aHy2org/2abCmnR8
iPjyIjc8u9y1qSKjxpTBCNlytg==
-----END CERTIFICATE-----
`;

/** Writes `total` bytes of `fill` in 64 KiB chunks with backpressure; resolves with the bytes the socket accepted before it closed. */
function stream(res: http.ServerResponse, total: number, fill = 0x20): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, fill);
  let written = 0;
  return new Promise((resolve) => {
    res.on('close', () => resolve(written));
    const pump = (): void => {
      while (written < total && !res.destroyed) {
        written += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      if (!res.destroyed) res.end();
    };
    pump();
  });
}

describe('registry response caps, redirect and token bounds', () => {
  const dirs: string[] = [];
  let src: ContentStore;
  let image: StoredImage;
  let server: http.Server;
  let host = '';
  let handler: http.RequestListener = (_q, s) => void s.writeHead(500).end();
  let seen: string[] = [];
  let streamed: Promise<number>[] = [];

  before(async () => {
    const d = await tempDir('tsbuild-limits-src-');
    dirs.push(d);
    src = await ContentStore.open(d);
    image = await buildTestImage(src, { tag: 'limits', bigLayers: 2, bigSize: 64 * 1024 });
    const port = await freePort();
    host = `127.0.0.1:${port}`;
    server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      handler(req, res);
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  beforeEach(() => {
    seen = [];
    streamed = [];
  });

  async function dest(): Promise<{ store: ContentStore; images: ImageStore }> {
    const d = await tempDir('tsbuild-limits-dst-');
    dirs.push(d);
    const store = await ContentStore.open(d);
    return { store, images: await ImageStore.open(store) };
  }
  const client = (extra: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient => new RegistryClient({ retries: 1, retryDelayMs: 5, ...extra });

  /** Serves `manifest` for any tag and the image's blobs from `src`; `blob` can override one. */
  function honest(manifest: Buffer, blob?: (digest: string, res: http.ServerResponse) => boolean): http.RequestListener {
    return (req, res) => {
      const url = req.url ?? '';
      if (/\/manifests\//.test(url)) return void res.writeHead(200, { 'content-type': MediaTypes.ociManifest, 'content-length': String(manifest.length) }).end(manifest);
      const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
      if (m === null) return void res.writeHead(404).end();
      if (blob?.(m[1]!, res) === true) return;
      void src.readBlob(m[1]! as `sha256:${string}`).then(
        (b) => res.writeHead(200, { 'content-length': String(b.length) }).end(b),
        () => res.writeHead(404).end(),
      );
    };
  }

  test('T22: a 10 MiB token response is cut at 1 MiB, named as the token response', async () => {
    handler = (req, res) => {
      if ((req.url ?? '').startsWith('/token')) {
        res.writeHead(200, { 'content-type': 'application/json' }); // chunked: no Content-Length to refuse up front
        streamed.push(stream(res, 10 * MiB));
        return;
      }
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="limits"` }).end();
    };
    const dst = await dest();
    await assert.rejects(client().pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof ContentTooLargeError && err.limit === MiB && /token response/.test(err.message));
    const sent = await Promise.all(streamed);
    assert.ok(sent.every((n) => n < 10 * MiB), `the client read the whole token body (${sent.join(', ')} bytes)`);
  });

  test('T22: an endless error body on 404 is cut at 1 MiB; the error keeps the status', async () => {
    handler = (_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      streamed.push(stream(res, 500 * MiB));
    };
    const dst = await dest();
    await assert.rejects(client().pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof RegistryResponseError && err.message.length < 4096 && /404/.test(err.message));
    const sent = await Promise.all(streamed);
    assert.ok(sent.length > 0 && sent.every((n) => n < 64 * MiB), `expected each error body to be dropped near 1 MiB, the server wrote ${sent.join(', ')} bytes`);
  });

  test('T22: a config descriptor above 4 MiB is refused before its blob is requested', async () => {
    const m = structuredClone(image.manifest) as unknown as { config: { size: number; digest: string } };
    m.config.size = 5 * MiB;
    handler = honest(Buffer.from(JSON.stringify(m)));
    const dst = await dest();
    await assert.rejects(client().pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof ContentTooLargeError && err.limit === 4 * MiB);
    assert.ok(!seen.some((s) => s.includes(m.config.digest)), `the config blob was requested: ${seen.join(', ')}`);
  });

  test('T22: a 50 MiB config whose descriptor claims its real (small) size is refused without reading it all', async () => {
    const configDigest = image.manifest.config.digest;
    handler = honest(Buffer.from(JSON.stringify(image.manifest)), (digest, res) => {
      if (digest !== configDigest) return false;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      streamed.push(stream(res, 50 * MiB, 0x7b));
      return true;
    });
    const dst = await dest();
    await assert.rejects(client().pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof SizeMismatchError);
    const sent = await Promise.all(streamed);
    assert.ok(sent.length > 0 && sent.every((n) => n < 50 * MiB), `the client read a whole 50 MiB config (${sent.join(', ')} bytes)`);
    assert.equal(await dst.store.has(configDigest), false);
  });

  test('T22: a manifest nesting 1,000,000 levels deep is refused (InvalidManifestError), not a stack overflow', async () => {
    // an object (so it gets past the top-level type check) holding the deep array
    handler = honest(Buffer.from(`{"schemaVersion":2,"mediaType":"${MediaTypes.ociManifest}","annotations":{"x":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}}`));
    const dst = await dest();
    await assert.rejects(client().pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof InvalidManifestError);
  });

  test('T25: a redirect loop stops at 10 hops', async () => {
    handler = (req, res) => {
      const n = Number(new URL(req.url ?? '/', `http://${host}`).searchParams.get('hop') ?? '0');
      res.writeHead(302, { location: `/v2/l/app/manifests/v1?hop=${n + 1}` }).end();
    };
    const dst = await dest();
    await assert.rejects(client({ retries: 0 }).pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof RegistryProtocolError && /at most 10 redirects/.test(err.message));
    assert.equal(seen.length, 10, `expected 10 requests before giving up, found ${seen.length}`);
  });

  test('T25: a registry that is neither loopback nor marked insecure is only spoken to over https', () => {
    assert.equal(endpointFor('registry.example.com', []).base, 'https://registry.example.com');
    assert.equal(endpointFor('registry.example.com:5000', ['other.example.com:5000']).base, 'https://registry.example.com:5000');
    assert.equal(endpointFor('10.1.2.3:5000', []).base, 'https://10.1.2.3:5000');
    assert.equal(endpointFor('registry.example.com:5000', ['registry.example.com:5000']).base, 'http://registry.example.com:5000');
    assert.equal(endpointFor('127.0.0.1:5000', []).base, 'http://127.0.0.1:5000');
  });

  /** A token realm on this server: /token answers `token(n)` for the n-th token request. */
  function tokenRegistry(token: (n: number) => { status: number; body: string }, accept: (auth: string | undefined, n: number) => boolean, manifest?: Buffer): { tokenQueries: URLSearchParams[] } {
    const tokenQueries: URLSearchParams[] = [];
    let registryHits = 0;
    const serve = manifest === undefined ? undefined : honest(manifest);
    handler = (req, res) => {
      const url = new URL(req.url ?? '/', `http://${host}`);
      if (url.pathname === '/token') {
        tokenQueries.push(url.searchParams);
        const t = token(tokenQueries.length);
        return void res.writeHead(t.status, { 'content-type': 'application/json' }).end(t.body);
      }
      registryHits++;
      if (!accept(req.headers.authorization, registryHits) || serve === undefined) {
        return void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="reg",scope="repository:l/app:pull,push"` }).end();
      }
      serve(req, res);
    };
    return { tokenQueries };
  }

  test('T26: a token response without a token ({}) is an error', async () => {
    tokenRegistry(() => ({ status: 200, body: '{}' }), () => false);
    const dst = await dest();
    await assert.rejects(client().pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof RegistryAuthError && /token/.test(err.message));
  });

  test('T26: a token that works once and then never again fails without a retry loop', async () => {
    const { tokenQueries } = tokenRegistry((n) => ({ status: 200, body: JSON.stringify({ token: `t${n}`, expires_in: 300 }) }), (auth, hit) => auth === 'Bearer t1' && hit <= 2, Buffer.from(JSON.stringify(image.manifest)));
    const dst = await dest();
    await assert.rejects(client().pull(dst.store, dst.images, `${host}/l/app:v1`), (err: unknown) => err instanceof RegistryAuthError);
    // one token per request that met a 401 at most: the manifest GET, then each blob GET once more
    const requests = seen.filter((s) => !s.includes('/token')).length;
    assert.ok(requests <= 2 + 2 * (1 + image.manifest.layers.length), `expected a bounded number of registry requests, found ${requests}`);
    assert.ok(tokenQueries.length <= 1 + (1 + image.manifest.layers.length), `expected at most one token fetch per failing request, found ${tokenQueries.length}`);
  });

  test('T26: a pull asks only for pull scope (even when the challenge offers push) and reuses its token for every blob', async () => {
    const { tokenQueries } = tokenRegistry((n) => ({ status: 200, body: JSON.stringify({ token: `t${n}`, expires_in: 300 }) }), (auth) => auth === 'Bearer t1', Buffer.from(JSON.stringify(image.manifest)));
    const dst = await dest();
    const pulled = await client().pull(dst.store, dst.images, `${host}/l/app:v1`);
    assert.equal(pulled.manifest.layers.length, image.manifest.layers.length);
    assert.equal(tokenQueries.length, 1, 'one token for the (registry, scope) pair');
    assert.deepEqual(tokenQueries[0]!.getAll('scope'), ['repository:l/app:pull']);
    assert.equal(tokenQueries[0]!.get('service'), 'reg');
  });

  test('T25: a redirect from https to http is refused before anything (or any credential) reaches the http side', async () => {
    const plainHits: string[] = [];
    const plain = http.createServer((req, res) => {
      plainHits.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
      res.writeHead(200).end('plain');
    });
    const plainPort = await freePort();
    await new Promise<void>((r) => plain.listen(plainPort, '127.0.0.1', r));
    const tlsPort = await freePort();
    const secure = https.createServer({ key: TEST_TLS_KEY, cert: TEST_TLS_CERT }, (req, res) => {
      if (req.url === '/ok') return void res.writeHead(200).end('secure');
      if (req.url === '/same') return void res.writeHead(307, { location: '/ok' }).end();
      res.writeHead(302, { location: `http://127.0.0.1:${plainPort}/v2/l/app/blobs/x` }).end();
    });
    await new Promise<void>((r) => secure.listen(tlsPort, '127.0.0.1', r));
    // The self-signed certificate is accepted for this test only (the transport takes no CA option).
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    const dir = await tempDir('tsbuild-limits-creds-');
    dirs.push(dir);
    try {
      const transport = new RegistryTransport({ credentials: new DockerCredentials(dir), insecureRegistries: [], retries: 0, retryDelayMs: 5, userAgent: 'tsbuild-test', signal: undefined });
      const endpoint = { domain: `127.0.0.1:${tlsPort}`, base: `https://127.0.0.1:${tlsPort}`, insecure: false };
      const base = { endpoint, scopes: [], method: 'GET' as const, noChallenge: true, auth: 'Bearer secret-token' };
      // the control: an https → https redirect is followed (so TLS itself works here)
      const ok = await transport.request({ ...base, url: `https://127.0.0.1:${tlsPort}/same` });
      assert.equal(ok.status, 200);
      await discard(ok);
      await assert.rejects(transport.request({ ...base, url: `https://127.0.0.1:${tlsPort}/v2/l/app/blobs/x` }), (err: unknown) => err instanceof RegistryProtocolError && /refusing a redirect from https to http/.test(err.message));
      assert.deepEqual(plainHits, [], 'the downgraded URL was requested');
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
      secure.closeAllConnections();
      plain.closeAllConnections();
      await new Promise((r) => secure.close(r));
      await new Promise((r) => plain.close(r));
    }
  });
});
