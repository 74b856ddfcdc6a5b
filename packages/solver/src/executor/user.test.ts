import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveUser } from './user.js';
import { ExecutorError } from './errors.js';

async function rootfs(withFiles = true): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-user-'));
  await mkdir(join(root, 'etc'));
  if (withFiles) {
    await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n\napp:x:1000:1000::/home/app:/bin/sh\nsvc:x:1001:50::/:/bin/false\n');
    await writeFile(join(root, 'etc/group'), 'root:x:0:\napp:x:1000:\nwheel:x:10:app,svc\naudio:x:29:app\nstaff:x:50:\n');
  }
  return root;
}

test('resolveUser: names, ids, groups and supplementary groups', async () => {
  const root = await rootfs();
  try {
    assert.deepEqual(await resolveUser(root, ''), { uid: 0, gid: 0, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, 'root'), { uid: 0, gid: 0, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, 'app'), { uid: 1000, gid: 1000, additionalGids: [10, 29] });
    assert.deepEqual(await resolveUser(root, '1000'), { uid: 1000, gid: 1000, additionalGids: [10, 29] });
    assert.deepEqual(await resolveUser(root, 'svc'), { uid: 1001, gid: 50, additionalGids: [10] });
    assert.deepEqual(await resolveUser(root, 'app:wheel'), { uid: 1000, gid: 10, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, 'app:77'), { uid: 1000, gid: 77, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, '1000:29'), { uid: 1000, gid: 29, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, '4242'), { uid: 4242, gid: 0, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, '4242:staff'), { uid: 4242, gid: 50, additionalGids: [] });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('resolveUser: BuildKit errors for unknown names and out-of-range ids', async () => {
  const root = await rootfs();
  try {
    await assert.rejects(resolveUser(root, 'nobody'), (e: unknown) => e instanceof ExecutorError && e.code === 'NOT_FOUND' && e.message === 'unable to find user nobody: no matching entries in passwd file');
    await assert.rejects(resolveUser(root, 'app:nogroup'), (e: unknown) => e instanceof ExecutorError && e.message === 'unable to find group nogroup: no matching entries in group file');
    await assert.rejects(resolveUser(root, '4294967296'), (e: unknown) => e instanceof ExecutorError && e.code === 'INVALID_ARGUMENT');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('resolveUser: numeric ids need no passwd file; names do; files read inside the root', async () => {
  const root = await rootfs(false);
  try {
    assert.deepEqual(await resolveUser(root, '5:6'), { uid: 5, gid: 6, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, '5'), { uid: 5, gid: 0, additionalGids: [] });
    await assert.rejects(resolveUser(root, 'app'), /unable to find user app: no matching entries in passwd file/);
    // /etc/passwd as an absolute symlink must resolve inside the root, not on the host.
    await writeFile(join(root, 'mypasswd'), 'app:x:2000:2000::/:/bin/sh\n');
    await symlink('/mypasswd', join(root, 'etc/passwd'));
    assert.deepEqual(await resolveUser(root, 'app'), { uid: 2000, gid: 2000, additionalGids: [] });
    await rm(join(root, 'etc/passwd'));
    await symlink('/etc/shadow-not-here/../../../../etc/passwd-host', join(root, 'etc/passwd'));
    await assert.rejects(resolveUser(root, 'root'), /unable to find user root/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
