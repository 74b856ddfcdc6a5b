/**
 * COPY destinations against a concurrently swapped rootfs path component (catalog T14,
 * the race variant; CVE-2018-15664 shape). No step process can survive into a COPY
 * (each RUN's pid namespace dies with it), so the racer here is the test itself: a
 * second process swaps the destination directory and an intermediate component for
 * symlinks to the sentinel and back, while COPY writes files, a tree and single-file
 * targets through them, again and again. Whether each copy succeeds or fails, nothing
 * is ever written outside the rootfs (H-SENTINEL). Root only (COPY chowns); bounded.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CacheDb } from '../cache/cache-db.js';
import { BuildContext } from '../context/build-context.js';
import { copyInto } from '../ops/copy.js';
import { makeContext, Sentinel } from './test-helpers/harness.js';

const ITERATIONS = 400;
const MAX_MS = 6000;

// argv: rootfs, sentinel dir, deadline. Swaps each name for a symlink to the sentinel dir and back.
const SWAPPER = `
const fs = require('node:fs');
const [root, target, deadline] = process.argv.slice(1);
let swaps = 0;
while (Date.now() < Number(deadline)) {
  for (const name of ['swap', 'deep/mid', 'deep']) {
    const p = root + '/' + name;
    try {
      fs.renameSync(p, p + '.real');
      fs.symlinkSync(target, p);
      swaps++;
      fs.unlinkSync(p);
      fs.renameSync(p + '.real', p);
    } catch {}
  }
  if (swaps % 256 === 0) process.stdout.write(swaps + '\\n');
}
`;

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
  const swapper = spawn(process.execPath, ['-e', SWAPPER, rootfs, join(sentinel.dir, 'dir'), String(Date.now() + MAX_MS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let swaps = '0';
  swapper.stdout.on('data', (d: Buffer) => (swaps = d.toString().trim().split('\n').at(-1) ?? swaps));
  const exited = new Promise((r) => swapper.once('exit', r));
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
    swapper.kill('SIGKILL');
    await exited;
    db.close();
    await rm(base, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
    await sentinel.cleanup();
  }
  t.diagnostic(`${copies} copies (${failed} failed cleanly) against ${swaps}+ swaps in ${Date.now() - started} ms`);
  assert.ok(copies >= 100, `expected at least 100 copies in the time bound, found ${copies}`);
});
