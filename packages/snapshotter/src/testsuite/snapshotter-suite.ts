/**
 * containerd-style conformance suite for Snapshotter implementations:
 * `snapshotterSuite('overlay', () => openSnapshotter(tmp, { backend: 'overlay' }))`.
 * Needs root (it mounts); callers decide whether to skip.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { withMount } from '../snapshots/mount.js';
import type { Snapshotter } from '../snapshots/types.js';

/** Creates a snapshotter on a fresh root directory. */
export type SnapshotterFactory = (root: string) => Promise<Snapshotter>;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? 'NO_CODE';
  }
  return 'RESOLVED';
}

/** Registers the suite's tests with node:test. */
export function snapshotterSuite(name: string, factory: SnapshotterFactory, opts: { skip?: string | false } = {}): void {
  describe(`snapshotter suite: ${name}`, { skip: opts.skip ?? false }, () => {
    const roots: string[] = [];
    const fresh = async (): Promise<Snapshotter> => {
      const root = await mkdtemp(join(tmpdir(), `tsbuild-suite-${name}-`));
      roots.push(root);
      return factory(root);
    };
    after(async () => {
      for (const r of roots) await rm(r, { recursive: true, force: true });
    });

    it('prepare → write → commit → view sees the data; chains stack', async () => {
      const s = await fresh();
      await withMount(await s.prepare('a'), (d) => writeFile(join(d, 'f'), 'one'));
      await s.commit('base', 'a');
      await withMount(await s.prepare('b', 'base'), async (d) => {
        assert.equal(await readFile(join(d, 'f'), 'utf8'), 'one');
        await writeFile(join(d, 'g'), 'two');
        await rm(join(d, 'f'));
      });
      await s.commit('top', 'b');
      await withMount(await s.view('v', 'top'), async (d) => {
        assert.deepEqual((await readdir(d)).sort(), ['g']);
        assert.equal(await codeOf(writeFile(join(d, 'x'), 'x')), 'EROFS');
      });
      await withMount(await s.view('v0', 'base'), async (d) => assert.equal(await readFile(join(d, 'f'), 'utf8'), 'one'));
    });

    it('enforces the state machine (ALREADY_EXISTS, FAILED_PRECONDITION, NOT_FOUND)', async () => {
      const s = await fresh();
      await s.prepare('a');
      assert.equal(await codeOf(s.prepare('a')), 'ALREADY_EXISTS');
      assert.equal(await codeOf(s.prepare('b', 'a')), 'FAILED_PRECONDITION', 'active snapshots are not parents');
      assert.equal(await codeOf(s.prepare('c', 'missing')), 'NOT_FOUND');
      await s.commit('A', 'a');
      assert.equal(await codeOf(s.stat('a')), 'NOT_FOUND', 'commit consumes the active key');
      assert.equal(await codeOf(s.prepare('A')), 'ALREADY_EXISTS');
      await s.view('v', 'A');
      assert.equal(await codeOf(s.commit('V', 'v')), 'FAILED_PRECONDITION', 'views cannot be committed');
      assert.equal(await codeOf(s.mounts('A')), 'FAILED_PRECONDITION');
      assert.equal(await codeOf(s.remove('A')), 'FAILED_PRECONDITION', 'parent with children');
      await s.remove('v');
      await s.remove('A');
      assert.equal(await codeOf(s.remove('A')), 'NOT_FOUND');
      assert.equal(await codeOf(s.prepare('')), 'INVALID_ARGUMENT');
    });

    it('stat, walk, labels and usage', async () => {
      const s = await fresh();
      await withMount(await s.prepare('a', undefined, { labels: { x: '1' } }), async (d) => {
        await mkdir(join(d, 'dir'));
        await writeFile(join(d, 'dir', 'f'), Buffer.alloc(10000, 1));
        // a name that is not UTF-8 is counted too (usage never needs names as strings)
        await writeFile(Buffer.from(`${join(d, 'dir')}/lat\xe9in`, 'latin1'), 'x');
      });
      await s.commit('A', 'a', { labels: { y: '2' } });
      await s.prepare('b', 'A');
      const a = await s.stat('A');
      assert.equal(a.kind, 'committed');
      assert.deepEqual(a.labels, { x: '1', y: '2' });
      assert.equal((await s.stat('b')).parent, 'A');
      const all: string[] = [];
      for await (const i of s.walk()) all.push(`${i.key}:${i.kind}`);
      assert.deepEqual(all.sort(), ['A:committed', 'b:active']);
      const u = await s.usage('A');
      assert.equal(u.inodes, 4);
      assert.ok(u.size >= 10000, `size ${u.size}`);
    });

    it('metadata is shared by two instances on one root', async () => {
      const root = await mkdtemp(join(tmpdir(), `tsbuild-suite-${name}-`));
      roots.push(root);
      const s1 = await factory(root);
      const s2 = await factory(root);
      await Promise.all([...Array(8).keys()].map((i) => (i % 2 ? s1 : s2).prepare(`k${i}`)));
      assert.equal(await codeOf(s1.prepare('k3')), 'ALREADY_EXISTS');
      await s2.commit('K3', 'k3');
      assert.equal((await s1.stat('K3')).kind, 'committed');
      await s1.close();
      await s2.close();
    });

    it('a 130-deep chain mounts and shows every layer', async () => {
      const s = await fresh();
      let parent: string | undefined;
      for (let i = 0; i < 130; i++) {
        await withMount(await s.prepare(`a${i}`, parent), (d) => writeFile(join(d, `f${i}`), String(i)));
        await s.commit(`c${i}`, `a${i}`);
        parent = `c${i}`;
      }
      await withMount(await s.prepare('top', parent), async (d) => {
        assert.equal((await readdir(d)).length, 130);
        assert.equal(await readFile(join(d, 'f0'), 'utf8'), '0');
        assert.equal(await readFile(join(d, 'f129'), 'utf8'), '129');
      });
    });
  });
}
