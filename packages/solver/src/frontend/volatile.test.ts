import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ContentStore, exportLayer, openSnapshotter, snapshotDiffRecipe, snapshotDiffSource, type Digest, type Snapshotter } from '@tsbuild/snapshotter';
import { currentBootId, dropVolatileSnapshots, ensureVolatileStamp, markDurable, pumpWriteback, VOLATILE_LABEL } from './volatile.js';

async function committed(s: Snapshotter, name: string, parent: string | undefined, labels?: Record<string, string>): Promise<void> {
  await s.prepare(`a-${name}`, parent);
  await s.commit(name, `a-${name}`, labels ? { labels } : undefined);
}

async function keys(s: Snapshotter): Promise<string[]> {
  const out: string[] = [];
  for await (const i of s.walk()) out.push(i.key);
  return out.sort();
}

test('snapshots committed under volatile mounts in another boot are dropped with everything above them', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-volatile-'));
  try {
    const boot = await currentBootId();
    assert.ok(boot !== undefined, 'expected /proc/sys/kernel/random/boot_id to be readable');
    const s = await openSnapshotter(join(root, 'snapshots'), { backend: 'copy' });
    await committed(s, 'base', undefined); // unpacked, not volatile
    await committed(s, 'old', 'base', { [VOLATILE_LABEL]: 'an-earlier-boot' });
    await committed(s, 'above-old', 'old'); // plain, but its lower is incomplete
    await committed(s, 'above-above', 'above-old', { [VOLATILE_LABEL]: boot });
    await committed(s, 'this-boot', 'base', { [VOLATILE_LABEL]: boot });

    // the stamp names this boot: nothing to do, nothing removed
    await ensureVolatileStamp(root, boot);
    assert.deepEqual(await dropVolatileSnapshots(root, s), []);
    assert.equal((await keys(s)).length, 5);

    // the stamp names an earlier boot (the machine restarted since)
    await writeFile(join(root, 'volatile-boot'), 'an-earlier-boot\n');
    const dropped = await dropVolatileSnapshots(root, s);
    assert.deepEqual(dropped.sort(), ['above-above', 'above-old', 'old']);
    assert.deepEqual(await keys(s), ['base', 'this-boot']);
    assert.equal((await readFile(join(root, 'volatile-boot'), 'utf8')).trim(), boot);
    assert.deepEqual(await dropVolatileSnapshots(root, s), []);
    await s.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('without a stamp nothing is dropped, whatever the labels say', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-volatile-'));
  try {
    const s = await openSnapshotter(join(root, 'snapshots'), { backend: 'copy' });
    await committed(s, 'x', undefined, { [VOLATILE_LABEL]: 'an-earlier-boot' });
    assert.deepEqual(await dropVolatileSnapshots(root, s), []);
    assert.deepEqual(await keys(s), ['x']);
    await s.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('after a reboot, a virtual blob whose volatile snapshot the guard dropped is missing; one made durable survives', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-volatile-'));
  try {
    const boot = await currentBootId();
    assert.ok(boot !== undefined);
    const s = await openSnapshotter(join(root, 'snapshots'), { backend: 'copy' });
    const content = await ContentStore.open(join(root, 'content'));
    content.useVirtualSource(snapshotDiffSource(s));
    await committed(s, 'base', undefined);
    const opts = { compression: 'uncompressed' as const, sourceDateEpoch: 0, mountStubs: [] };
    /** A layer on base committed with `labels`, its blob virtual; returns the digest. */
    const virtualLayer = async (name: string, labels: Record<string, string>): Promise<Digest> => {
      const [m] = await s.prepare(`a-${name}`, 'base'); // copy backend: a bind mount of the snapshot's own tree
      await writeFile(join(m!.source, `${name}.bin`), Buffer.alloc(100_000, name.length));
      const d = await exportLayer(s, `a-${name}`, content, { ...opts, virtualMinSize: 0 });
      assert.equal(d.stored, false);
      await s.commit(name, `a-${name}`, { labels });
      await content.addVirtual({ digest: d.digest, size: d.size, recipe: snapshotDiffRecipe(name, opts) });
      return d.digest;
    };
    const lost = await virtualLayer('lost', { [VOLATILE_LABEL]: 'an-earlier-boot' });
    const kept = await virtualLayer('kept', { [VOLATILE_LABEL]: boot, other: 'x' });
    await markDurable(s, 'kept', boot); // what a build does once its syncfs returned
    assert.deepEqual((await s.stat('kept')).labels, { other: 'x' });
    assert.equal(await content.has(lost), true);

    await writeFile(join(root, 'volatile-boot'), 'an-earlier-boot\n');
    assert.deepEqual(await dropVolatileSnapshots(root, s), ['lost']);
    assert.equal(await content.has(lost), false, 'its snapshot is gone: the blob reads as missing (a cache miss)');
    await assert.rejects(content.info(lost), { code: 'NOT_FOUND' });
    assert.equal(await content.has(kept), true);
    const parts: Buffer[] = [];
    for await (const c of content.createReadStream(kept)) parts.push(c as Buffer);
    assert.equal(parts.reduce((n, b) => n + b.length, 0), (await content.info(kept)).size);
    await s.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

/** Runs `fn` on a new temporary directory and removes it after. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-pump-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('the writeback pump syncs once a step has put the threshold into use, and stop waits for it', () =>
  inTempDir(async (dir) => {
    let syncs = 0;
    let settled = false;
    let release: () => void = () => {};
    const sync = (path: string): Promise<void> => {
      assert.equal(path, dir);
      syncs++;
      return new Promise<void>((resolve) => (release = () => ((settled = true), resolve())));
    };
    const stop = pumpWriteback(dir, { bytes: 4 << 20, intervalMs: 5, sync });
    // dirty data counts (statfs subtracts ext4's delayed allocations; tmpfs pages count as used);
    // space freed elsewhere meanwhile only moves the mark, so keep writing until it fires
    for (let i = 0; i < 16 && syncs === 0; i++) {
      await writeFile(join(dir, `f${i}`), Buffer.alloc(16 << 20, i + 1));
      await new Promise((r) => setTimeout(r, 30));
    }
    assert.equal(syncs, 1, 'one sync started, and no second one while it is in flight');
    const stopped = stop().then(() => settled);
    setTimeout(() => release(), 50);
    assert.equal(await stopped, true, 'stop resolved only after the sync in flight');
  }));

test('the writeback pump never syncs for a step that writes less than the threshold', () =>
  inTempDir(async (dir) => {
    let syncs = 0;
    const stop = pumpWriteback(dir, { bytes: 1 << 30, intervalMs: 5, sync: async () => void syncs++ });
    await writeFile(join(dir, 'small'), Buffer.alloc(1 << 20, 7));
    await new Promise((r) => setTimeout(r, 60));
    await stop();
    assert.equal(syncs, 0);
  }));
