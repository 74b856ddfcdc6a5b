/**
 * Credentials over plain http to a non-loopback host (catalog T26 (f), and (a) against a
 * real listening host): the test makes its own network namespace joined to this one by
 * a veth pair (addresses from the benchmarking range 198.18.0.0/15), runs a small
 * recording registry inside it, and tears both down after. Root only (`ip netns`); under
 * CI a missing prerequisite fails the test, naming it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { RegistryAuthError } from '../errors.js';
import { RegistryClient } from '../registry/client.js';
import { DockerCredentials } from '../registry/credentials.js';
import { RegistryTransport } from '../registry/transport.js';
import { freePort } from '../registry/test-helpers/registry.js';

const IP = '/usr/sbin/ip';
const strict = process.env.CI === 'true';

/** What the namespaced server saw: one line per request, or per non-HTTP (e.g. TLS) connection. */
interface NsSeen {
  method?: string;
  url?: string;
  auth?: string;
  clientError?: string;
}

// The registry inside the namespace: a Basic challenge without credentials, 200 with any.
const SERVER = `
const http = require('node:http');
const [host, port] = process.argv.slice(1);
const s = http.createServer((req, res) => {
  console.log(JSON.stringify({ method: req.method, url: req.url, auth: req.headers.authorization }));
  if (req.headers.authorization === undefined) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="ns"' }).end();
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t"}');
});
s.on('clientError', (err, sock) => { console.log(JSON.stringify({ clientError: err.code ?? err.message })); sock.destroy(); });
s.listen(Number(port), host, () => console.log(JSON.stringify({ listening: true })));
`;

