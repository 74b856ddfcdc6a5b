/** Test fixtures for the executor: a busybox rootfs and prerequisite checks. */
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Host path of a static busybox (Debian package busybox-static). */
export const BUSYBOX = '/bin/busybox';

/**
 * Reports a missing prerequisite: under CI or as root the test fails naming the Debian
 * package; a non-root developer run gets a skip reason instead.
 */
export function requirePrereq(t: { skip(msg: string): void }, ok: boolean, what: string, pkg: string): boolean {
  if (ok) return true;
  const msg = `${what} is missing: install the Debian package ${pkg}`;
  if (process.env['CI'] === 'true' || process.getuid?.() === 0) throw new Error(msg);
  t.skip(msg);
  return false;
}

/** Whether this process can create namespaces and mount (root). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Whether a static busybox is installed. */
export function hasBusybox(): boolean {
  return existsSync(BUSYBOX);
}

/** Builds /bin with busybox and its applet symlinks, /etc/passwd with root and app (1000), /etc/group, /tmp. */
export async function makeBusyboxRootfs(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-exec-'));
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await mkdir(join(rootfs, 'etc'));
  await mkdir(join(rootfs, 'tmp'), { mode: 0o1777 });
  await copyFile(BUSYBOX, join(rootfs, 'bin', 'busybox'));
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a !== '' && a !== 'busybox');
  for (const a of applets) await symlink('busybox', join(rootfs, 'bin', a));
  await writeFile(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  await writeFile(join(rootfs, 'etc', 'group'), 'root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n');
  return rootfs;
}
