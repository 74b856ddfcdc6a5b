import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeStubs } from './stubs.js';

test('removeStubs removes empty stubs deepest first and keeps content', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-stubs-'));
  try {
    await mkdir(join(root, 'a/b'), { recursive: true });
    await writeFile(join(root, 'a/b/file'), '');
    await mkdir(join(root, 'kept'));
    await writeFile(join(root, 'kept/written-by-step'), 'x');
    await writeFile(join(root, 'nonempty-file'), 'data');
    const removed = await removeStubs(root, ['a', 'a/b', 'a/b/file', 'kept', 'nonempty-file', 'gone']);
    assert.deepEqual(removed.sort(), ['a', 'a/b', 'a/b/file']);
    assert.equal(existsSync(join(root, 'a')), false);
    assert.equal(existsSync(join(root, 'kept/written-by-step')), true);
    assert.equal(existsSync(join(root, 'nonempty-file')), true);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('removeStubs never follows a symlinked parent (CVE-2024-23652)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-stubs-'));
  const outside = await mkdtemp(join(tmpdir(), 'tsbuild-sentinel-'));
  try {
    await mkdir(join(outside, 'y'));
    await writeFile(join(outside, 'y/victim'), '');
    await symlink(outside, join(root, 'x'));
    const removed = await removeStubs(root, ['x', 'x/y', 'x/y/victim', '../escape']);
    assert.deepEqual(removed, []);
    assert.equal(existsSync(join(outside, 'y/victim')), true);
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  }
});
