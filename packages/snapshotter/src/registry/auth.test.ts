// Authentication: docker config.json (auths, credHelpers, credsStore, DOCKER_CONFIG),
// Basic auth against docker-registry with htpasswd, and Bearer tokens from a token
// front end (a Node proxy) in front of docker-registry.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { RegistryAuthError } from '../errors.js';
import { ImageStore } from '../image/image-store.js';
import type { StoredImage } from '../image/types.js';
import { RegistryClient } from './client.js';
import { DockerCredentials } from './credentials.js';
import { buildTestImage, freePort, HTPASSWD_BIN, REGISTRY_BIN, requireTool, startProxy, startRegistry, tempDir, type Proxy, type RunningRegistry } from './test-helpers/registry.js';
import { endpointFor, parseChallenges } from './transport.js';

const cleanup: string[] = [];
after(async () => {
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});

async function dir(prefix: string): Promise<string> {
  const d = await tempDir(prefix);
  cleanup.push(d);
  return d;
}

async function configDir(config: unknown): Promise<string> {
  const d = await dir('tsbuild-dockercfg-');
  await writeFile(join(d, 'config.json'), JSON.stringify(config));
  return d;
}

async function stores(): Promise<{ store: ContentStore; images: ImageStore }> {
  const store = await ContentStore.open(await dir('tsbuild-auth-store-'));
  return { store, images: await ImageStore.open(store) };
}

/** Puts a docker-credential-<name> script on PATH that answers for `server` and logs its stdin. */
async function installHelper(name: string, server: string, user: string, secret: string): Promise<{ log: string }> {
  const bin = await dir('tsbuild-helper-');
  const log = join(bin, 'stdin.log');
  const script = `#!/bin/sh
[ "$1" = get ] || exit 3
read -r server
printf '%s\\n' "$server" >> '${log}'
if [ "$server" = '${server}' ]; then
  printf '{"ServerURL":"%s","Username":"${user}","Secret":"${secret}"}' "$server"
else
  echo "credentials not found in native keychain"
  exit 1
fi
`;
  await writeFile(join(bin, `docker-credential-${name}`), script);
  await chmod(join(bin, `docker-credential-${name}`), 0o755);
  process.env.PATH = `${bin}:${process.env.PATH ?? ''}`;
  return { log };
}

describe('docker config credentials', () => {
  test('auths: base64 auth and username/password, keys normalised (scheme, path, hub aliases)', async () => {
    const d = await configDir({
      auths: {
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:s3:cret').toString('base64') },
        'http://reg.example:5000/v2/': { username: 'u', password: 'p' },
      },
    });
    const c = new DockerCredentials(d);
    assert.deepEqual(await c.get('docker.io'), { username: 'hub', password: 's3:cret' });
    assert.deepEqual(await c.get('reg.example:5000'), { username: 'u', password: 'p' });
    assert.equal(await c.get('other.example'), undefined);
  });

  test('DOCKER_CONFIG is respected; a missing config means anonymous', async () => {
    const d = await configDir({ auths: { 'env.example': { auth: Buffer.from('e:1').toString('base64') } } });
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = d;
    try {
      assert.deepEqual(await new DockerCredentials().get('env.example'), { username: 'e', password: '1' });
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
    }
    assert.equal(await new DockerCredentials(join(d, 'nope')).get('env.example'), undefined);
  });

  test('credHelpers win over credsStore, which wins over auths; "not found" falls back', async () => {
    const helper = await installHelper('tsbtest', 'helped.example', 'hu', 'hs');
    const store = await installHelper('tsbstore', 'https://index.docker.io/v1/', 'su', 'ss');
    const d = await configDir({
      credHelpers: { 'helped.example': 'tsbtest' },
      credsStore: 'tsbstore',
      auths: { 'plain.example': { auth: Buffer.from('pu:ps').toString('base64') } },
    });
    const c = new DockerCredentials(d);
    assert.deepEqual(await c.get('helped.example'), { username: 'hu', password: 'hs' });
    assert.deepEqual(await c.get('docker.io'), { username: 'su', password: 'ss' });
    assert.deepEqual(await c.get('plain.example'), { username: 'pu', password: 'ps' });
    assert.equal((await readFile(helper.log, 'utf8')).trim(), 'helped.example');
    assert.deepEqual((await readFile(store.log, 'utf8')).trim().split('\n'), ['https://index.docker.io/v1/', 'plain.example']);
  });

  test('docker.io goes to registry-1.docker.io over https; loopback and listed registries use http', () => {
    assert.equal(endpointFor('docker.io', []).base, 'https://registry-1.docker.io');
    assert.equal(endpointFor('localhost:5000', []).base, 'http://localhost:5000');
    assert.equal(endpointFor('127.0.0.5:80', []).base, 'http://127.0.0.5:80');
    assert.equal(endpointFor('[::1]:5000', []).base, 'http://[::1]:5000');
    assert.equal(endpointFor('reg.lan:5000', ['reg.lan:5000']).base, 'http://reg.lan:5000');
    assert.equal(endpointFor('reg.lan:5000', []).base, 'https://reg.lan:5000');
  });

  test('WWW-Authenticate parsing, and malformed challenges are errors', () => {
    assert.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"', 'r'), [
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } },
    ]);
    assert.deepEqual(parseChallenges('Basic realm="x \\"y\\""', 'r'), [{ scheme: 'basic', params: { realm: 'x "y"' } }]);
    assert.throws(() => parseChallenges('Bearer realm="https://x/token,service=reg', 'r'), RegistryAuthError);
    assert.throws(() => parseChallenges('Bearer realm="a" junk', 'r'), RegistryAuthError);
  });
});

