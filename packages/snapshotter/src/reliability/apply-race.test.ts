/**
 * The metadata calls of layer application against a concurrent symlink swap (catalog
 * T12, the TOCTOU part; containerd's TestLchmodDoesNotFollowSymlink and
 * TestFchmodDirRefusesSymlink shapes). A layer of directories and FIFOs with an owner,
 * mode and mtime of their own is applied again and again while a second process swaps
 * each of those names for a symlink to a sentinel outside the root and back. Whether an
 * apply succeeds or fails, the sentinel's owner, mode, mtime and content never change.
 * Root only (the applier chowns); bounded by iterations and time.
 */
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TarEntry } from '../tar/types.js';
import { packEntries } from '../tar/writer.js';
import { applyLayer } from '../apply/apply-layer.js';
import { startSwapper } from '../testing/swapper.js';

const NAMES = 2;
/** each directory entry is repeated: every copy is one more metadata call (one more window) on the swapped name */
const REPEATS = 256;
/** FIFOs are made with mknod(1), one process each: fewer of them keep an apply fast */
const FIFOS = 1;
const ITERATIONS = 150;
const MAX_MS = 6000;

interface State {
  uid: number;
  gid: number;
  mode: number;
  mtimeMs: number;
  ino: number;
}
const state = (p: string): State => {
  const st = lstatSync(p);
  return { uid: st.uid, gid: st.gid, mode: st.mode, mtimeMs: st.mtimeMs, ino: st.ino };
};

test('T12: chown/chmod/utimes of the applier never land on a host file through a concurrently swapped symlink', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('the applier race test needs root (the layer sets owners)');
    return t.skip('needs root (the layer sets owners)');
  }
  const base = await mkdtemp(join(tmpdir(), 'tsbuild-apply-race-'));
  const sdir = join(base, 'sentinel-dir');
  const sfile = join(base, 'sentinel-file');
  mkdirSync(sdir, { mode: 0o700 });
  await writeFile(join(sdir, 'inside'), 'inside\n');
  await writeFile(sfile, 'sentinel\n');
  await chmod(sfile, 0o600);
  const before = { dir: state(sdir), file: state(sfile), inside: state(join(sdir, 'inside')) };
  // what the layer would set, were a call to follow the swapped-in link
  const meta = { uid: 4242, gid: 4343, mode: 0o4777, mtime: 1_234_567 };
  const entries: TarEntry[] = [];
  for (let i = 0; i < NAMES; i++) {
    for (let r = 0; r < REPEATS; r++) entries.push({ path: `d${i}`, type: 'directory', size: 0, ...meta });
    if (i < FIFOS) entries.push({ path: `p${i}`, type: 'fifo', size: 0, ...meta, mode: 0o6777 });
  }
  const chunks: Buffer[] = [];
  for await (const c of packEntries(entries)) chunks.push(c as Buffer);
  const layer = Buffer.concat(chunks);
  const root = join(base, 'root');
  // d<i> swapped for a symlink to the sentinel dir, p<i> for one to the sentinel file
  const pairs: [string, string][] = [];
  for (let i = 0; i < NAMES; i++) pairs.push([`d${i}`, sdir], ...(i < FIFOS ? [[`p${i}`, sfile] as [string, string]] : []));
  const swapper = startSwapper(root, pairs, MAX_MS);
  let swaps = 0;
  let applied = 0;
  let failed = 0;
  const started = Date.now();
  try {
    for (let i = 0; i < ITERATIONS && Date.now() - started < MAX_MS - 500; i++) {
      // a fresh root each time (the swapper keeps working on the name): the last one is moved aside
      if (i > 0) renameSync(root, join(base, `old-${i}`));
      mkdirSync(root);
      try {
        await applyLayer([layer], root);
        applied++;
      } catch {
        // a swapped name can make an entry fail (EEXIST, ENOENT...): allowed, a write outside is not
        failed++;
      }
      assert.deepEqual(state(sdir), before.dir, `iteration ${i}: the sentinel directory's owner, mode or mtime changed`);
      assert.deepEqual(state(sfile), before.file, `iteration ${i}: the sentinel file's owner, mode or mtime changed`);
      assert.deepEqual(state(join(sdir, 'inside')), before.inside);
      assert.deepEqual(readdirSync(sdir), ['inside'], `iteration ${i}: an entry was created in the sentinel directory`);
      assert.equal(readFileSync(sfile, 'utf8'), 'sentinel\n');
    }
  } finally {
    swaps = await swapper.stop();
    await rm(base, { recursive: true, force: true });
  }
  t.diagnostic(`${applied + failed} applies (${failed} failed cleanly) against ${swaps} swaps in ${Date.now() - started} ms`);
  assert.ok(applied + failed >= 10, `expected at least 10 applies in the time bound, found ${applied + failed}`);
});
