/**
 * The native addon (mount(2), umount2(2), l*xattr) and the spawn path it replaces give the
 * same results and the same errors: every test runs once per path.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SystemCommandError } from '../errors.js';
import { isMountPoint, mountAll, unmountAll } from '../snapshots/mount.js';
import { readTreeXattrs, writeXattrs, type Xattrs } from '../tar/system.js';
import { privilegedSkip } from '../testsuite/privileged.js';
import { markInheritedFdsCloexec, native, setNativeEnabled } from './native.js';

const skip = privilegedSkip();
after(() => setNativeEnabled(true));

test('the addon is built (npm ci runs node-gyp) and loads', { skip }, () => {
  setNativeEnabled(true);
  const sys = native();
  assert.ok(sys, 'build/Release/tsbuild_sys.node is missing: run `npm ci` (needs gcc, make, python3)');
  for (const f of ['mount', 'umount2', 'treeXattrs', 'setXattrs', 'hashTar', 'scanTree', 'topDir'] as const) assert.equal(typeof sys[f], 'function');
  setNativeEnabled(false);
  assert.equal(native(), undefined, 'disabled: the spawn path');
  setNativeEnabled(true);
});

async function scratch(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'native-test-'));
}

for (const useNative of [true, false]) {
  const path = useNative ? 'addon' : 'spawn';

  test(`${path}: overlay with relative dirs, bind, read-only bind; unmountAll undoes each`, { skip }, async () => {
    setNativeEnabled(useNative);
    const dir = await scratch();
    try {
      for (const d of ['l1', 'l2', 'u', 'w', 'm', 'b']) await mkdir(join(dir, d));
      await writeFile(join(dir, 'l1', 'top'), 'l1');
      await writeFile(join(dir, 'l2', 'top'), 'l2');
      await writeFile(join(dir, 'l2', 'low'), 'low');
      const options = [`lowerdir=${join(dir, 'l1')}:${join(dir, 'l2')}`, `upperdir=${join(dir, 'u')}`, `workdir=${join(dir, 'w')}`];
      await mountAll([{ type: 'overlay', source: 'overlay', options }], join(dir, 'm'));
      assert.ok(await isMountPoint(join(dir, 'm')));
      assert.equal(await readFile(join(dir, 'm', 'top'), 'utf8'), 'l1', 'the first lowerdir is on top');
      assert.equal(await readFile(join(dir, 'm', 'low'), 'utf8'), 'low');
      await writeFile(join(dir, 'm', 'new'), 'x');
      assert.equal(await readFile(join(dir, 'u', 'new'), 'utf8'), 'x', 'writes land in the upperdir');
      await unmountAll(join(dir, 'm'));
      assert.equal(await isMountPoint(join(dir, 'm')), false);

      // a read-only bind mount refuses writes; the source stays writable
      await mountAll([{ type: 'bind', source: join(dir, 'l1'), options: ['rbind', 'ro'] }], join(dir, 'b'));
      assert.equal(await readFile(join(dir, 'b', 'top'), 'utf8'), 'l1');
      await assert.rejects(writeFile(join(dir, 'b', 'x'), 'x'), { code: 'EROFS' });
      await writeFile(join(dir, 'l1', 'x'), 'x');
      await unmountAll(join(dir, 'b'));
      assert.equal(await isMountPoint(join(dir, 'b')), false);

      // two mounts stacked on one target: unmountAll takes both off
      await mountAll([{ type: 'bind', source: join(dir, 'l1'), options: ['rbind', 'rw'] }, { type: 'bind', source: join(dir, 'l2'), options: ['rbind', 'rw'] }], join(dir, 'b'));
      assert.equal(await readFile(join(dir, 'b', 'top'), 'utf8'), 'l2');
      await unmountAll(join(dir, 'b'));
      assert.equal(await isMountPoint(join(dir, 'b')), false);
      // not a mount point, or missing: nothing to do, no error
      await unmountAll(join(dir, 'b'));
      await unmountAll(join(dir, 'missing'));
    } finally {
      await unmountAll(join(dir, 'm')).catch(() => undefined);
      await unmountAll(join(dir, 'b')).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`${path}: a failing mount is a SystemCommandError (INTERNAL) and leaves nothing mounted`, { skip }, async () => {
    setNativeEnabled(useNative);
    const dir = await scratch();
    try {
      await mkdir(join(dir, 'm'));
      const bad = [`lowerdir=${join(dir, 'nope')}`, `upperdir=${join(dir, 'u')}`, `workdir=${join(dir, 'w')}`];
      const err = await mountAll([{ type: 'overlay', source: 'overlay', options: bad }], join(dir, 'm')).then(
        () => assert.fail('mounted a missing lowerdir'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof SystemCommandError);
      assert.equal(err.code, 'INTERNAL');
      assert.equal(err.argv[0], 'mount');
      if (useNative) {
        assert.equal(err.exitCode, null);
        assert.match(err.errno ?? '', /^E[A-Z]+$/);
        assert.match(err.message, /^mount failed: expected success, found E[A-Z]+: /);
      } else {
        assert.equal(typeof err.exitCode, 'number');
        assert.match(err.message, /^mount failed: expected exit code 0, found \d+: /);
      }
      // the second of two mounts fails: the first is undone
      await mkdir(join(dir, 'src'));
      await assert.rejects(
        mountAll([{ type: 'bind', source: join(dir, 'src'), options: ['rbind', 'rw'] }, { type: 'bind', source: join(dir, 'nope'), options: ['rbind', 'rw'] }], join(dir, 'm')),
        SystemCommandError,
      );
      assert.equal(await isMountPoint(join(dir, 'm')), false);
    } finally {
      await unmountAll(join(dir, 'm')).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`${path}: xattrs of a tree (all namespaces, symlinks not followed) and writing them back`, { skip }, async () => {
    setNativeEnabled(useNative);
    const dir = await scratch();
    try {
      await mkdir(join(dir, 't', 'sub', 'deep'), { recursive: true });
      await writeFile(join(dir, 't', 'plain'), '');
      await writeFile(join(dir, 't', 'sub', 'file'), '');
      await symlink('file', join(dir, 't', 'sub', 'link'));
      const big = Buffer.alloc(3000, 0xab); // above the addon's first 1 KiB read
      const want = new Map<string, Xattrs>([
        ['', new Map([['user.root', Buffer.from('r')]])],
        ['sub', new Map([['trusted.overlay.opaque', Buffer.from('y')]])],
        ['sub/file', new Map<string, Buffer>([['user.a', Buffer.from([0, 1, 255])], ['user.big', big], ['user.empty', Buffer.alloc(0)]])],
        ['sub/deep', new Map([['user.d', Buffer.from('é', 'utf8')]])],
      ]);
      await writeXattrs(join(dir, 't'), want);
      const got = await readTreeXattrs(join(dir, 't'));
      // compare as plain objects, names sorted (the kernel's listing order is not ours to fix)
      const plain = (m: Map<string, Xattrs>): Record<string, Record<string, string>> =>
        Object.fromEntries([...m].filter(([, x]) => x.size > 0).map(([p, x]) => [p, Object.fromEntries([...x].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, v.toString('hex')]))]));
      assert.deepEqual(plain(got), plain(want));
      // a trailing slash names the same tree
      assert.deepEqual(plain(await readTreeXattrs(`${join(dir, 't')}/`)), plain(want));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`${path}: xattr errors are SystemCommandErrors (INTERNAL)`, { skip }, async () => {
    setNativeEnabled(useNative);
    const dir = await scratch();
    try {
      await assert.rejects(readTreeXattrs(join(dir, 'missing')), (e: unknown) => e instanceof SystemCommandError && e.code === 'INTERNAL' && e.argv[0] === 'getfattr');
      await writeFile(join(dir, 'f'), '');
      // a name without a namespace prefix is refused by the kernel (and by setfattr)
      await assert.rejects(
        writeXattrs(dir, new Map([['f', new Map([['nonamespace', Buffer.from('x')]])]])),
        (e: unknown) => e instanceof SystemCommandError && e.code === 'INTERNAL' && e.argv[0] === 'setfattr' && (!useNative || e.errno === 'EOPNOTSUPP' || e.errno === 'ENOTSUP'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('markInheritedFdsCloexec: an inherited fd stops reaching children; without the addon it says so', { skip }, () => {
  // a child node that inherited fd 100 (opened by bash, not close-on-exec; Node itself marks
  // only the inherited fds up to the first gap above 15 close-on-exec at start-up) lists the fds of a grandchild before and after the call
  const script = `
    const { execFileSync } = require('node:child_process');
    const ls = () => execFileSync('ls', ['/proc/self/fd'], { encoding: 'utf8' }).trim().split(/\\s+/).map(Number).filter((n) => n > 2);
    const before = ls();
    const { markInheritedFdsCloexec } = require(${JSON.stringify(new URL('./native.ts', import.meta.url).pathname)});
    const marked = markInheritedFdsCloexec();
    process.stdout.write(JSON.stringify({ before, marked, after: ls() }));`;
  const run = (env: string): { before: number[]; marked: boolean; after: number[] } =>
    JSON.parse(execFileSync('bash', ['-c', 'exec 100</dev/null; exec "$0" --import tsx -e "$1"', process.execPath, script], { encoding: 'utf8', env: { ...process.env, TSBUILD_NATIVE: env } }));
  const withAddon = run('1');
  assert.ok(withAddon.before.includes(100), `the grandchild inherits fd 100 before: ${withAddon.before.join(',')}`);
  assert.equal(withAddon.marked, true);
  assert.ok(!withAddon.after.includes(100), `fd 100 still inherited after: ${withAddon.after.join(',')}`);
  const without = run('0');
  assert.equal(without.marked, false);
  assert.ok(without.after.includes(100), 'nothing changes without the addon');
  setNativeEnabled(true);
  assert.equal(markInheritedFdsCloexec(), true);
  setNativeEnabled(false);
  assert.equal(markInheritedFdsCloexec(), false);
  setNativeEnabled(true);
});