describe('registry auth against docker-registry', () => {
  let basic: RunningRegistry | undefined;
  let plain: RunningRegistry | undefined;
  let tokenProxy: Proxy;
  let src: { store: ContentStore; images: ImageStore };
  let image: StoredImage;

  before(async () => {
    if (!existsSync(REGISTRY_BIN) || !existsSync(HTPASSWD_BIN)) return; // each test fails (CI/root) or skips
    basic = await startRegistry({ user: 'alice', password: 'wonder land' });
    plain = await startRegistry();
    tokenProxy = await startProxy(plain.host, { token: { user: 'bob', password: 'builder' } });
    src = await stores();
    image = await buildTestImage(src.store, { tag: 'auth', bigLayers: 1 });
  });
  after(async () => {
    await tokenProxy?.stop();
    await basic?.stop();
    await plain?.stop();
  });

  test('basic auth (htpasswd): config.json auths work, none or wrong ones fail', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry') || !requireTool(t, HTPASSWD_BIN, 'apache2-utils')) return;
    const ref = `${basic!.host}/team/app:v1`;
    const good = await configDir({ auths: { [basic!.host]: { auth: Buffer.from('alice:wonder land').toString('base64') } } });
    const client = new RegistryClient({ dockerConfigDir: good });
    assert.equal((await client.push(src.store, image, ref)).digest, image.manifestDigest);
    const dst = await stores();
    assert.equal((await client.pull(dst.store, dst.images, ref)).manifestDigest, image.manifestDigest);

    const anon = new RegistryClient({ dockerConfigDir: await configDir({}) });
    await assert.rejects(anon.resolve(ref), (err: unknown) => err instanceof RegistryAuthError && /no credentials configured/.test(err.message));
    const wrong = new RegistryClient({ dockerConfigDir: await configDir({ auths: { [basic!.host]: { username: 'alice', password: 'nope' } } }) });
    await assert.rejects(wrong.resolve(ref), (err: unknown) => err instanceof RegistryAuthError && err.code === 'FAILED_PRECONDITION');
  });

  test('basic auth through a credential helper', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry') || !requireTool(t, HTPASSWD_BIN, 'apache2-utils')) return;
    await installHelper('tsbbasic', basic!.host, 'alice', 'wonder land');
    const client = new RegistryClient({ dockerConfigDir: await configDir({ credHelpers: { [basic!.host]: 'tsbbasic' } }) });
    const r = await client.resolve(`${basic!.host}/team/app:v1`);
    assert.equal(r.descriptor.digest, image.manifestDigest);
  });

  test('bearer tokens: scoped per repository and action, fetched with basic credentials, cached', async (t) => {
    if (!requireTool(t, REGISTRY_BIN, 'docker-registry')) return;
    const cfg = await configDir({ auths: { [tokenProxy.host]: { username: 'bob', password: 'builder' } } });
    const client = new RegistryClient({ dockerConfigDir: cfg });
    await client.push(src.store, image, `${tokenProxy.host}/tok/one:v1`);
    const pushScopes = tokenProxy.tokenRequests.map((p) => p.getAll('scope').join(' '));
    assert.deepEqual([...new Set(pushScopes)], ['repository:tok/one:pull,push']);
    assert.ok(tokenProxy.tokenRequests.every((p) => p.get('service') === 'tsbuild-test'));
    const fetchedForPush = tokenProxy.tokenRequests.length;
    assert.ok(fetchedForPush <= 2, `expected the token to be cached, found ${fetchedForPush} token requests`);

    // Mount from tok/one into tok/two needs pull on the source too: one token with both scopes.
    const events: string[] = [];
    const mounting = new RegistryClient({ dockerConfigDir: cfg, onProgress: (e) => events.push(e.action) });
    await mounting.push(src.store, image, `${tokenProxy.host}/tok/two:v1`);
    const scopes = tokenProxy.tokenRequests.slice(fetchedForPush).map((p) => p.getAll('scope').sort().join(' '));
    assert.ok(scopes.includes('repository:tok/one:pull repository:tok/two:pull,push'), JSON.stringify(scopes));
    assert.equal(events.filter((e) => e === 'mounted').length, 1 + image.manifest.layers.length);

    const pulls = tokenProxy.tokenRequests.length;
    const dst = await stores();
    const pulled = await client.pull(dst.store, dst.images, `${tokenProxy.host}/tok/two:v1`);
    assert.equal(pulled.manifestDigest, image.manifestDigest);
    assert.deepEqual(tokenProxy.tokenRequests.slice(pulls).map((p) => p.getAll('scope').join(' ')), ['repository:tok/two:pull']);

    const anon = new RegistryClient({ dockerConfigDir: await configDir({}) });
    await assert.rejects(anon.resolve(`${tokenProxy.host}/tok/two:v1`), (err: unknown) => err instanceof RegistryAuthError && /refused anonymous access/.test(err.message));
  });

  test('credentials are never sent to a plain-http token realm off loopback', async (t) => {
    // A registry (on loopback, so plain http is fine for it) whose realm is a non-loopback http URL.
    const port = await freePort();
    const server = http.createServer((req, res) => {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="http://auth.invalid/token",service="x"' }).end();
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const host = `127.0.0.1:${port}`;
    const client = new RegistryClient({ dockerConfigDir: await configDir({ auths: { [host]: { username: 'u', password: 'p' } } }), retries: 0 });
    await assert.rejects(client.resolve(`${host}/a/b:c`), (err: unknown) => err instanceof RegistryAuthError && /refusing to send credentials to the plain-http token realm/.test(err.message));
  });
});

