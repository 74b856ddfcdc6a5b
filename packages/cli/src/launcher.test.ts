/**
 * bin/tsbuild.js as a user's shell starts it (through its shebang): NODE_EXTRA_CA_CERTS is
 * deferred to tsbuild's own TLS connections, and the bundle's V8 code cache survives a
 * bad cache file.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hasCommand, REPO_ROOT, requirePrereq, requireRoot, tsbuild, type CliResult } from './test/cli-helpers.js';

/** The launcher executed through its shebang, with exactly `env` on top of PATH and HOME. */
const viaShebang = (root: string, args: readonly string[], env: Record<string, string>): Promise<CliResult> => tsbuild(root, args, { env, viaShebang: true, cleanEnv: true });

describe('launcher: NODE_EXTRA_CA_CERTS reaches tsbuild’s own TLS connections', { concurrency: false }, () => {
  let dir = '';
  let server: Server | undefined;
  let url = '';
  let ok = false;

  before(async (t) => {
    ok = requireRoot(t) && requirePrereq(t, hasCommand('openssl'), 'openssl', 'openssl');
    if (!ok) return;
    dir = await mkdtemp(join(tmpdir(), 'tsbuild-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const srv = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      if (req.url === '/hello.txt') res.end('hello over tls\n');
      else res.writeHead(404).end();
    });
    server = srv;
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(srv.address() as AddressInfo).port}/hello.txt`;
    await writeFile(join(dir, 'Dockerfile'), `FROM scratch\nADD ${url} /hello.txt\n`);
  });

  after(async () => {
    server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ADD of an https URL signed by a CA that only NODE_EXTRA_CA_CERTS names', async () => {
    if (!ok) return;
    const trusted = await viaShebang(join(dir, 'store'), ['build', '--progress', 'plain', '-t', 'tls:one', '--no-cache', dir], { NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') });
    assert.equal(trusted.code, 0, trusted.stderr);
    const untrusted = await viaShebang(join(dir, 'store'), ['build', '--progress', 'plain', '-t', 'tls:two', '--no-cache', dir], {});
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /self[- ]signed certificate/);
  });

  it('an unreadable NODE_EXTRA_CA_CERTS file is a warning, as in Node, and the CA stays untrusted', async () => {
    if (!ok) return;
    const r = await viaShebang(join(dir, 'store'), ['build', '--progress', 'plain', '-t', 'tls:three', '--no-cache', dir], { NODE_EXTRA_CA_CERTS: join(dir, 'missing.pem') });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Ignoring extra certs from `.*missing\.pem`, load failed/);
    assert.match(r.stderr, /self[- ]signed certificate/);
  });
});

describe('launcher: the bundle’s code cache', () => {
  const bundle = join(REPO_ROOT, 'packages', 'cli', 'bundle');

  it('a garbage cache file is rejected by V8, the command works, and the cache is rewritten', async (t) => {
    const stampFile = join(bundle, 'stamp.json');
    // npm test bundles before it runs the tests: only a direct run of this file can lack it
    const unbundled = (why: string): void => {
      if (process.env.CI === 'true') assert.fail(`${why}: npm test makes the bundle first`);
      t.skip(why);
    };
    if (!existsSync(stampFile)) {
      unbundled('no CLI bundle (npm run build makes it)');
      return;
    }
    const parse = ['parse', join(REPO_ROOT, 'fixtures', 'hello', 'Dockerfile')];
    const probe = await viaShebang('/nonexistent-root', parse, {});
    assert.equal(probe.code, 0, probe.stderr);
    const { bundleDigest, inputs } = JSON.parse(await readFile(stampFile, 'utf8')) as { bundleDigest?: string; inputs: Record<string, number> };
    // as the launcher decides: the bundle is used while the packages' dist/ is what it was made from
    const bin = join(REPO_ROOT, 'packages', 'cli', 'bin');
    const fresh = Object.entries(inputs).every(([rel, mtime]) => statSync(join(bin, rel)).mtimeMs === mtime);
    const caches = (await readdir(bundle)).filter((f) => f.startsWith(`main.cjs.${bundleDigest}.`) && f.endsWith('.other.v8cache'));
    if (!fresh || bundleDigest === undefined || caches.length === 0) {
      unbundled('the bundle is stale (dist/ was rebuilt after it): the launcher runs dist/');
      return;
    }
    const file = join(bundle, caches[0]!);
    const garbage = Buffer.alloc(4096, 0x5a);
    await writeFile(file, garbage);
    const r = await viaShebang('/nonexistent-root', parse, {});
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, probe.stdout);
    const after = await readFile(file);
    assert.notDeepEqual(after, garbage, 'the rejected cache was replaced');
    assert.ok(after.length > 1024);
  });
});
