/**
 * Disk full (catalog T39): the store on an 8 MiB tmpfs. ENOSPC inside a RUN (the
 * upperdir fills), while the layer blob is written to the ingest, and SQLITE_FULL while
 * the cache index is written fail the build with
 * a clear message; the store stays consistent (no partial blob, no ingest, no mount
 * left, checkStore clean), and once space is freed the next build succeeds.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, rmdir, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildStore } from '../store.js';
import { checkStore } from '../check/index.js';
import { importRootfs } from '../ops/import.js';
import { REPO_ROOT, requireBuildPrereqs } from '../test-helpers/store.js';
import { assertClean, makeContext, mountsUnder, runTsbuild, verifyStore } from './test-helpers/harness.js';

describe('disk full (ENOSPC) on an 8 MiB store', { concurrency: false }, () => {
  let root = '';
  let ctx = '';
  let mounted = false;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    root = await mkdtemp(join(tmpdir(), 'tsbuild-enospc-'));
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tsbuild-enospc', root], { encoding: 'utf8' });
    assert.equal(m.status, 0, `mounting a tmpfs store failed: ${m.stderr}`);
    mounted = true;
    // the base image: busybox alone (about 1 MiB as a gzip layer, 2 MiB unpacked)
    const rootfs = await mkdtemp(join(tmpdir(), 'tsbuild-enospc-rootfs-'));
    spawnSync('bash', [join(REPO_ROOT, 'scripts', 'make-busybox-rootfs.sh'), rootfs], { stdio: 'ignore' });
    const store = await BuildStore.open(root);
    await importRootfs(store, rootfs, { tags: ['busybox:local'], config: { Env: ['PATH=/bin'] }, sourceDateEpoch: 0 });
    await store.close();
    await rm(rootfs, { recursive: true, force: true });
    ctx = await makeContext({});
  });
  after(async () => {
    if (mounted) {
      spawnSync('sh', ['-c', `grep -o " ${root}/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
      spawnSync('umount', ['-l', root]);
      await rmdir(root).catch(() => undefined);
    }
    if (ctx) await rm(ctx, { recursive: true, force: true });
  });

  async function buildWith(dockerfile: string): Promise<{ code: number | null; out: string }> {
    const r = await runTsbuild(root, ['build', '--progress', 'plain', '--no-cache', '-f', '-', ctx], { input: dockerfile, env: { SOURCE_DATE_EPOCH: '0' } });
    return { code: r.code, out: r.stdout + r.stderr };
  }

  async function assertConsistent(what: string): Promise<void> {
    assertClean(await verifyStore(root), what);
    assert.deepEqual(await readdir(join(root, 'ingest')), [], `${what}: an ingest was left`);
    assert.deepEqual(mountsUnder(root), [], `${what}: a mount was left`);
  }

  test('ENOSPC inside a RUN fails the step with the shell’s message; the store stays consistent', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const r = await buildWith('FROM busybox:local\nRUN dd if=/dev/zero of=/big bs=1M count=64\n');
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /No space left on device/);
    await assertConsistent('after ENOSPC in RUN');
  });

  test('ENOSPC while the layer blob is written fails the build naming ENOSPC; no partial blob; a smaller build then succeeds', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    // 2.5 MiB of incompressible data fits in the upperdir, but not a second time as a layer blob
    const r = await buildWith('FROM busybox:local\nRUN head -c 2600000 /dev/urandom > /big && dd if=/dev/zero of=/fill bs=64k count=40 2>/dev/null; true\n');
    assert.equal(r.code, 1, `expected the export to run out of space:\n${r.out}`);
    assert.match(r.out, /ENOSPC|no space left/i);
    await assertConsistent('after ENOSPC during export');
    const ok = await buildWith('FROM busybox:local\nRUN echo small > /small\n');
    assert.equal(ok.code, 0, ok.out);
    await assertConsistent('after the next build');
  });

  test('SQLITE_FULL while the cache index is written fails the build naming it; no half record; after freeing space the next build succeeds', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    // a RUN reading 3,000 context files through a bind mount: no layer, but the index rows
    // (one per file, for miss explanations) and the context memo take over 1 MiB (twice that once checkpointed)
    const DF = 'FROM busybox:local\nRUN --mount=type=bind,source=many,target=/m ls /m | wc -l\n';
    const many = await makeContext({});
    try {
      await mkdir(join(many, 'many'));
      // mtimes in the future: no file is memoised at hashing time (the memo takes only files
      // older than the racy window), so whether the memo is written before the RUN no longer
      // depends on how long creating the files took. (One CI run failed here with runc unable
      // to store its state, i.e. the space was gone before the index write; this timing was
      // the one writer found that varies, not shown to be the cause.)
      const future = Date.now() / 1000 + 3600;
      for (let i = 0; i < 3000; i++) {
        const f = join(many, 'many', `file-${String(i).padStart(6, '0')}-${'n'.repeat(60)}`);
        await writeFile(f, '');
        await utimes(f, future, future);
      }
      const fs = statfsSync(root);
      const free = fs.bavail * fs.bsize;
      const leave = 512 * 1024;
      if (free > leave) await writeFile(join(root, 'filler'), Buffer.alloc(free - leave));
      const r = await runTsbuild(root, ['build', '--progress', 'plain', '--no-cache', '-f', '-', many], { input: DF, env: { SOURCE_DATE_EPOCH: '0' } });
      assert.equal(r.code, 1, `expected the index write to run out of space:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, /database or disk is full|SQLITE_FULL/, 'expected the failure to be SQLite running out of space');
      assert.doesNotMatch(r.stderr, /\n\s+at .*\.js:\d+/, 'expected a clean error, not a stack trace');
      await unlink(join(root, 'filler'));
      await assertConsistent('after SQLITE_FULL');
      const store = await BuildStore.open(root);
      try {
        assert.equal(store.recovery.dbBackup, undefined, 'a full disk is not corruption: the index must be kept');
        assert.equal(store.db.db.pragma('integrity_check', { simple: true }), 'ok');
        const orphans = store.db.db.prepare('SELECT COUNT(*) AS n FROM record_files WHERE key NOT IN (SELECT key FROM records)').get() as { n: number };
        assert.equal(orphans.n, 0, 'file rows without their record');
        assertClean(await checkStore(store), 'after SQLITE_FULL');
      } finally {
        await store.close();
      }
      const ok = await runTsbuild(root, ['build', '--progress', 'plain', '-f', '-', many], { input: DF, env: { SOURCE_DATE_EPOCH: '0' } });
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      await assertConsistent('after the build that followed SQLITE_FULL');
    } finally {
      await unlink(join(root, 'filler')).catch(() => undefined);
      await rm(many, { recursive: true, force: true });
    }
  });
});
