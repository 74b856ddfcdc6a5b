/**
 * relinkUnchanged links a previous run's file only when the copy would give it the same
 * size, mode, owner and mtime. Mtimes go through utimes(seconds as a double), which keeps
 * whole microseconds: the comparison must accept that rounding and nothing coarser.
 */
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { relinkUnchanged, type RelinkCandidate } from './relink.js';

describe('relinkUnchanged', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsbuild-relink-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  let n = 0;

  /** a previous upper dir holding /d/f written as the copy writes it (mtime through utimes) */
  const setup = (mtimeMs: number): { prev: string; upper: string } => {
    const prev = join(dir, `prev${n}`);
    const upper = join(dir, `upper${n++}`);
    mkdirSync(join(prev, 'd'), { recursive: true });
    mkdirSync(upper);
    writeFileSync(join(prev, 'd', 'f'), 'hello', { mode: 0o644 });
    utimesSync(join(prev, 'd', 'f'), mtimeMs / 1000, mtimeMs / 1000);
    return { prev, upper };
  };
  const cand = (mtimeMs: number, over: Partial<RelinkCandidate> = {}): RelinkCandidate => ({ containerPath: '/d/f', size: 5, mode: 0o644, mtimeMs, ...over });

  it('links a file whose copy lost sub-microsecond digits of its mtime', () => {
    // at this epoch the division by 1000 and utimes' truncation to µs put the copy 1.2 µs below
    const ms = 1796285575143.152;
    const { prev, upper } = setup(ms);
    assert.ok(lstatSync(join(prev, 'd', 'f')).mtimeMs !== ms, 'the copy rounded the mtime (the case under test)');
    const linked = relinkUnchanged(prev, upper, owner, [cand(ms)]);
    assert.deepEqual([...linked.keys()], ['/d/f']);
    assert.equal(lstatSync(join(upper, 'd', 'f')).ino, lstatSync(join(prev, 'd', 'f')).ino);
  });

  it('does not link when the mtime, size, mode or owner differ', () => {
    const ms = 1796285575143.152;
    for (const c of [cand(ms + 5), cand(ms - 1), cand(ms, { size: 6 }), cand(ms, { mode: 0o600 })]) {
      const { prev, upper } = setup(ms);
      assert.equal(relinkUnchanged(prev, upper, owner, [c]).size, 0, JSON.stringify(c));
      assert.equal(lstatSync(join(upper, 'd', 'f'), { throwIfNoEntry: false }), undefined);
    }
    const { prev, upper } = setup(ms);
    assert.equal(relinkUnchanged(prev, upper, { uid: owner.uid + 1, gid: owner.gid }, [cand(ms)]).size, 0);
  });
});
