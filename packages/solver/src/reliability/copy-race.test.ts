/**
 * COPY destinations against a concurrently swapped rootfs path component (catalog T14,
 * the race variant; CVE-2018-15664 shape). No step process can survive into a COPY
 * (each RUN's pid namespace dies with it), so the racer here is the test itself: a
 * second process swaps the destination directory, an intermediate component and
 * directories a tree copy makes below them for symlinks to the sentinel and back, while
 * COPY writes files, a tree and single-file targets through them, again and again. Whether each copy succeeds or fails, nothing
 * is ever written outside the rootfs (H-SENTINEL). Root only (COPY chowns); bounded.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startSwapper } from '@tsbuild/snapshotter/testing';
import { CacheDb } from '../cache/cache-db.js';
import { BuildContext } from '../context/build-context.js';
import { copyInto } from '../ops/copy.js';
import { makeContext, Sentinel } from './test-helpers/harness.js';

const ITERATIONS = 400;
const MAX_MS = 6000;

test('T14 race: COPY never writes outside the rootfs while a destination component is swapped for a symlink', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('the COPY race test needs root (COPY chowns)');
    return t.skip('needs root (COPY chowns)');
  }
  const sentinel = await Sentinel.create();
  const base = await mkdtemp(join(tmpdir(), 'tsbuild-copy-race-'));
  const rootfs = join(base, 'rootfs');
  mkdirSync(join(rootfs, 'swap'), { recursive: true });
  mkdirSync(join(rootfs, 'deep', 'mid'), { recursive: true });
  const files: Record<string, string> = { f: 'payload\n' };
  for (let i = 0; i < 16; i++) files[`tree/d${i % 4}/file${i}`] = `tree ${i}\n`;
  const dir = await makeContext(files);
  const db = CacheDb.open(join(base, 'cache.db'));
  // the destination and its parents, and directories the tree copies make below them
  const swapper = startSwapper(rootfs, ['swap', 'deep/mid', 'deep', 'swap/t/d0', 'swap/t', 'deep/mid/d1'].map((n) => [n, join(sentinel.dir, 'dir')] as const), MAX_MS);
  let swaps = 0;
  let copies = 0;
  let failed = 0;
  const started = Date.now();
  try {
    const source = await BuildContext.open(dir, db);
    const jobs: { pattern: string; dest: string }[] = [
      { pattern: 'f', dest: '/swap/' },
      { pattern: 'f', dest: '/deep/mid/f2' },
      { pattern: 'tree', dest: '/swap/t/' },
      { pattern: 'tree', dest: '/deep/mid/' },
    ];
    for (let i = 0; i < ITERATIONS && Date.now() - started < MAX_MS - 500; i++) {
      for (const j of jobs) {
        copies++;
        try {
          await copyInto({ rootfs, source, matches: await source.match(j.pattern), dest: j.dest, multiple: false, chown: { uid: 4242, gid: 4242 } });
        } catch {
          // a swapped component may make a copy fail (not a directory, changed while written...): allowed
          failed++;
        }
      }
      sentinel.assertUnchanged();
    }
  } finally {
    swaps = await swapper.stop();
    db.close();
    await rm(base, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
    await sentinel.cleanup();
  }
  t.diagnostic(`${copies} copies (${failed} failed cleanly) against ${swaps} swaps in ${Date.now() - started} ms`);
  assert.ok(copies >= 100, `expected at least 100 copies in the time bound, found ${copies}`);
});
