/**
 * Memory while the body caps hold (catalog T22, the RSS budget): a separate Node process
 * pulls from a hostile server (an endless chunked manifest, a 10 MiB token response, a
 * 500 MiB error body, a 50 MiB config behind a small descriptor) and reports its peak
 * RSS, which must stay under 200 MiB; each pull fails with its cap's error.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { MediaTypes } from '../image/types.js';
import { buildTestImage, freePort, tempDir } from '../registry/test-helpers/registry.js';

const MiB = 1024 * 1024;
const BUDGET = 200 * MiB;
const DIST = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

/** Streams `total` bytes (chunked) with backpressure until done or the client goes away. */
function stream(res: http.ServerResponse, total: number, fill: number): void {
  const chunk = Buffer.alloc(64 * 1024, fill);
  let written = 0;
  const pump = (): void => {
    while (written < total && !res.destroyed) {
      written += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    if (!res.destroyed) res.end();
  };
  pump();
}

// argv: registry host, then one repository per case; prints one JSON line per case and the peak RSS
const CHILD = `
const { ContentStore, ImageStore, RegistryClient } = await import(${JSON.stringify(pathToFileURL(DIST).href)});
const [dir, host, ...repos] = process.argv.slice(1);
const store = await ContentStore.open(dir);
const images = await ImageStore.open(store);
for (const repo of repos) {
  const client = new RegistryClient({ retries: 0, retryDelayMs: 5 });
  try {
    await client.pull(store, images, host + '/' + repo + ':v1');
    console.log(JSON.stringify({ repo, error: null }));
  } catch (err) {
    console.log(JSON.stringify({ repo, error: err.name + ': ' + String(err.message).slice(0, 200) }));
  }
}
console.log(JSON.stringify({ maxRss: process.resourceUsage().maxRSS * 1024 }));
`;

test('T22: the caps hold within a 200 MiB RSS budget (endless manifest, 10 MiB token, 500 MiB error body, 50 MiB config)', async (t) => {
  const srcDir = await tempDir('tsbuild-rss-src-');
  const dstDir = await tempDir('tsbuild-rss-dst-');
  const src = await ContentStore.open(srcDir);
  const image = await buildTestImage(src, { tag: 'rss', bigLayers: 1, bigSize: 64 * 1024 });
  const manifest = await src.readBlob(image.manifestDigest);
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    const repo = url.split('/')[2] ?? '';
    if (url.startsWith('/token')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return stream(res, 10 * MiB, 0x20);
    }
    if (repo === 'token') return void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="rss"` }).end();
    if (repo === 'manifest' && url.includes('/manifests/')) {
      res.writeHead(200, { 'content-type': MediaTypes.ociManifest });
      return stream(res, 100 * 1024 * MiB, 0x20);
    }
    if (repo === 'error') {
      res.writeHead(404, { 'content-type': 'application/json' });
      return stream(res, 500 * MiB, 0x20);
    }
    if (url.includes('/manifests/')) return void res.writeHead(200, { 'content-type': MediaTypes.ociManifest, 'content-length': String(manifest.length) }).end(manifest);
    if (url.endsWith(image.manifest.config.digest)) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return stream(res, 50 * MiB, 0x7b);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  try {
    const repos = ['manifest', 'token', 'error', 'config'];
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, ['--input-type=module', '-e', CHILD, dstDir, host, ...repos.map((r) => `${r}/app`)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let s = '';
      p.stdout.on('data', (d: Buffer) => (s += d.toString()));
      p.on('error', reject);
      p.on('close', (code) => (code === 0 ? resolve(s) : reject(new Error(`the pulling process exited ${code}:\n${s}`))));
    });
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { repo?: string; error?: string | null; maxRss?: number });
    const errors = Object.fromEntries(lines.filter((l) => l.repo !== undefined).map((l) => [l.repo!.split('/')[0]!, l.error]));
    assert.match(errors.manifest ?? '', /ContentTooLargeError/, 'the endless manifest');
    assert.match(errors.token ?? '', /ContentTooLargeError.*token response/, 'the 10 MiB token response');
    assert.match(errors.error ?? '', /RegistryResponseError.*404/, 'the 500 MiB error body');
    assert.match(errors.config ?? '', /SizeMismatchError/, 'the 50 MiB config');
    const maxRss = lines.at(-1)?.maxRss ?? Number.NaN;
    t.diagnostic(`peak RSS of the pulling process: ${(maxRss / MiB).toFixed(1)} MiB`);
    assert.ok(maxRss < BUDGET, `peak RSS ${(maxRss / MiB).toFixed(0)} MiB, budget ${BUDGET / MiB} MiB`);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(srcDir, { recursive: true, force: true });
    await rm(dstDir, { recursive: true, force: true });
  }
});
