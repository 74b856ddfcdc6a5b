import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { privilegedSkip } from '../testsuite/privileged.js';
import { treeManifest } from '../testsuite/tree-manifest.js';
import type { TarEntry } from '../tar/types.js';
import { packEntries } from '../tar/writer.js';
import { native, setNativeEnabled, type NativeError } from '../util/native.js';
import { applyLayer } from './apply-layer.js';

const skip = privilegedSkip();
const sys = native();
const T = 1_600_000_000;

describe('writeFiles (addon)', { skip: skip || (sys ? false : 'the addon is not built') }, () => {
  let base = '';
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tsbuild-wf-'));
  });
  after(() => rm(base, { recursive: true, force: true }));

  it('creates each file from its chunks, then owner, mode (setuid kept after the chown) and times', async () => {
    const d = await mkdtemp(join(base, 'ok-'));
    const paths = Buffer.from(`${join(d, 'a')}\0${join(d, 'b')}\0${join(d, 'empty')}\0`);
    const meta = Float64Array.from([2, 1234, 5678, 0o4755, T, 1, 1, 0, 0, 0o600, T + 1, 0, 0, 0, 0, 0o640, T + 2, 0]);
    await sys!.writeFiles(paths, meta, [Buffer.from('hel'), Buffer.from('lo'), Buffer.from('b')]);
    const a = await lstat(join(d, 'a'));
    assert.equal(await readFile(join(d, 'a'), 'utf8'), 'hello');
    assert.deepEqual([a.uid, a.gid, a.mode & 0o7777, a.mtimeMs / 1000, a.atimeMs / 1000], [1234, 5678, 0o4755, T, T]);
    const b = await lstat(join(d, 'b'));
    assert.equal(await readFile(join(d, 'b'), 'utf8'), 'b');
    assert.deepEqual([b.uid, b.mode & 0o7777, b.mtimeMs / 1000], [process.geteuid!(), 0o600, T + 1]);
    assert.equal((await lstat(join(d, 'empty'))).size, 0);
  });

  it('never replaces or follows what is there: EEXIST names the path, and the batch stops', async () => {
    const d = await mkdtemp(join(base, 'exist-'));
    await writeFile(join(d, 'taken'), 'keep');
    const paths = Buffer.from(`${join(d, 'taken')}\0${join(d, 'after')}\0`);
    const meta = Float64Array.from([1, 0, 0, 0o644, T, 0, 1, 0, 0, 0o644, T, 0]);
    await assert.rejects(sys!.writeFiles(paths, meta, [Buffer.from('x'), Buffer.from('y')]), (e: NativeError) => {
      assert.equal(e.code, 'EEXIST');
      assert.equal(e.syscall, 'open');
      assert.equal(e.path, join(d, 'taken'));
      return true;
    });
    assert.equal(await readFile(join(d, 'taken'), 'utf8'), 'keep');
    await assert.rejects(lstat(join(d, 'after')), { code: 'ENOENT' });
  });

  it('refuses arguments that do not describe the batch', async () => {
    const d = await mkdtemp(join(base, 'bad-'));
    assert.throws(() => sys!.writeFiles(Buffer.from(`${d}/x\0`), Float64Array.from([1, 0, 0, 0o644, T]), [Buffer.from('x')]), TypeError);
    // more chunks claimed than given: nothing past the check is written
    await assert.rejects(sys!.writeFiles(Buffer.from(`${d}/x\0`), Float64Array.from([2, 0, 0, 0o644, T, 0]), [Buffer.from('x')]), { code: 'EINVAL' });
    await assert.rejects(lstat(join(d, 'x')), { code: 'ENOENT' });
  });
});

/**
 * Layers whose later entries depend on files queued for the pool (a removal above them,
 * a hardlink to one, a second entry of the same name, a whiteout, an opaque directory,
 * a file whose name a queued file's parent takes): the batched applier must give the
 * tree the synchronous one gives. Each case names a file of the last, unsent batch (a
 * batch is sent at 128 files), so a missing flush shows as a different tree or error.
 */
describe('applyLayer with batched file creation', { skip: skip || (sys ? false : 'the addon is not built') }, () => {
  // Created at definition time: the entries below embed the sources' paths.
  const base = skip || !sys ? '' : mkdtempSync(join(tmpdir(), 'tsbuild-batched-'));
  const src = join(base, 'src');
  const f = (path: string, body: string): TarEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: Buffer.byteLength(body), mtime: T, source: join(src, body || 'empty') });
  const link = (path: string, type: 'link' | 'symlink', linkname: string): TarEntry => ({ path, type, mode: 0o777, uid: 0, gid: 0, size: 0, mtime: T, linkname });
  const d = (path: string): TarEntry => ({ path, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: T });
  const many = (dir: string, n: number): TarEntry[] => Array.from({ length: n }, (_, i) => f(`${dir}/f${i}`, `body${i % 7}`));
  before(async () => {
    await mkdir(src);
    for (const body of ['empty', 'one', 'two', 'three', ...Array.from({ length: 7 }, (_, i) => `body${i}`)]) await writeFile(join(src, body), body === 'empty' ? '' : body);
  });
  after(async () => {
    setNativeEnabled(true);
    await rm(base, { recursive: true, force: true });
  });

  // [case, entries, whether the layer applies (else it is refused, the same way on both paths)]
  const layers: Array<[string, TarEntry[], boolean]> = [
    ['a hardlink to a queued file', [d('a'), ...many('a', 300), link('a/link', 'link', 'a/f299')], true],
    ['a directory with queued files replaced by a file', [d('a'), ...many('a', 300), f('a', 'one')], true],
    ['an implicit directory with queued files replaced by a symlink', [...many('imp/x', 200), link('imp/x', 'symlink', '/elsewhere')], true],
    ['the same name twice', [d('a'), ...many('a', 200), f('a/f199', 'two'), f('a/f199', 'three')], true],
    ['a whiteout and an opaque directory after queued files', [d('a'), d('b'), ...many('a', 200), ...many('b', 200), f('.wh.a', ''), f('b/.wh..wh..opq', '')], true],
    ['a queued file that a later entry uses as a parent', [...many('p', 150), f('p/f149/child', 'one')], false],
  ];
  for (const [name, entries, applies] of layers) {
    it(name, async () => {
      const results: Array<string[] | string> = [];
      for (const on of [true, false]) {
        setNativeEnabled(on);
        const target = await mkdtemp(join(base, on ? 'batched-' : 'sync-'));
        try {
          await applyLayer(packEntries(entries), target);
          results.push(await treeManifest(target, { mtimes: true }));
        } catch (e) {
          results.push(`${(e as Error).constructor.name} ${(e as Error).message.replace(target, '<target>')}`);
        }
      }
      setNativeEnabled(true);
      assert.equal(typeof results[1] !== 'string', applies, String(results[1]));
      assert.deepEqual(results[0], results[1]);
    });
  }
});
