/**
 * Performance shortcuts must never change results: the `COPY --from` source digest memo
 * (a no-op rebuild mounts nothing) and its invalidation when the source stage's files change;
 * the relinked COPY rerun and its layer export from the previous layer's entries.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildOptions, type BuildResult } from '../index.js';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';

describe('performance shortcuts keep results exact', { concurrency: false }, () => {
  let ts: TestStore;
  let ctx: string;
  let ok = true;
  let views = 0;
  const blobsAsked: string[] = [];

  before(async (c) => {
    ok = requireBuildPrereqs(c as unknown as { skip(m: string): void });
    if (!ok) return;
    ts = await tempStoreWithBusybox();
    ctx = await mkdtemp(join(tmpdir(), 'tsbuild-perf-'));
    // count read-only views of source stages (what COPY --from mounts to read files)
    const snapshots = ts.store.snapshots;
    const view = snapshots.view.bind(snapshots);
    snapshots.view = (...args: Parameters<typeof view>) => {
      views++;
      return view(...args);
    };
    // which blob files are opened by path (the layer export's reuse of the previous layer)
    const content = ts.store.content;
    const blobPath = content.blobPath.bind(content);
    content.blobPath = (d) => {
      blobsAsked.push(d);
      return blobPath(d);
    };
  });
  after(async () => {
    if (!ok) return;
    await ts.cleanup();
    await rm(ctx, { recursive: true, force: true });
  });

  const run = async (dockerfile: string, opts: Partial<BuildOptions> = {}): Promise<BuildResult> => {
    await writeFile(join(ctx, 'Dockerfile'), dockerfile);
    return build(ts.store, { context: ctx, onProgress: () => {}, sourceDateEpoch: 0, ...opts });
  };

  it('a no-op rebuild with COPY --from is CACHED without mounting the source stage', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const df = 'FROM busybox:local AS src\nRUN mkdir /out && echo one > /out/a && echo two > /out/b\nFROM busybox:local\nCOPY --from=src /out /app\n';
    const first = await run(df);
    assert.ok(views >= 1, 'the first build reads the source stage through a view');
    views = 0;
    const again = await run(df);
    assert.equal(views, 0, 'the rebuild mounted a view');
    assert.ok(again.steps.every((s) => s.cached), `not all cached: ${JSON.stringify(again.steps)}`);
    assert.equal(again.image.manifestDigest, first.image.manifestDigest);
  });

  it('a COPY rerun after one context file changed hardlinks the unchanged files and makes the same layer as a full copy', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    for (let d = 0; d < 3; d++) {
      await mkdir(join(ctx, 'tree', `d${d}`), { recursive: true });
      for (let i = 0; i < 20; i++) await writeFile(join(ctx, 'tree', `d${d}`, `f${i}.txt`), `file ${d}/${i}\n`, { mode: i % 2 ? 0o755 : 0o644 });
    }
    await writeFile(join(ctx, 'tree', 'changing.txt'), 'one\n');
    const df = 'FROM busybox:local\nCOPY tree /app/\nRUN cat /app/changing.txt /app/d1/f3.txt\n';
    const first = await run(df);
    blobsAsked.length = 0;
    await writeFile(join(ctx, 'tree', 'changing.txt'), 'two, longer\n');
    await writeFile(join(ctx, 'tree', 'd2', 'f5.txt'), 'changed\n');
    const relinked = await run(df);
    assert.equal(relinked.steps.find((s) => s.description.includes('COPY'))?.cached, false);
    // the 59 unchanged f*.txt files are shared with the first run's snapshot (d2/f5.txt changed)
    const shared = execFileSync('find', [join(ts.root, 'snapshots'), '-type', 'f', '-name', 'f*.txt', '-links', '+1'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    assert.equal(shared.length, 2 * 59, `hardlinked files: ${shared.length}`);
    // the export took their entries from the first run's COPY layer blob
    const layered = (first.image.config.history ?? []).filter((h) => !h.empty_layer);
    const firstCopyLayer = first.image.config.rootfs.diff_ids[layered.findIndex((h) => h.created_by?.startsWith('COPY'))];
    assert.ok(firstCopyLayer !== undefined && blobsAsked.includes(firstCopyLayer), `blobs opened by path: ${JSON.stringify(blobsAsked)}`);
    const full = await run(df, { noCache: true });
    assert.deepEqual(relinked.image.config.rootfs.diff_ids, full.image.config.rootfs.diff_ids, 'a relinked COPY made another layer than a full copy');
    assert.equal(relinked.image.manifestDigest, full.image.manifestDigest);
  });

  it('when the source stage produces other files under the same key, COPY --from misses', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    // the RUN's output differs on every run: rebuilding the stage changes its layer, not its cache key
    const df = 'FROM busybox:local AS gen\nRUN mkdir /out && head -c 16 /dev/urandom | od -x > /out/rnd\nFROM busybox:local\nCOPY --from=gen /out /app\n';
    const first = await run(df);
    const rebuilt = await run(df, { noCacheFilter: ['gen'] });
    const copy = rebuilt.steps.find((s) => s.description.includes('COPY'));
    assert.ok(copy, 'the COPY step is listed');
    assert.equal(copy.cached, false, 'the COPY reused the old files although the source stage changed');
    assert.notEqual(rebuilt.image.manifestDigest, first.image.manifestDigest);
    // a plain rebuild: the stage's cache record still holds its first layer, so the COPY
    // reads that layer's remembered digest — all CACHED, the first build's image, no mount
    views = 0;
    const again = await run(df);
    assert.equal(views, 0);
    assert.ok(again.steps.every((s) => s.cached));
    assert.equal(again.image.manifestDigest, first.image.manifestDigest);
  });
});
