// Registries from the command line, against Debian's docker-registry on loopback behind a
// counting proxy: push, pull, FROM pulled automatically, --pull after the tag moved, and the
// registry build cache (export on one store, import on a clean one: every step CACHED, the
// same digest, and only the final image's layers downloaded).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REGISTRY_BIN, startProxy, startRegistry, type Proxy, type RunningRegistry } from '../../snapshotter/src/registry/test-helpers/registry.js';
import { hasCommand, requirePrereq, requireRoot, storeWithBusybox, tsbuild, type CliResult } from './test/cli-helpers.js';

const MULTI_STAGE = `ARG BASE
FROM \${BASE} AS base
WORKDIR /app

FROM base AS build
RUN echo built-artifact > /app/artifact.txt && head -c 300000 /dev/urandom > /app/big.bin
COPY input.txt /app/input.txt

FROM base
COPY context.txt /app/context.txt
COPY --from=build /app/artifact.txt /app/artifact.txt
RUN cat /app/artifact.txt /app/context.txt > /app/out.txt
`;

const EPOCH = { SOURCE_DATE_EPOCH: '0' };

function ok(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stderr.slice(-3000)}`);
}

/** `built in 1.2s: 6 steps, 6 cached` → [6, 6] */
function stepCounts(stderr: string): [number, number] {
  const m = /built in [\d.]+s: (\d+) steps, (\d+) cached/.exec(stderr);
  assert.ok(m, `no build summary in:\n${stderr.slice(-2000)}`);
  return [Number(m[1]), Number(m[2])];
}

async function inspect(root: string, name: string): Promise<{ digest: string; manifest: { layers: { digest: string }[] }; config: { config: { Labels?: Record<string, string> } } }> {
  const r = await tsbuild(root, ['inspect', name]);
  ok(r, `inspect ${name}`);
  return JSON.parse(r.stdout) as never;
}

async function makeContext(parent: string, name: string): Promise<string> {
  const dir = join(parent, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), MULTI_STAGE);
  await writeFile(join(dir, 'context.txt'), 'from the context\n');
  await writeFile(join(dir, 'input.txt'), 'build input\n');
  return dir;
}

describe('tsbuild CLI against a registry', { concurrency: false }, () => {
  let registry: RunningRegistry | undefined;
  let proxy: Proxy;
  let a = { root: '', cleanup: async (): Promise<void> => {} };
  let work = '';
  const roots: string[] = [];
  let ready = false;
  let host = '';
  let builtDigest = '';
  let finalLayers: string[] = [];
  let buildStageLayers: string[] = [];

  before(async (t) => {
    ready = requireRoot(t) && requirePrereq(t, hasCommand('busybox'), 'busybox', 'busybox-static') && requirePrereq(t, hasCommand('runc'), 'runc', 'runc') && requirePrereq(t, existsSync(REGISTRY_BIN), 'docker-registry', 'docker-registry');
    if (!ready) return;
    registry = await startRegistry();
    proxy = await startProxy(registry.host);
    host = proxy.host;
    a = await storeWithBusybox();
    work = await mkdtemp(join(tmpdir(), 'tsbuild-reg-cli-'));
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
    await a.cleanup();
    for (const r of roots) await rm(r, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  const freshRoot = async (): Promise<string> => {
    const r = await mkdtemp(join(tmpdir(), 'tsbuild-reg-store-'));
    roots.push(r);
    return r;
  };

  it('push NAME DEST pushes a local image and prints its digest (and --metadata-file)', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    const meta = join(work, 'push-meta.json');
    const r = await tsbuild(a.root, ['push', 'busybox:local', `${host}/base/busybox:1`, '--metadata-file', meta]);
    ok(r, 'push');
    const local = await inspect(a.root, 'busybox:local');
    assert.equal(r.stdout.trim(), local.digest);
    assert.equal(JSON.parse(await readFile(meta, 'utf8'))['containerimage.digest'], local.digest);
    assert.ok(proxy.requests.some((q) => q.method === 'PUT' && q.path === '/v2/base/busybox/manifests/1'));
  });

  it('build: FROM a registry image pulls it; --push, --cache-to registry (max) and local (min)', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    const ctx = await makeContext(work, 'ctx-a');
    const meta = join(work, 'build-meta.json');
    const r = await tsbuild(
      a.root,
      [
        'build', '--progress=plain', '--build-arg', `BASE=${host}/base/busybox:1`, '-t', `${host}/team/app:v1`, '--push', '--metadata-file', meta,
        '--cache-to', `type=registry,ref=${host}/team/cache:main,mode=max`,
        '--cache-to', `type=local,dest=${join(work, 'cache-min')},mode=min`,
        ctx,
      ],
      { env: EPOCH },
    );
    ok(r, 'build on store A');
    const img = await inspect(a.root, `${host}/team/app:v1`);
    builtDigest = img.digest;
    finalLayers = img.manifest.layers.map((l) => l.digest);
    assert.match(r.stderr, new RegExp(`pushed ${host}/team/app:v1@${builtDigest}`));
    assert.equal(JSON.parse(await readFile(meta, 'utf8'))['containerimage.digest'], builtDigest);
    assert.match(r.stderr, /exporting cache to .*team\/cache:main \(mode=max\)/);
    // the build stage's layers (RUN, COPY input.txt) are in the store but not in the final image
    const cacheLs = await tsbuild(a.root, ['cache', 'ls', '--format', 'json']);
    ok(cacheLs, 'cache ls');
    const records = JSON.parse(cacheLs.stdout) as { layer?: { digest: string } }[];
    const all = records.filter((x) => x.layer !== undefined).map((x) => x.layer!.digest);
    buildStageLayers = all.filter((d) => !finalLayers.includes(d));
    assert.equal(buildStageLayers.length, 2, `expected the build stage's two layers outside the final image, found ${JSON.stringify(buildStageLayers)}`);

    // the pushed image pulls into a clean store, digest-identical
    const d = await freshRoot();
    const p = await tsbuild(d, ['pull', `${host}/team/app:v1`]);
    ok(p, 'pull');
    assert.equal(p.stdout.trim(), builtDigest);
    assert.equal((await inspect(d, `${host}/team/app:v1`)).digest, builtDigest);
  });

  it('--cache-from registry on a clean store at another context path: every step CACHED, same digest, only the final layers downloaded', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    const b = await freshRoot();
    const ctx = await makeContext(join(work, 'elsewhere', 'deeper'), 'ctx-b');
    const before = proxy.requests.length;
    const r = await tsbuild(
      b,
      ['build', '--progress=plain', '--build-arg', `BASE=${host}/base/busybox:1`, '-t', 'copy:b', '--cache-from', `type=registry,ref=${host}/team/cache:main`, ctx],
      { env: EPOCH },
    );
    ok(r, 'build on store B');
    const [steps, cached] = stepCounts(r.stderr);
    assert.equal(steps, 6);
    assert.equal(cached, steps, `expected every step CACHED:\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /MISS/);
    assert.equal((await inspect(b, 'copy:b')).digest, builtDigest);
    const gets = proxy.requests.slice(before).filter((q) => q.method === 'GET' && /\/blobs\/sha256:/.test(q.path)).map((q) => q.path.slice(q.path.indexOf('sha256:')));
    for (const l of buildStageLayers) assert.ok(!gets.includes(l), `build-stage layer ${l} was downloaded`);
    for (const l of finalLayers) assert.ok(gets.includes(l), `final layer ${l} was not downloaded`);
    // what else was fetched: the base image's config and the cache config, nothing more
    const extra = [...new Set(gets)].filter((g) => !finalLayers.includes(g));
    assert.equal(extra.length, 2, `expected only the base config and the cache config besides the final layers, found ${JSON.stringify(extra)}`);
    const blobs = await readdir(join(b, 'blobs', 'sha256'));
    for (const l of buildStageLayers) assert.ok(!blobs.includes(l.slice(7)), 'a build-stage layer reached store B');
    // the imported hits whose layers are now local are kept: a rebuild without --cache-from is CACHED too
    const again = await tsbuild(b, ['build', '--progress=plain', '--build-arg', `BASE=${host}/base/busybox:1`, '-t', 'copy:b', ctx], { env: EPOCH });
    ok(again, 'rebuild on store B');
    assert.equal(stepCounts(again.stderr)[0] - stepCounts(again.stderr)[1], 2, 'expected only the two build-stage steps to miss without the import');
  });

  it('--cache-from type=local (mode=min): the final chain is CACHED, the other stage runs, same digest', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    const c = await freshRoot();
    const ctx = await makeContext(work, 'ctx-c');
    const index = JSON.parse(await readFile(join(work, 'cache-min', 'index.json'), 'utf8')) as { manifests: { artifactType?: string }[] };
    assert.equal(index.manifests[0]!.artifactType, 'application/vnd.tsbuild.cache.v1');
    const r = await tsbuild(
      c,
      ['build', '--progress=plain', '--build-arg', `BASE=${host}/base/busybox:1`, '-t', 'copy:c', '--cache-from', `type=local,src=${join(work, 'cache-min')}`, ctx],
      { env: EPOCH },
    );
    ok(r, 'build on store C');
    const [steps, cached] = stepCounts(r.stderr);
    assert.equal(steps, 6);
    assert.equal(cached, 4, `expected WORKDIR and the final stage's three steps CACHED, the build stage's two run:\n${r.stderr}`);
    assert.equal((await inspect(c, 'copy:c')).digest, builtDigest);
  });

  it('--pull re-resolves a tag that moved; without it the local image is used', async (t) => {
    if (!ready) return t.skip('prerequisites missing');
    const b = await freshRoot();
    const ctx = join(work, 'ctx-pull');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${host}/base/moving:1\nLABEL child=yes\n`);
    const first = join(work, 'ctx-first');
    await mkdir(first, { recursive: true });
    await writeFile(join(first, 'Dockerfile'), 'FROM busybox:local\nLABEL generation=1\n');
    ok(await tsbuild(a.root, ['build', '-q', '-t', `${host}/base/moving:1`, '--push', first]), 'push generation 1');
    ok(await tsbuild(b, ['build', '-q', '-t', 'child', ctx]), 'child build 1');
    assert.equal((await inspect(b, 'child')).config.config.Labels?.generation, '1');

    // the tag moves to generation 2
    await writeFile(join(first, 'Dockerfile'), 'FROM busybox:local\nLABEL generation=2\n');
    ok(await tsbuild(a.root, ['build', '-q', '-t', `${host}/base/moving:1`, '--output', 'type=registry', first]), 'push generation 2');
    ok(await tsbuild(b, ['build', '-q', '-t', 'child', ctx]), 'child build 2');
    assert.equal((await inspect(b, 'child')).config.config.Labels?.generation, '1', 'without --pull the local tag is reused');
    ok(await tsbuild(b, ['build', '-q', '--pull', '-t', 'child', ctx]), 'child build 3');
    assert.equal((await inspect(b, 'child')).config.config.Labels?.generation, '2', '--pull resolves the moved tag');
  });

  it('rejects bad registry flags with exit code 2', async () => {
    for (const [args, msg] of [
      [['build', '--push', '.'], /--push needs a name/],
      [['build', '--cache-to', 'type=registry', '.'], /needs ref=/],
      [['build', '--cache-to', 'type=registry,ref=x/y,mode=all', '.'], /mode=min or mode=max/],
      [['build', '--cache-from', 'type=s3,bucket=x', '.'], /expected type=registry or type=local/],
      [['build', '-o', 'type=local,dest=x,push=true', '.'], /cannot push/],
    ] as const) {
      const r = await tsbuild('/nonexistent-root', [...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, msg);
    }
  });
});
