/**
 * Startup recovery of a store after a crash (kill -9, power loss): containers, mounts,
 * temp and bundle directories left by builder processes that are gone. Everything left
 * by a process is named with its pid (`tmp/<prefix>-<pid>-…`, `snapshots/mnt/<pid>-…`,
 * runc ids `tsbuild-<pid>-…`), so only what belongs to dead processes is touched, never
 * what a live build on the same store holds.
 */
import { spawnSync } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { unmountAll, pidAlive } from '@tsbuild/snapshotter';

/** True when `pid` names a live process (EPERM counts as alive). */
export const isAlive: (pid: number) => boolean = pidAlive;

function deadOwner(pid: number | undefined): boolean {
  return pid !== undefined && pid !== process.pid && !isAlive(pid);
}

/** Mount points of this mount namespace (from /proc/self/mountinfo), in mount order. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/**
 * The pid of the builder process that owns a path under the store, from the naming
 * conventions above; undefined when the path follows none of them.
 */
export function ownerOf(root: string, path: string): number | undefined {
  const rel = resolve(path).slice(resolve(root).length + 1).split(sep);
  let m: RegExpExecArray | null = null;
  if (rel[0] === 'tmp' && rel[1] !== undefined) m = /-(\d+)-[a-z0-9]+$/.exec(rel[1]);
  else if (rel[0] === 'snapshots' && rel[1] === 'mnt' && rel[2] !== undefined) m = /^(\d+)-/.exec(rel[2]);
  else if (rel[0] === 'snapshots' && rel[1] !== undefined) m = /^probe-(\d+)$/.exec(rel[1]);
  else if (rel[0] === 'runc' && rel[2] !== undefined) m = /^tsbuild-(\d+)-/.exec(rel[2]);
  return m ? Number(m[1]) : undefined;
}

/** Mount points strictly below the store root, deepest (latest) first. */
export async function storeMounts(root: string): Promise<string[]> {
  const abs = resolve(root);
  return (await mountPoints()).filter((p) => p.startsWith(`${abs}/`)).reverse();
}

function findRunc(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p !== '' ? p : undefined;
}

/** What {@link recoverStore} cleaned up. */
export interface RecoveryReport {
  /** runc containers of dead builders that were killed and deleted */
  containers: string[];
  /** mount points of dead builders that were unmounted */
  mounts: string[];
  /** temp, bundle and sandbox directories of dead builders that were removed */
  dirs: string[];
}

/**
 * Kills and deletes runc containers, unmounts mounts and removes temp/bundle dirs that
 * crashed builder processes left under `root`. Safe while other builds run on the store.
 */
export async function recoverStore(root: string): Promise<RecoveryReport> {
  const report: RecoveryReport = { containers: [], mounts: [], dirs: [] };
  const runcRoot = join(root, 'runc', 'runc');
  const ids = (await readdir(runcRoot).catch(() => [] as string[])).filter((id) => deadOwner(Number(/^tsbuild-(\d+)-/.exec(id)?.[1])));
  if (ids.length > 0) {
    const runc = findRunc();
    for (const id of ids) {
      if (runc !== undefined) {
        // --force kills a container that is still running
        spawnSync(runc, ['--root', runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
      }
      await rm(join(runcRoot, id), { recursive: true, force: true });
      report.containers.push(id);
    }
  }
  for (const mp of await storeMounts(root)) {
    if (!deadOwner(ownerOf(root, mp))) continue;
    await unmountAll(mp);
    report.mounts.push(mp);
  }
  for (const sub of [join('runc', 'bundles'), join('runc', 'unshare'), 'tmp']) {
    const dir = join(root, sub);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const path = join(dir, name);
      if (!deadOwner(ownerOf(root, path))) continue;
      // never rm -r through a live mount
      if ((await storeMounts(root)).some((m) => m === path || m.startsWith(`${path}/`))) continue;
      await rm(path, { recursive: true, force: true });
      report.dirs.push(path);
    }
  }
  // files written as temp + rename (index.json, oci-layout, snapshot metadata) by a dead process
  for (const dir of [root, join(root, 'snapshots', 'metadata')]) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!deadOwner(Number(/\.tmp-(\d+)-[0-9a-f]+$/.exec(name)?.[1]) || undefined)) continue;
      await rm(join(dir, name), { force: true });
      report.dirs.push(join(dir, name));
    }
  }
  return report;
}
