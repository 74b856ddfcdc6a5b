/**
 * COPY of hard links, FIFOs, device nodes and sockets from a build context, as BuildKit
 * 0.13 copies them (checked by hand against it; the fidelity case `copy-special` covers
 * the same from a stage, where the Dockerfile itself can make them): the later names of
 * a hard-link group within one source become links to the first one's copy; a FIFO or
 * device node is made anew; a socket becomes an empty regular file. Git cannot hold such
 * files, so the context is made here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, lstat, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applyLayer, openLayerStream } from '@tsbuild/snapshotter';
import { build, type BuildResult } from '../index.js';
import type { ProgressEvent } from '../progress.js';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';

describe('COPY of hard links and special files from a context', { concurrency: false }, () => {
  let ts: TestStore;
  let ctx: string;
  let outside: string;
  let sockServer: Server | undefined;
  let ok = true;
  const flats: string[] = [];

  before(async (c) => {
    ok = requireBuildPrereqs(c as unknown as { skip(m: string): void });
    if (!ok) return;
    ts = await tempStoreWithBusybox();
    ctx = await mkdtemp(join(tmpdir(), 'tsbuild-special-'));
    outside = await mkdtemp(join(tmpdir(), 'tsbuild-special-out-'));
    await mkdir(join(ctx, 'd/sub'), { recursive: true });
    await writeFile(join(ctx, 'd/f'), 'shared\n');
    await link(join(ctx, 'd/f'), join(ctx, 'd/sub/hl'));
    await link(join(ctx, 'd/f'), join(ctx, 'top-hl'));
    // linked only to a file outside the context: an ordinary file in the image
    await writeFile(join(ctx, 'd/solo'), 'solo\n');
    await link(join(ctx, 'd/solo'), join(outside, 'solo'));
    await writeFile(join(ctx, 'd/other'), 'other\n');
    execFileSync('mknod', ['-m', '640', join(ctx, 'd/fifo'), 'p']);
    execFileSync('mknod', ['-m', '600', join(ctx, 'd/null'), 'c', '1', '3']);
    // kept listening: closing the server would remove the socket
    sockServer = createServer();
    await new Promise<void>((r) => sockServer!.listen(join(ctx, 'd/sock'), r));
  });
  after(async () => {
    if (!ok) return;
    sockServer?.close();
    await ts.cleanup();
    await rm(ctx, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
    for (const d of flats) await rm(d, { recursive: true, force: true });
  });

  const run = async (dockerfile: string) => {
    // outside the context: `COPY . /all/` copies all of it
    const df = join(outside, 'Dockerfile');
    await writeFile(df, dockerfile);
    const events: ProgressEvent[] = [];
    const res = await build(ts.store, { context: ctx, dockerfile: df, onProgress: (e) => events.push(e) });
    return { res, events };
  };

  /** The image's filesystem, applied layer by layer into a temp dir. */
  const flatten = async (res: BuildResult): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-special-flat-'));
    flats.push(dir);
    for (const l of res.image.manifest.layers) await applyLayer(openLayerStream(ts.store.content, l), dir);
    return dir;
  };

  const copyDf = 'FROM busybox:local\nCOPY d /d/\nCOPY . /all/\nCOPY d/f d/sub/hl /sep/\n';

  it('keeps hard links within one source, makes FIFOs and devices, turns a socket into an empty file', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const root = await flatten((await run(copyDf)).res);
    const f = await lstat(join(root, 'd/f'));
    const hl = await lstat(join(root, 'd/sub/hl'));
    assert.equal(hl.ino, f.ino, 'd/sub/hl is a link to d/f');
    assert.equal(f.nlink, 2, 'only the two names of this source share the inode');
    const all = await lstat(join(root, 'all/d/f'));
    assert.equal((await lstat(join(root, 'all/top-hl'))).ino, all.ino, 'a group spans the directories of one source');
    assert.equal((await lstat(join(root, 'all/d/sub/hl'))).ino, all.ino);
    assert.notEqual(all.ino, f.ino, 'two COPY instructions: two inodes');
    assert.notEqual((await lstat(join(root, 'sep/f'))).ino, (await lstat(join(root, 'sep/hl'))).ino, 'separate sources are not linked');
    assert.equal((await lstat(join(root, 'd/solo'))).nlink, 1, 'a link to outside the source is an ordinary file');
    const fifo = await lstat(join(root, 'd/fifo'));
    assert.ok(fifo.isFIFO());
    assert.equal(fifo.mode & 0o7777, 0o640);
    const dev = await lstat(join(root, 'd/null'));
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, (await lstat('/dev/null')).rdev);
    assert.equal(dev.mode & 0o7777, 0o600);
    const sock = await lstat(join(root, 'd/sock'));
    assert.ok(sock.isFile(), 'a socket is copied as an empty regular file');
    assert.equal(sock.size, 0);
  });

  it('a change of the link structure alone misses the cache; a rebuild relinks nothing of a group', async (t) => {
    if (!ok) return t.skip('prerequisites missing');
    const hit = await run(copyDf);
    assert.ok(hit.res.steps.every((s) => s.cached), 'an identical rebuild hits');
    // same names and contents, but d/sub/hl is now a file of its own
    await rm(join(ctx, 'd/sub/hl'));
    await writeFile(join(ctx, 'd/sub/hl'), 'shared\n');
    const miss = await run('FROM busybox:local\nCOPY d /d/\n');
    const copy = miss.res.steps.find((s) => s.description.includes('COPY d /d/'));
    assert.ok(copy && !copy.cached);
    assert.match(copy.reason ?? '', /d\/sub\/hl changed/);
    const root = await flatten(miss.res);
    assert.notEqual((await lstat(join(root, 'd/sub/hl'))).ino, (await lstat(join(root, 'd/f'))).ino, 'no longer linked');
    // linked again, and an unrelated file changed: the COPY misses and may reuse the
    // unchanged files of its last run, but the group is copied and linked anew
    await rm(join(ctx, 'd/sub/hl'));
    await link(join(ctx, 'd/f'), join(ctx, 'd/sub/hl'));
    await writeFile(join(ctx, 'd/other'), 'changed\n');
    const again = await flatten((await run('FROM busybox:local\nCOPY d /d/\n')).res);
    const f = await lstat(join(again, 'd/f'));
    assert.equal((await lstat(join(again, 'd/sub/hl'))).ino, f.ino);
    assert.equal(f.nlink, 2);
  });
});
