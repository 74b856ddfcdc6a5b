import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { mkdir, mkdtemp, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CacheDb } from '../cache/cache-db.js';
import { BuildContext } from './build-context.js';

const sha = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** a whole second in the past, so sub-second parts are ours */
const T = 1_700_000_000;

describe('context memo', () => {
  let base: string;
  let ctx: string;
  let db: CacheDb;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tsbuild-ctxmemo-'));
    ctx = join(base, 'ctx');
    await mkdir(join(ctx, 'sub'), { recursive: true });
    db = CacheDb.open(join(base, 'cache.db'));
  });
  after(async () => {
    db.close();
    await rm(base, { recursive: true, force: true });
  });

  /** digest of one file through a fresh context (a new build), and its per-file digest */
  async function digestOf(rel: string, racyWindowMs = 0): Promise<string> {
    const bc = await BuildContext.open(ctx, db, { racyWindowMs });
    const d = await bc.digestSources(await bc.match(rel));
    const f = d.files.find((x) => x.path === rel);
    assert.ok(f, `a file digest for ${rel}`);
    return d.digest;
  }
  async function keyOfContent(rel: string, content: string): Promise<string> {
    // the same key as digestSources gives for a single file with this content (mode 644)
    const h = createHash('sha256').update(`source ${rel} file\n"${rel.split('/').pop()}" file 644 ${sha(content)}`);
    return `sha256:${h.digest('hex')}`;
  }

  it('an edit keeping size and mtime second (sub-second mtime differs) is seen; the memo answers otherwise', async () => {
    const f = join(ctx, 'a.txt');
    await writeFile(f, 'hello\n', { mode: 0o644 });
    await utimes(f, T + 0.1, T + 0.1);
    await sleep(20); // the change is older than the context's start (racy window 0)
    assert.equal(await digestOf('a.txt'), await keyOfContent('a.txt', 'hello\n'));
    const row = db.loadDirMemo(ctx);
    assert.deepEqual(row?.names, ['a.txt'], 'memoised');
    const st = lstatSync(f);
    assert.deepEqual([...row!.stats], [st.size, st.mtimeMs, st.ctimeMs, st.ino]);

    // the memo is what answers: a row with the file's exact stat but another digest wins...
    const fake = 'ab'.repeat(32);
    db.saveDirMemos(new Map([[ctx, { names: ['a.txt'], stats: Float64Array.of(st.size, st.mtimeMs, st.ctimeMs, st.ino), digests: fake }]]));
    const bc = await BuildContext.open(ctx, db, { racyWindowMs: 0 });
    const lied = await bc.digestSources(await bc.match('a.txt'));
    assert.equal(lied.files[0]!.digest, sha(`file 644 sha256:${fake}`));
    // ...and a row differing only in mtime by 1 µs (same second) does not
    db.saveDirMemos(new Map([[ctx, { names: ['a.txt'], stats: Float64Array.of(st.size, st.mtimeMs + 0.001, st.ctimeMs, st.ino), digests: fake }]]));
    assert.equal(await digestOf('a.txt'), await keyOfContent('a.txt', 'hello\n'));

    // a real same-size edit with the mtime set to the same second, 1 µs later
    await writeFile(f, 'jello\n');
    await utimes(f, T + 0.100001, T + 0.100001);
    await sleep(20);
    assert.equal(lstatSync(f).mtimeMs !== st.mtimeMs, true, 'sub-second mtimes differ as doubles');
    assert.equal(await digestOf('a.txt'), await keyOfContent('a.txt', 'jello\n'));
    assert.deepEqual([...db.loadDirMemo(ctx)!.stats].slice(1, 2), [lstatSync(f).mtimeMs], 'memo updated');
  });

  it('a touch keeps the digest and updates the memo; files changed within the racy window are hashed but not memoised', async () => {
    const f = join(ctx, 'sub', 't.txt');
    await writeFile(f, 'same\n');
    const key = await keyOfContent('sub/t.txt', 'same\n');
    assert.equal(await digestOf('sub/t.txt', 60_000), key);
    assert.equal(db.loadDirMemo(join(ctx, 'sub')), undefined, 'just written: racy, not memoised');
    await utimes(f, T, T);
    await sleep(20);
    assert.equal(await digestOf('sub/t.txt'), key);
    assert.equal(db.loadDirMemo(join(ctx, 'sub'))!.stats[1], T * 1000);
    await utimes(f, T + 5, T + 5);
    await sleep(20);
    assert.equal(await digestOf('sub/t.txt'), key, 'touch: same digest');
    assert.equal(db.loadDirMemo(join(ctx, 'sub'))!.stats[1], (T + 5) * 1000, 'touch: memo row updated');
  });

  it('a walk memoises a directory, drops removed names, and is read once per build', async () => {
    const dir = join(ctx, 'w');
    await mkdir(dir);
    for (const n of ['x', 'y', 'z']) {
      await writeFile(join(dir, n), `${n}\n`);
      await utimes(join(dir, n), T, T);
    }
    await sleep(20);
    const bc = await BuildContext.open(ctx, db, { racyWindowMs: 0 });
    const first = await bc.match('w');
    assert.deepEqual(first[0]!.entries.map((e) => e.rel), ['w', 'w/x', 'w/y', 'w/z']);
    const d1 = await bc.digestSources(first);
    assert.deepEqual(db.loadDirMemo(dir)?.names, ['x', 'y', 'z']);
    await unlink(join(dir, 'y'));
    // the same build sees the context as it first read it
    const again = await bc.match('w');
    assert.equal(again[0]!.entries.length, 4);
    assert.equal((await bc.digestSources(again)).digest, d1.digest);
    // the next build sees the removal and drops it from the memo row
    const bc2 = await BuildContext.open(ctx, db, { racyWindowMs: 0 });
    const d2 = await bc2.digestSources(await bc2.match('w'));
    assert.notEqual(d2.digest, d1.digest);
    assert.deepEqual(db.loadDirMemo(dir)?.names, ['x', 'z']);
    assert.deepEqual(d2.files.map((f) => f.path), ['w/x', 'w/z']);
  });

  it('a damaged memo row reads as absent', () => {
    db.saveDirMemos(new Map([['/nowhere', { names: ['a', 'b'], stats: new Float64Array(4), digests: 'ab'.repeat(32) }]]));
    assert.equal(db.loadDirMemo('/nowhere'), undefined);
  });
});
