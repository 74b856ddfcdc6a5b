/**
 * Semantics the fidelity suite cannot compare (BuildKit 0.13's built-in frontend lacks
 * them: `--parents`, `--exclude`, secret `env=`, symbolic `--chmod`) and the cache and
 * parallelism properties of the issue, checked against a real store.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applyLayer, openLayerStream, writeOciLayout } from '@tsbuild/snapshotter';
import { build, type BuildOptions, type BuildResult } from '../index.js';
import type { ProgressEvent } from '../progress.js';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';

describe('build semantics and cache', { concurrency: false }, () => {
  let ts: TestStore;
  let ctx: string;
  let ok = true;

  before(async (c) => {
    ok = requireBuildPrereqs(c as unknown as { skip(m: string): void });
    if (!ok) return;
    ts = await tempStoreWithBusybox();
    ctx = await mkdtemp(join(tmpdir(), 'tsbuild-sem-'));
    await mkdir(join(ctx, 'a/b'), { recursive: true });
    await writeFile(join(ctx, 'a/b/keep.txt'), 'keep\n');
    await writeFile(join(ctx, 'a/b/drop.log'), 'drop\n');
    await writeFile(join(ctx, 'a/top.txt'), 'top\n');
    await writeFile(join(ctx, 'x.sh'), 'echo\n', { mode: 0o644 });
  });
  after(async () => {
    if (!ok) return;
    await ts.cleanup();
    await rm(ctx, { recursive: true, force: true });
  });

  const run = async (dockerfile: string, extra: Partial<BuildOptions> = {}, name?: string) => {
    const df = join(ctx, name ?? `Dockerfile.${Math.random().toString(36).slice(2)}`);
    await writeFile(df, dockerfile);
    const events: ProgressEvent[] = [];
    const res = await build(ts.store, { context: ctx, dockerfile: df, onProgress: (e) => events.push(e), ...extra });
    return { res, events, df };
  };

  /** Flattens the result into a temp dir and returns a reader of its files. */
  const files = async (res: BuildResult) => {
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-flat-'));
    for (const l of res.image.manifest.layers) await applyLayer(openLayerStream(ts.store.content, l), dir);
    return {
      read: (p: string) => readFile(join(dir, p), 'utf8').catch(() => undefined),
      done: () => rm(dir, { recursive: true, force: true }),
    };
  };

  it('COPY --parents keeps the source paths, a /./ pivot cuts them', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const { res } = await run('FROM busybox:local\nCOPY --parents a/b/keep.txt a/top.txt /p/\nCOPY --parents a/./b/keep.txt /q/\n');
    const f = await files(res);
    assert.equal(await f.read('p/a/b/keep.txt'), 'keep\n');
    assert.equal(await f.read('p/a/top.txt'), 'top\n');
    assert.equal(await f.read('q/b/keep.txt'), 'keep\n');
    assert.equal(await f.read('q/a/b/keep.txt'), undefined);
    await f.done();
  });

  it('COPY --exclude leaves matching paths out', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const { res } = await run('FROM busybox:local\nCOPY --exclude=*.log --exclude=top.txt a /e/\n');
    const f = await files(res);
    assert.equal(await f.read('e/b/keep.txt'), 'keep\n');
    assert.equal(await f.read('e/b/drop.log'), undefined);
    assert.equal(await f.read('e/top.txt'), undefined);
    await f.done();
  });

  it('RUN --mount=type=secret,env= puts the secret in the environment only', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    process.env.TSBUILD_TEST_SECRET = 'hunter2';
    try {
      const { res } = await run('FROM busybox:local\nRUN --mount=type=secret,id=tok,env=TOKEN echo -n "$TOKEN" | wc -c > /len && test ! -e /run/secrets/tok\n', {
        secrets: [{ id: 'tok', env: 'TSBUILD_TEST_SECRET' }],
      });
      const f = await files(res);
      assert.equal((await f.read('len'))?.trim(), '7');
      await f.done();
      const cfg = JSON.stringify(res.image.config);
      assert.ok(!cfg.includes('hunter2'), 'the secret must not reach the image config');
    } finally {
      delete process.env.TSBUILD_TEST_SECRET;
    }
  });

  it('COPY --chmod accepts symbolic modes (u+x,go-w, a=rX)', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const { res } = await run('FROM busybox:local\nCOPY --chmod=u+x,go-r x.sh /s1\nCOPY --chmod=a=rX x.sh /s2\nRUN stat -c %a /s1 /s2 > /modes\n');
    const f = await files(res);
    assert.equal(await f.read('modes'), '700\n444\n');
    await f.done();
  });

  it('--no-cache-filter rebuilds only the named stage; a step after a miss misses too', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = 'FROM busybox:local AS one\nRUN echo one > /one\nFROM busybox:local AS two\nRUN echo two > /two\nRUN echo after > /after\nFROM two\nCOPY --from=one /one /\n';
    await run(df, {}, 'Dockerfile.filter');
    const { res } = await run(df, { noCacheFilter: ['two'] }, 'Dockerfile.filter');
    const byText = (s: string) => res.steps.find((x) => x.description.includes(s));
    assert.equal(byText('echo one')?.cached, true, 'stage one is not filtered');
    assert.equal(byText('echo two')?.cached, false);
    assert.match(byText('echo two')?.reason ?? '', /no-cache/);
    const after = byText('echo after');
    assert.equal(after?.cached, false, 'the step after a missed step misses');
    assert.ok(after?.reason, 'and says why');
  });

  it('a step whose parent missed misses, naming the parent', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    await writeFile(join(ctx, 'changing.txt'), 'v1\n');
    const df = 'FROM busybox:local\nCOPY changing.txt /c\nRUN cat /c > /d\n';
    await run(df, {}, 'Dockerfile.parent');
    await writeFile(join(ctx, 'changing.txt'), 'v2\n');
    const { res } = await run(df, {}, 'Dockerfile.parent');
    const copy = res.steps.find((x) => x.description.includes('COPY changing.txt'));
    const runStep = res.steps.find((x) => x.description.includes('cat /c'));
    assert.equal(copy?.cached, false);
    assert.match(copy?.reason ?? '', /changing\.txt/);
    assert.equal(runStep?.cached, false);
    assert.match(runStep?.reason ?? '', /parent/);
  });

  it('oci-layout://DIR:TAG picks the entry by its ref.name, as docker, containerd and skopeo write it', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const base = await ts.store.images.resolve('busybox:local');
    assert.ok(base);
    const layout = await mkdtemp(join(tmpdir(), 'tsbuild-layout-'));
    try {
      await writeOciLayout(layout, ts.store.content, base, ['other:v2']);
      await writeOciLayout(layout, ts.store.content, base, ['base:v1']);
      // as skopeo writes a layout: the tag alone, no full name
      const idx = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
      for (const m of idx.manifests) m.annotations = { 'org.opencontainers.image.ref.name': m.annotations['org.opencontainers.image.ref.name']! };
      await writeFile(join(layout, 'index.json'), JSON.stringify(idx));
      const { res } = await run('FROM base\nRUN echo from-layout > /l\n', { buildContexts: { base: `oci-layout://${layout}:v1` } });
      const f = await files(res);
      assert.equal(await f.read('l'), 'from-layout\n');
      await f.done();
      await assert.rejects(run('FROM base\n', { buildContexts: { base: `oci-layout://${layout}:v3` } }), /base/);
    } finally {
      await rm(layout, { recursive: true, force: true });
    }
  });
});
