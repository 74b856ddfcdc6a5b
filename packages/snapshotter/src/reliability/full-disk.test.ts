/**
 * A content store on a full disk (catalog T39, the open path): opening an existing store
 * writes nothing, so it works with no space left; creating its files on a full disk fails
 * with ENOSPC and leaves no temp file behind. Needs root (a 1 MiB tmpfs).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rmdir, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ContentStore } from '../content/content-store.js';
import { openSnapshotter } from '../snapshots/snapshotter.js';

test('T39: a full disk neither fails opening an existing store nor leaves temp files when creating one', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('the full-disk test needs root (it mounts a tmpfs)');
    return t.skip('needs root (it mounts a tmpfs)');
  }
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-full-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tsbuild-full', root], { encoding: 'utf8' });
  assert.equal(m.status, 0, `mounting a tmpfs failed: ${m.stderr}`);
  try {
    await ContentStore.open(root);
    // fill the disk to the last block
    const fill = async (name: string): Promise<void> => {
      await writeFile(join(root, name), Buffer.alloc(2 * 1024 * 1024)).catch((err: NodeJS.ErrnoException) => assert.equal(err.code, 'ENOSPC'));
      await assert.rejects(writeFile(join(root, 'probe'), 'x'), /ENOSPC/);
      await unlink(join(root, 'probe')).catch(() => undefined);
    };
    await fill('filler');

    await ContentStore.open(root); // an existing store: nothing to write
    await unlink(join(root, 'oci-layout'));
    await fill('filler2'); // the page oci-layout freed
    await assert.rejects(ContentStore.open(root), (err: NodeJS.ErrnoException) => err.code === 'ENOSPC');
    const left = (await readdir(root)).filter((n) => n.includes('.tmp-'));
    assert.deepEqual(left, [], 'a temp file was left by the failed create');

    // the snapshotter's metadata lock: a lock that could not get its owner's pid written
    // must not stay behind (nobody could break it: every later open would wait forever).
    // It is a symlink created with its content, so on a full disk the open either works or
    // fails with ENOSPC, and leaves no lock either way
    await unlink(join(root, 'filler'));
    await unlink(join(root, 'filler2'));
    await openSnapshotter(root, { backend: 'copy' });
    await fill('filler');
    await openSnapshotter(root, { backend: 'copy' }).catch((err: NodeJS.ErrnoException) => assert.equal(err.code, 'ENOSPC', String(err)));
    assert.deepEqual((await readdir(join(root, 'snapshots'))).filter((n) => n.startsWith('lock')), [], 'the metadata lock was left behind');
    await unlink(join(root, 'filler'));
    const opened = await Promise.race([openSnapshotter(root, { backend: 'copy' }).then(() => 'opened'), new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000).unref())]);
    assert.equal(opened, 'opened');
  } finally {
    spawnSync('umount', ['-l', root]);
    await rmdir(root).catch(() => undefined);
  }
});
