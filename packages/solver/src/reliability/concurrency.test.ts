/**
 * Concurrency (catalog T36, T37, T40): several tsbuild processes on one store at once —
 * the same Dockerfile, different Dockerfiles sharing a base, and builds while
 * `cache prune` runs — all succeed, identical inputs give identical image digests
 * (SOURCE_DATE_EPOCH fixes `created`), and the store checks clean afterwards.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';
import { assertClean, makeContext, mountsUnder, runcContainers, runTsbuild, verifyStore } from './test-helpers/harness.js';

const ENV = { SOURCE_DATE_EPOCH: '0' };

function dockerfile(variant: string): string {
  return [
    'FROM busybox:local',
    'RUN echo base > /base; head -c 100000 /bin/busybox > /shared',
    `RUN echo ${variant} > /variant; sleep 0.2`,
    'COPY f /f',
    '',
  ].join('\n');
}

describe('concurrent builds on one store', { concurrency: false }, () => {
  let ts: TestStore | undefined;
  const contexts: string[] = [];

  before(async () => {
    if (process.getuid?.() !== 0) return;
    ts = await tempStoreWithBusybox();
    await ts.store.close();
    for (const v of ['a', 'b', 'c']) {
      const ctx = await makeContext({ f: `file ${v}\n`, Dockerfile: dockerfile(v) });
      contexts.push(ctx);
    }
  });
  after(async () => {
    await ts?.cleanup();
    for (const c of contexts) await rm(c, { recursive: true, force: true });
  });

  async function buildAll(jobs: { ctx: string; tag: string }[]): Promise<string[]> {
    const results = await Promise.all(
      jobs.map(async (j, i) => {
        const iid = join(ts!.root, `..`, `iid-${process.pid}-${i}-${Math.random().toString(36).slice(2)}`);
        const r = await runTsbuild(ts!.root, ['build', '--progress', 'plain', '-t', j.tag, '--iidfile', iid, j.ctx], { env: ENV });
        assert.equal(r.code, 0, `concurrent build ${i} (${j.tag}) failed:\n${r.stderr}`);
        const id = (await readFile(iid, 'utf8')).trim();
        await rm(iid, { force: true });
        return id;
      }),
    );
    return results;
  }

  test('three processes build the same Dockerfile at once: all succeed with one digest', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const ids = await buildAll([0, 1, 2].map((i) => ({ ctx: contexts[0], tag: `same:${i}` })));
    assert.equal(new Set(ids).size, 1, `identical inputs gave different images: ${ids.join(' ')}`);
    assertClean(await verifyStore(ts!.root), 'after three identical concurrent builds');
    assert.deepEqual(mountsUnder(ts!.root), []);
    assert.deepEqual(runcContainers(ts!.root), []);
  });

  test('three processes build different Dockerfiles sharing a base; a rebuild gives the same digests', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const jobs = contexts.map((ctx, i) => ({ ctx, tag: `diff:${i}` }));
    const first = await buildAll(jobs);
    assert.equal(new Set(first).size, 3);
    const second = await buildAll(jobs);
    assert.deepEqual(second, first);
    assertClean(await verifyStore(ts!.root), 'after different concurrent builds');
  });

  test('builds running while `cache prune --all` loops all succeed and agree', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const help = await runTsbuild(ts!.root, ['cache', 'prune', '--help']);
    assert.equal(help.code, 0, `expected a \`tsbuild cache prune\` command: ${help.stderr}`);
    const reference = await buildAll([{ ctx: contexts[1], tag: 'prune:ref' }]);
    let stop = false;
    let prunes = 0;
    const pruner = (async () => {
      while (!stop) {
        const r = await runTsbuild(ts!.root, ['cache', 'prune', '--all']);
        assert.equal(r.code, 0, `cache prune failed while builds ran:\n${r.stderr}`);
        prunes++;
      }
    })();
    try {
      for (let round = 0; round < 2; round++) {
        // a new file makes every step after the base miss, so the builds do real work while prune runs
        for (const [i, c] of contexts.entries()) await writeFile(join(c, 'f'), `round ${round} file ${i}\n`);
        const ids = await buildAll([0, 1, 2, 1].map((i) => ({ ctx: contexts[i], tag: `prune:${round}-${i}` })));
        assert.equal(ids[1], ids[3], 'identical builds during prune must agree');
      }
    } finally {
      stop = true;
      await pruner;
    }
    t.diagnostic(`${prunes} prunes ran during the builds`);
    assert.ok(prunes >= 1);
    void reference;
    assertClean(await verifyStore(ts!.root), 'after builds racing prune');
    // every named image is still complete (checked by verifyStore: image-broken)
  });
});
