/**
 * Snapshot placement on ext2/3/4: the store's snapshot directory carries FS_TOPDIR_FL, so
 * each snapshot gets block groups of its own; snapshot directories are made under a random
 * name and renamed to their id, and a leftover of that step is removed at the next open.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { native } from '../util/native.js';
import { openSnapshotter } from './snapshotter.js';

const EXT4_MAGIC = 0xef53;
const TMPFS_MAGIC = 0x01021994;
const sys = native();
const skip = sys === undefined ? 'the native addon is not built (see native.test.ts)' : false;

/** lsattr's flag letters for a directory ('T' is FS_TOPDIR_FL) */
function attrs(dir: string): string {
  return execFileSync('lsattr', ['-d', dir], { encoding: 'utf8' }).trim().split(/\s+/)[0]!;
}

describe('snapshot placement', { skip }, () => {
  const roots: string[] = [];
  after(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });
  const scratch = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'tsbuild-placement-'));
    roots.push(d);
    return d;
  };

  it('topDir sets the flag where the filesystem has it, says false where not, and names bad paths', async () => {
    const d = await scratch();
    const type = (await statfs(d)).type;
    const set = sys!.topDir(d);
    if (type === EXT4_MAGIC) {
      assert.equal(set, true);
      assert.match(attrs(d), /T/);
      assert.equal(sys!.topDir(d), true, 'already set');
    } else {
      assert.equal(typeof set, 'boolean');
    }
    if (existsSync('/dev/shm') && (await statfs('/dev/shm')).type === TMPFS_MAGIC) {
      const shm = await mkdtemp('/dev/shm/tsbuild-placement-');
      try {
        assert.equal(sys!.topDir(shm), false, 'tmpfs has no such flag');
      } finally {
        await rm(shm, { recursive: true, force: true });
      }
    }
    assert.throws(() => sys!.topDir(join(d, 'missing')), { code: 'ENOENT' });
    await writeFile(join(d, 'file'), 'x');
    assert.throws(() => sys!.topDir(join(d, 'file')), { code: 'ENOTDIR' });
  });

  it('a store marks its snapshot directory; snapshots get their ids as names; a leftover temp name goes at the next open', async () => {
    const root = await scratch();
    const s = await openSnapshotter(root, { backend: 'copy' });
    const dir = join(root, 'snapshots');
    if ((await statfs(root)).type === EXT4_MAGIC) assert.match(attrs(dir), /T/);
    await s.prepare('a');
    await s.prepare('b');
    const names = await readdir(dir);
    assert.equal(names.length, 2);
    assert.ok(names.every((n) => !n.startsWith('.new-')), names.join(' '));
    await s.close();
    // what a process killed between the mkdir and the rename leaves behind
    await mkdir(join(dir, '.new-0123456789abcdef'));
    const again = await openSnapshotter(root, { backend: 'copy' });
    assert.deepEqual((await readdir(dir)).sort(), names.sort());
    await again.close();
  });
});
