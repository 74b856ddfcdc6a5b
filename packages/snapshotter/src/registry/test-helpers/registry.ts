// Test-only helpers: a real docker-registry on loopback, a counting (optionally
// token-auth) proxy in front of it, and small images built with writeLayer/writeImage.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { TestContext } from 'node:test';
import tar from 'tar-stream';
import type { ContentStore } from '../../content/content-store.js';
import { writeImage } from '../../image/image.js';
import type { ImageConfigFile, StoredImage } from '../../image/types.js';
import { writeLayer } from '../../layer/write-layer.js';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
export const SKOPEO_BIN = '/usr/bin/skopeo';
export const HTPASSWD_BIN = '/usr/bin/htpasswd';

const strict = process.env.CI === 'true' || process.getuid?.() === 0;

/** True when `path` exists; otherwise fails (CI or root) or skips naming the Debian package. */
export function requireTool(t: TestContext, path: string, debianPackage: string): boolean {
  if (existsSync(path)) return true;
  const reason = `${path} not found: install the Debian package "${debianPackage}"`;
  if (strict) throw new Error(reason);
  t.skip(reason);
  return false;
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningRegistry {
  /** 127.0.0.1:<port> */
  host: string;
  root: string;
  stop(): Promise<void>;
}

/** Starts /usr/bin/docker-registry on a free loopback port, optionally with htpasswd basic auth. */
export async function startRegistry(opts: { user?: string; password?: string } = {}): Promise<RunningRegistry> {
  const root = await tempDir('tsbuild-registry-');
  const port = await freePort();
  let auth = '';
  if (opts.user !== undefined) {
    const r = spawnSync(HTPASSWD_BIN, ['-nbB', opts.user, opts.password ?? ''], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`htpasswd failed: ${r.stderr}`);
    await writeFile(join(root, 'htpasswd'), r.stdout.trim() + '\n');
    auth = `auth:\n  htpasswd:\n    realm: tsbuild-test\n    path: ${join(root, 'htpasswd')}\n`;
  }
  const config = `version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${join(root, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${auth}`;
  await writeFile(join(root, 'config.yml'), config);
  const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', join(root, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    if (stderr.length < 200_000) stderr += c.toString();
  });
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${stderr.slice(-2000)}`);
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not answer on ${host}: ${stderr.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    root,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(root, { recursive: true, force: true });
    },
  };
}

export interface ProxyRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  range: string | undefined;
}

export interface Proxy {
  host: string;
  requests: ProxyRequest[];
  tokenRequests: URLSearchParams[];
  stop(): Promise<void>;
}

/**
 * A Node HTTP proxy in front of `upstream` that records every request. With `token`,
 * it is also a token-auth front end: /v2/* needs `Bearer <token>` whose scopes cover
 * the request (else 401 with a Bearer challenge), and /token issues tokens to clients
 * presenting the given basic credentials.
 */
export async function startProxy(upstream: string, opts: { token?: { user: string; password: string } } = {}): Promise<Proxy> {
  const requests: ProxyRequest[] = [];
  const tokenRequests: URLSearchParams[] = [];
  const tokens = new Map<string, Set<string>>();
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${host}`);
    requests.push({ method: req.method ?? '', path: url.pathname + url.search, authorization: req.headers.authorization, range: req.headers.range });
    if (opts.token !== undefined) {
      if (url.pathname === '/token') {
        tokenRequests.push(url.searchParams);
        const expected = `Basic ${Buffer.from(`${opts.token.user}:${opts.token.password}`).toString('base64')}`;
        if (req.headers.authorization !== expected) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
          return;
        }
        const token = randomBytes(16).toString('hex');
        const granted = new Set<string>();
        for (const s of url.searchParams.getAll('scope')) {
          const [type, name, actions] = s.split(':');
          for (const a of (actions ?? '').split(',')) granted.add(`${type}:${name}:${a}`);
        }
        tokens.set(token, granted);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
        return;
      }
      if (url.pathname.startsWith('/v2/') && url.pathname !== '/v2/') {
        const m = /^\/v2\/(.+)\/(blobs|manifests|tags)\//.exec(url.pathname);
        const repo = m?.[1] ?? '';
        const need = [`repository:${repo}:${req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'push'}`];
        const from = url.searchParams.get('from');
        if (from !== null) need.push(`repository:${from}:pull`);
        const granted = tokens.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
        if (granted === undefined || !need.every((n) => granted.has(n))) {
          // Like distribution's token auth: a mount without pull access on `from` just becomes an upload.
          const scope = need.map((n) => n.replace(/:(pull|push)$/, (a) => (a === ':push' ? ':pull,push' : a)))[0];
          res.writeHead(401, {
            'www-authenticate': `Bearer realm="http://${host}/token",service="tsbuild-test",scope="${scope}"`,
            'content-type': 'application/json',
          });
          res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
          req.resume();
          return;
        }
      }
    }
    const headers = { ...req.headers, host: upstream };
    delete headers.authorization;
    const up = http.request({ host: upstream.split(':')[0], port: Number(upstream.split(':')[1]), method: req.method, path: req.url, headers }, (ures) => {
      const out = { ...ures.headers };
      if (typeof out.location === 'string') out.location = out.location.replace(`http://${upstream}`, `http://${host}`);
      res.writeHead(ures.statusCode ?? 502, out);
      ures.pipe(res);
    });
    up.on('error', (err) => {
      res.destroy(err);
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    host,
    requests,
    tokenRequests,
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function packTar(files: { name: string; data: Buffer }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const f of files) {
    await new Promise<void>((res, rej) => pack.entry({ name: f.name, mode: 0o644, mtime: new Date(0), size: f.data.length }, f.data, (e) => (e ? rej(e) : res())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Deterministic pseudo-random bytes (incompressible enough for real layer sizes). */
export function noise(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(size / 4) * 4);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, size);
}

/**
 * Builds an image with one small text layer and `bigLayers` layers of `bigSize` random
 * bytes, via writeLayer (gzip unless told) and writeImage.
 */
export async function buildTestImage(
  store: ContentStore,
  opts: { tag?: string; architecture?: string; variant?: string; bigLayers?: number; bigSize?: number; compression?: 'gzip' | 'zstd' | 'uncompressed' } = {},
): Promise<StoredImage> {
  const tag = opts.tag ?? 'v1';
  const layers = [];
  const small = await packTar([{ name: 'hello.txt', data: Buffer.from(`hello from ${tag} ${opts.architecture ?? 'amd64'}\n`) }]);
  layers.push(await writeLayer(Readable.from([small]), store, { compression: opts.compression ?? 'gzip' }));
  for (let i = 0; i < (opts.bigLayers ?? 1); i++) {
    const t = await packTar([{ name: `data/blob-${i}.bin`, data: noise(opts.bigSize ?? 300 * 1024, i + 1 + tag.length * 31) }]);
    layers.push(await writeLayer(Readable.from([t]), store, { compression: opts.compression ?? 'gzip', level: 1 }));
  }
  const config: ImageConfigFile = {
    created: '2024-01-01T00:00:00Z',
    architecture: opts.architecture ?? 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'], Labels: { tag } },
    rootfs: { type: 'layers', diff_ids: [] },
    history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
  };
  if (opts.variant !== undefined) config.variant = opts.variant;
  return writeImage(store, { config, layers });
}
