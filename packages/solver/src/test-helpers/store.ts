/** Test support for solver and CLI tests: temporary stores with a busybox base image. */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuildStore } from '../store.js';
import { importRootfs } from '../ops/import.js';

/** The repository root (tests read fixtures and scripts from it). */
export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/**
 * Checks a prerequisite of a privileged test. Missing under CI or as root: the test
 * fails naming the Debian package. Missing for a non-root developer: it is skipped
 * with the reason. Returns whether the test can go on.
 */
export function requirePrereq(t: { skip(msg: string): void }, ok: boolean, what: string, pkg: string): boolean {
  if (ok) return true;
  const msg = `${what} is missing: install the Debian package ${pkg}`;
  if (process.env.CI === 'true' || process.getuid?.() === 0) throw new Error(msg);
  t.skip(msg);
  return false;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Root, busybox and runc: what a build with RUN steps needs. */
export function requireBuildPrereqs(t: { skip(msg: string): void }): boolean {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('build tests need root (namespaces, overlay mounts)');
    t.skip('build tests need root (namespaces, overlay mounts)');
    return false;
  }
  return requirePrereq(t, existsSync('/bin/busybox'), 'busybox', 'busybox-static') && requirePrereq(t, hasCommand('runc'), 'runc', 'runc');
}

export interface TestStore {
  root: string;
  store: BuildStore;
  cleanup(): Promise<void>;
}

/** A fresh store in a temp dir, with `busybox:local` imported from the host's busybox-static. */
export async function tempStoreWithBusybox(): Promise<TestStore> {
  const root = await mkdtemp(join(tmpdir(), 'tsbuild-store-'));
  const store = await BuildStore.open(root);
  const rootfs = join(root, 'busybox-rootfs');
  execFileSync('bash', [join(REPO_ROOT, 'scripts', 'make-busybox-rootfs.sh'), rootfs], { stdio: 'inherit' });
  await importRootfs(store, rootfs, {
    tags: ['busybox:local'],
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    sourceDateEpoch: 0,
  });
  await rm(rootfs, { recursive: true, force: true });
  return {
    root,
    store,
    cleanup: async () => {
      await store.close();
      // unmount anything a failed test left behind before removing the tree
      spawnSync('sh', ['-c', `grep -o " ${root}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
      await rm(root, { recursive: true, force: true });
    },
  };
}
