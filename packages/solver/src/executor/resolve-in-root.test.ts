import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, symlink, writeFile, lstat, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureInRoot, resolveContainerPath, resolveInRoot } from './resolve-in-root.js';
import { ExecutorError } from './errors.js';

async function fixture(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-rir-'));
  await mkdir(join(root, 'usr/lib'), { recursive: true });
  await mkdir(join(root, 'etc'));
  await writeFile(join(root, 'etc/file'), 'x');
  await symlink('/usr/lib', join(root, 'abs'));
  await symlink('usr/lib', join(root, 'rel'));
  await symlink('../../../../..', join(root, 'usr/up'));
  await symlink('/tmp/host-path-outside', join(root, 'evil'));
  await symlink('../../../etc', join(root, 'usr/lib/dotdot'));
  await symlink('loop2', join(root, 'loop1'));
  await symlink('loop1', join(root, 'loop2'));
  await symlink('/etc/file', join(root, 'tofile'));
  return root;
}

test('resolveInRoot follows symlinks relative to the root and clamps ..', async () => {
  const root = await fixture();
  try {
    assert.equal(await resolveInRoot(root, '/abs/x'), join(root, 'usr/lib/x'));
    assert.equal(await resolveInRoot(root, 'rel'), join(root, 'usr/lib'));
    assert.equal(await resolveInRoot(root, '/../../../etc'), join(root, 'etc'));
    assert.equal(await resolveInRoot(root, '/usr/up/etc'), join(root, 'etc'));
    assert.equal(await resolveInRoot(root, '/usr/lib/dotdot/file'), join(root, 'etc/file'));
    assert.equal(await resolveInRoot(root, '/evil'), join(root, 'tmp/host-path-outside'));
    assert.equal(await resolveInRoot(root, '/evil/../../x'), join(root, 'x'));
    assert.equal(await resolveInRoot(root, '/'), root);
    assert.equal(await resolveInRoot(root, '/missing/a/../b'), join(root, 'missing/b'));
    assert.equal(await resolveInRoot(root, '/abs', { followFinalSymlink: false }), join(root, 'abs'));
    assert.equal(await resolveContainerPath(root, '/rel/./y'), '/usr/lib/y');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('resolveInRoot errors: symlink loops and walking through files', async () => {
  const root = await fixture();
  try {
    await assert.rejects(resolveInRoot(root, '/loop1'), (e: unknown) => e instanceof ExecutorError && e.code === 'INVALID_ARGUMENT' && /too many levels of symbolic links/.test(e.message));
    await assert.rejects(resolveInRoot(root, '/tofile/x'), (e: unknown) => e instanceof ExecutorError && e.code === 'FAILED_PRECONDITION');
    await assert.rejects(resolveInRoot('relative', '/x'), (e: unknown) => e instanceof ExecutorError && e.code === 'INVALID_ARGUMENT');
    // 255 hops are fine, 256 are not.
    const chain = await mkdtemp(join(tmpdir(), 'tsbuild-rir-chain-'));
    await mkdir(join(chain, 'end'));
    for (let i = 0; i < 256; i++) await symlink(i === 255 ? 'end' : `l${i + 1}`, join(chain, `l${i}`));
    await assert.rejects(resolveInRoot(chain, '/l0'), /too many levels/);
    assert.equal(await resolveInRoot(chain, '/l1'), join(chain, 'end'));
    await rm(chain, { recursive: true, force: true });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('ensureInRoot creates missing parents and the leaf inside the root only', async () => {
  const root = await fixture();
  try {
    const r = await ensureInRoot(root, '/evil/sub/file', 'file');
    assert.equal(r.hostPath, join(root, 'tmp/host-path-outside/sub/file'));
    assert.equal(r.containerPath, '/tmp/host-path-outside/sub/file');
    assert.deepEqual(r.created, ['tmp', 'tmp/host-path-outside', 'tmp/host-path-outside/sub', 'tmp/host-path-outside/sub/file']);
    assert.ok((await lstat(r.hostPath)).isFile());
    const again = await ensureInRoot(root, '/evil/sub/file', 'file');
    assert.deepEqual(again.created, []);
    const d = await ensureInRoot(root, '/abs/newdir', 'dir');
    assert.deepEqual(d.created, ['usr/lib/newdir']);
    assert.ok((await lstat(d.hostPath)).isDirectory());
    await assert.rejects(lstat('/tmp/host-path-outside/sub'), { code: 'ENOENT' });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
