import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ContentStore } from '../content/index.js';
import { UnsafeLayerError } from '../errors.js';
import { writeLayer } from '../layer/index.js';
import { withMount } from '../snapshots/mount.js';
import { openSnapshotter } from '../snapshots/snapshotter.js';
import { privilegedSkip } from '../testsuite/privileged.js';
import { treeManifest } from '../testsuite/tree-manifest.js';
import type { TarEntry } from '../tar/types.js';
import { packEntries } from '../tar/writer.js';
import { applyLayer } from './apply-layer.js';
import { unpackImage } from './unpack.js';

const skip = privilegedSkip();

/** H-TAR: raw entries, names written verbatim (no normalisation). */
function file(path: string, extra: Partial<TarEntry> = {}): TarEntry {
  return { path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, ...extra };
}
function sym(path: string, linkname: string): TarEntry {
  return { path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, linkname };
}
function hard(path: string, linkname: string): TarEntry {
  return { path, type: 'link', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, linkname };
}
function dir(path: string): TarEntry {
  return { path, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000 };
}

describe('applyLayer safety', { skip }, () => {
  // Created at definition time: the H-TAR cases below embed the sentinel's path.
  const base = skip ? '' : mkdtempSync(join(tmpdir(), 'tsbuild-apply-'));
  const sentinel = join(base, 'sentinel');
  let sentinelBefore: string[];
  let canaryIno: number;
  before(async () => {
    await mkdir(join(sentinel, 'dir'), { recursive: true });
    await writeFile(join(sentinel, 'canary'), 'canary');
    await chmod(join(sentinel, 'canary'), 0o400);
    await writeFile(join(sentinel, 'victim'), 'victim');
    sentinelBefore = await treeManifest(sentinel, { mtimes: true });
    canaryIno = (await stat(join(sentinel, 'canary'))).ino;
  });
  after(async () => {
    assert.deepEqual(await treeManifest(sentinel, { mtimes: true }), sentinelBefore, 'sentinel unchanged');
    await rm(base, { recursive: true, force: true });
  });

  const refused: Array<[string, TarEntry[]]> = [
    ['dot-dot name', [file('../sentinel/dir/pwned')]],
    ['dot-dot inside name', [dir('a'), file('a/../../sentinel/dir/pwned2')]],
    ['./.. name', [file('./../x')]],
    ['entry named ..', [dir('..')]],
    ['symlink parent leaving the root', [sym('esc', '../sentinel/dir'), file('esc/pwned')]],
    ['absolute symlink with .. above the root', [sym('esc', '/../../sentinel/dir'), file('esc/pwned')]],
    ['symlink chain leaving the root', [dir('x'), sym('x/up', '..'), sym('x/up2', 'up/..'), file('x/up2/pwned')]],
    ['hardlink with ..', [hard('localpasswd', '../../../sentinel/canary')]],
    ['hardlink to an absolute host path', [hard('lp2', join(sentinel, 'canary'))]],
    ['hardlink through an escaping symlink', [sym('d1', '../../sentinel'), hard('lp3', 'd1/canary')]],
    ['whiteout .wh..', [file('.wh..')]],
    ['whiteout .wh...', [dir('etc'), file('etc/.wh...')]],
    ['trusted.* xattr', [file('t', { xattrs: new Map([['trusted.foo', Buffer.from('1')]]) })]],
    // The applier caches resolved parent dirs: a directory replaced later in the same
    // layer (by a symlink, directly or after a whiteout or an opaque marker) must be
    // resolved again.
    ['dir replaced by an escaping symlink after use', [dir('a'), file('a/x'), sym('a', '../sentinel/dir'), file('a/pwned')]],
    ['implicit dir replaced by an escaping symlink', [file('b/c/x'), sym('b/c', '../../sentinel/dir'), file('b/c/pwned')]],
    ['dir whited out, then an escaping symlink', [dir('w'), file('w/x'), file('.wh.w'), sym('w', '../sentinel/dir'), file('w/pwned')]],
    ['opaque parent, then an escaping symlink', [dir('o'), dir('o/d'), file('o/d/x'), file('o/.wh..wh..opq'), sym('o/d', '../../sentinel/dir'), file('o/d/pwned')]],
  ];
  for (const [name, entries] of refused) {
    it(`refuses: ${name}`, async () => {
      const target = await mkdtemp(join(base, 't-'));
      await assert.rejects(applyLayer(packEntries(entries), target), (e: unknown) => {
        assert.ok(e instanceof UnsafeLayerError, String(e));
        assert.equal(e.code, 'INVALID_ARGUMENT');
        return true;
      });
      assert.deepEqual(await readdir(join(sentinel, 'dir')), []);
    });
  }

  it('re-roots absolute names and absolute symlinks inside the target (as if chrooted)', async () => {
    const target = await mkdtemp(join(base, 't-'));
    await applyLayer(
      packEntries([file(`/${sentinel.slice(1)}/dir/abs`), dir('etc'), sym('localetc', '/etc'), file('localetc/unbroken'), sym('localetc2', '/dummy/../etc'), file('localetc2/x')]),
      target,
    );
    assert.ok((await lstat(join(target, sentinel, 'dir/abs'))).isFile());
    assert.ok((await lstat(join(target, 'etc/unbroken'))).isFile());
    assert.ok((await lstat(join(target, 'etc/x'))).isFile());
    assert.equal(await readlink(join(target, 'localetc')), '/etc');
  });

  it('whiteouts remove the link, not its target, and only inside the root', async () => {
    const target = await mkdtemp(join(base, 't-'));
    await applyLayer(packEntries([dir('etc'), file('etc/whitedout'), file('etc/keep'), sym('localetc', '/etc'), sym('host', join(sentinel))]), target);
    await applyLayer(packEntries([file('localetc/.wh.whitedout'), file('.wh.host'), file(`${sentinel.slice(1)}/.wh.victim`)]), target);
    assert.deepEqual((await readdir(join(target, 'etc'))).sort(), ['keep']);
    await assert.rejects(lstat(join(target, 'host')));
    assert.equal(await readFile(join(sentinel, 'victim'), 'utf8'), 'victim');
  });

  it('a hardlink to an in-root path never links a host inode', async () => {
    const target = await mkdtemp(join(base, 't-'));
    await applyLayer(packEntries([dir('tmp'), dir(`${sentinel.slice(1)}`), file(`${sentinel.slice(1)}/canary`), hard('lp', `/${sentinel.slice(1)}/canary`)]), target);
    assert.notEqual((await stat(join(target, 'lp'))).ino, canaryIno);
    assert.equal((await stat(join(sentinel, 'canary'))).mode & 0o777, 0o400);
  });

  it('overlayWhiteouts writes char 0/0 whiteouts and opaque xattrs, never marker files', async () => {
    const target = await mkdtemp(join(base, 't-'));
    await applyLayer(packEntries([file('.wh.gone'), dir('d'), file('d/.wh..wh..opq'), file('d/new'), file('.wh.kept'), file('kept')]), target, { overlayWhiteouts: true });
    const st = await lstat(join(target, 'gone'));
    assert.ok(st.isCharacterDevice() && st.rdev === 0);
    assert.ok((await lstat(join(target, 'kept'))).isFile(), 'a whiteout only hides lower layers');
    assert.deepEqual(await readdir(join(target, 'd')), ['new']);
    const x = execFileSync('getfattr', ['-h', '--only-values', '-n', 'trusted.overlay.opaque', join(target, 'd')]).toString();
    assert.equal(x, 'y');
  });

  it('unpackImage is transactional: a refused layer leaves existing snapshots unchanged and no active snapshot behind', async () => {
    const s = await openSnapshotter(join(base, 'snap'));
    const store = await ContentStore.open(join(base, 'content'));
    const good = await writeLayer(packEntries([dir('etc'), file('etc/ok')]), store, { compression: 'uncompressed' });
    const bad = await writeLayer(packEntries([file('etc/ok2'), sym('esc', '../../..'), file('esc/pwned')]), store, { compression: 'uncompressed' });
    const top = await unpackImage(store, s, [good]);
    const before = await withMount(await s.view('v1', top), (d) => treeManifest(d, { mtimes: true }));
    await assert.rejects(unpackImage(store, s, [good, bad]), UnsafeLayerError);
    const keys: string[] = [];
    for await (const i of s.walk()) keys.push(`${i.key}:${i.kind}`);
    assert.deepEqual(keys.sort(), [`${top}:committed`, 'v1:view']);
    assert.deepEqual(await withMount(await s.mounts('v1'), (d) => treeManifest(d, { mtimes: true })), before);
  });
});
