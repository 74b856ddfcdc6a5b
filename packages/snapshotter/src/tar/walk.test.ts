import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { native, setNativeEnabled } from '../util/native.js';
import { comparePaths, scanTree, sortByPath, type NodeStat } from './walk.js';

const bytewise = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

describe('path order', () => {
  it('sortByPath and comparePaths agree with a UTF-8 byte comparison, surrogates and U+E000.. included', () => {
    const pathChar = fc.constantFrom('a', 'b', '/', '-', '.', 'é', '\u{e000}', '\u{fffd}', '\u{1f600}', '\u{10000}', '0');
    const path = fc.array(pathChar, { minLength: 1, maxLength: 6 }).map((cs) => cs.join(''));
    fc.assert(
      fc.property(fc.array(path, { maxLength: 40 }), (paths) => {
        const want = [...paths].sort(bytewise);
        assert.deepEqual(sortByPath([...paths], (p) => p), want);
        assert.deepEqual([...paths].sort(comparePaths), want);
      }),
      { numRuns: 300 },
    );
  });
  it('puts a parent before its children and "a-b" before "a/b" (bytewise, like the layer tars before)', () => {
    assert.deepEqual(sortByPath(['a/b', 'a', 'a-b', 'a\u{1f600}', 'a\u{e000}'], (p) => p), ['a', 'a-b', 'a/b', 'a\u{e000}', 'a\u{1f600}']);
  });
});

describe('scanTree: the addon and the JS walk agree', () => {
  const fields = (m: Map<string, NodeStat>): unknown[] =>
    [...m].map(([p, s]) => [p, s.mode, s.uid, s.gid, s.size, s.mtimeNs, s.nlink, s.dev, s.ino, s.rdev, s.isFile(), s.isDirectory(), s.isSymbolicLink(), s.isFIFO()]);
  after(() => setNativeEnabled(true));

  it('the same entries and stats, in the same order, for every file type', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'scan-'));
    try {
      await mkdir(join(dir, 'a/b/c'), { recursive: true });
      await writeFile(join(dir, 'a/b/c/deep.txt'), 'deep');
      await writeFile(join(dir, 'é-\u{1f600}'), 'x'.repeat(5000));
      await writeFile(join(dir, 'a-b'), '');
      await link(join(dir, 'a-b'), join(dir, 'a/hard'));
      await symlink('../nowhere', join(dir, 'a/sym'));
      execFileSync('mkfifo', [join(dir, 'a/fifo')]);
      await utimes(join(dir, 'a-b'), 1_600_000_000.123456, 1_600_000_000.123456);
      setNativeEnabled(true);
      assert.ok(native(), 'the addon is built');
      const viaAddon = await scanTree(dir);
      setNativeEnabled(false);
      const viaJs = await scanTree(dir);
      assert.deepEqual(fields(viaAddon), fields(viaJs));
      assert.deepEqual([...viaAddon.keys()], ['a', 'a-b', 'a/b', 'a/b/c', 'a/b/c/deep.txt', 'a/fifo', 'a/hard', 'a/sym', 'é-\u{1f600}']);
      assert.equal(viaAddon.get('a/hard')!.nlink, 2n);

      // a root that is a symlink to a directory is followed by both; a missing root fails both
      await symlink(dir, `${dir}.link`);
      setNativeEnabled(true);
      assert.deepEqual(fields(await scanTree(`${dir}.link`)), fields(viaJs));
      await assert.rejects(scanTree(join(dir, 'missing')), { code: 'ENOENT' });
      setNativeEnabled(false);
      await assert.rejects(scanTree(join(dir, 'missing')), { code: 'ENOENT' });
    } finally {
      await rm(`${dir}.link`, { force: true });
      await rm(dir, { recursive: true, force: true });
    }
  });
});