function ip(...args: string[]): { ok: boolean; err: string } {
  const r = spawnSync(IP, args, { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, err: `${r.stderr ?? ''}${r.error?.message ?? ''}`.trim() };
}

describe('credentials and plain http to a non-loopback host (T26 f)', { concurrency: false }, () => {
  // short unique names (interface names are at most 15 bytes) and a /30 of 198.19.x.0
  const id = process.pid % 10000;
  const ns = `tsbreg${id}`;
  const hostIf = `tsbh${id}`;
  const nsIf = `tsbn${id}`;
  const octet = 1 + (process.pid % 250);
  const hostAddr = `198.19.${octet}.1`;
  const nsAddr = `198.19.${octet}.2`;
  const port = 5000;
  const nsHost = `${nsAddr}:${port}`;
  let missing = '';
  let server: ChildProcess | undefined;
  const seen: NsSeen[] = [];
  let configDir = '';

  before(async () => {
    if (process.getuid?.() !== 0) missing = 'root (to create a network namespace)';
    else if (!existsSync(IP)) missing = `${IP} (install the Debian package "iproute2")`;
    if (missing !== '') return;
    const steps: string[][] = [
      ['netns', 'add', ns],
      ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf],
      ['link', 'set', nsIf, 'netns', ns],
      ['addr', 'add', `${hostAddr}/30`, 'dev', hostIf],
      ['link', 'set', hostIf, 'up'],
      ['netns', 'exec', ns, IP, 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf],
      ['netns', 'exec', ns, IP, 'link', 'set', nsIf, 'up'],
    ];
    for (const s of steps) {
      const r = ip(...s);
      if (!r.ok) {
        missing = `a network namespace (ip ${s.join(' ')}: ${r.err})`;
        return;
      }
    }
    server = spawn(IP, ['netns', 'exec', ns, process.execPath, '-e', SERVER, nsAddr, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: server.stdout! });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the namespaced server did not start in 10 s')), 10_000);
      server!.once('exit', (code) => reject(new Error(`the namespaced server exited ${code}`)));
      lines.on('line', (l) => {
        const v = JSON.parse(l) as NsSeen & { listening?: boolean };
        if (v.listening === true) {
          clearTimeout(timer);
          resolve();
        } else seen.push(v);
      });
    });
    configDir = await mkdtemp(join(tmpdir(), 'tsbuild-netns-cfg-'));
    await writeFile(join(configDir, 'config.json'), JSON.stringify({ auths: { [nsHost]: { username: 'alice', password: 'ns-password' } } }));
  });
  after(async () => {
    if (server !== undefined && server.exitCode === null) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGKILL');
      await exited;
    }
    // deleting the namespace removes its end of the pair, and with it the host end
    ip('netns', 'del', ns);
    ip('link', 'del', hostIf);
    if (configDir !== '') await rm(configDir, { recursive: true, force: true });
  });

  function prereq(t: { skip: (why: string) => void }): boolean {
    if (missing === '') return true;
    if (strict) throw new Error(`T26 (f) needs ${missing}`);
    t.skip(`needs ${missing}`);
    return false;
  }
  const credsSent = (): NsSeen[] => seen.filter((s) => s.auth !== undefined);
  /** The server reports through a pipe: waits until it has reported `n` events (at most 5 s), then 100 ms for any late one. */
  async function reported(n: number): Promise<void> {
    for (const deadline = Date.now() + 5000; seen.length < n && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
  }

  test('a Basic challenge over plain http from a non-loopback host not marked insecure: credentials are refused', async (t) => {
    if (!prereq(t)) return;
    seen.length = 0;
    const transport = new RegistryTransport({ credentials: new DockerCredentials(configDir), insecureRegistries: [], retries: 0, retryDelayMs: 5, userAgent: 'tsbuild-test', signal: undefined });
    // an http endpoint that is not insecure is what the refusal guards (endpointFor never makes one: below)
    const endpoint = { domain: nsHost, base: `http://${nsHost}`, insecure: false };
    await assert.rejects(transport.request({ endpoint, scopes: [], method: 'GET', url: `http://${nsHost}/v2/l/app/manifests/v1` }), (err: unknown) => err instanceof RegistryAuthError && /refusing to send basic credentials over plain http/.test(err.message));
    await reported(1);
    assert.deepEqual(seen, [{ method: 'GET', url: '/v2/l/app/manifests/v1' }], 'expected one anonymous request (answered by the challenge) and nothing after it');
  });

  test('a non-loopback registry is spoken to over https unless marked insecure; marked, it gets the Basic login', async (t) => {
    if (!prereq(t)) return;
    seen.length = 0;
    // not marked: https to a plain-http server fails in the TLS handshake, and no HTTP request (no credential) arrives
    await assert.rejects(new RegistryClient({ retries: 0, dockerConfigDir: configDir }).resolve(`${nsHost}/l/app:v1`));
    await reported(1);
    assert.ok(seen.length >= 1 && seen.every((s) => s.clientError !== undefined), `expected only a failed TLS handshake, found ${JSON.stringify(seen)}`);
    // marked insecure (the explicit opt-in): the same server is reached and answered with the login (the control)
    seen.length = 0;
    await assert.rejects(new RegistryClient({ retries: 0, dockerConfigDir: configDir, insecureRegistries: [nsHost] }).resolve(`${nsHost}/l/app:v1`));
    await reported(2);
    assert.equal(seen[0]?.auth, undefined);
    assert.equal(credsSent()[0]?.auth, `Basic ${Buffer.from('alice:ns-password').toString('base64')}`);
  });

  test('T26 (a): a plain-http token realm on a non-loopback host gets no request when credentials are configured', async (t) => {
    if (!prereq(t)) return;
    seen.length = 0;
    const regPort = await freePort();
    const reg = http.createServer((_req, res) => void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${nsHost}/token",service="reg"` }).end());
    await new Promise<void>((r) => reg.listen(regPort, '127.0.0.1', r));
    try {
      const dir = await mkdtemp(join(tmpdir(), 'tsbuild-netns-cfg2-'));
      await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [`127.0.0.1:${regPort}`]: { username: 'alice', password: 'ns-password' } } }));
      try {
        await assert.rejects(new RegistryClient({ retries: 0, dockerConfigDir: dir }).resolve(`127.0.0.1:${regPort}/l/app:v1`), (err: unknown) => err instanceof RegistryAuthError && /plain-http token realm/.test(err.message));
        // anonymous (no credentials configured): the realm may be asked, without any
        await assert.rejects(new RegistryClient({ retries: 0, dockerConfigDir: configDir }).resolve(`127.0.0.1:${regPort}/l/app:v1`));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      await reported(1);
      assert.ok(seen.length >= 1, 'the anonymous token request should have reached the namespaced host (the control)');
      assert.deepEqual(credsSent(), [], 'a credential went to the plain-http realm');
    } finally {
      reg.closeAllConnections();
      await new Promise((r) => reg.close(r));
    }
  });
});
