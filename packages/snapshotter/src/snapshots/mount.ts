/**
 * Performing Mount[] with mount(2) through the native addon, or by spawning mount(8)
 * when it is absent (`src/util/native.ts`), and always undoing it.
 */
import { mkdir, mkdtemp, readFile, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, relative, resolve, sep } from 'node:path';
import { SystemCommandError } from '../errors.js';
import { run } from '../tar/system.js';
import { isNativeError, native, type NativeSys } from '../util/native.js';
import type { Mount } from './types.js';

const DIR_OPTIONS = ['lowerdir=', 'upperdir=', 'workdir='];

function commonDir(paths: readonly string[]): string {
  let common = dirname(paths[0]!);
  for (const p of paths) {
    while (common !== sep && !(p === common || p.startsWith(common + sep))) common = dirname(common);
  }
  return common;
}

/**
 * Rewrites overlay dir options relative to their common ancestor, so a 130-layer chain
 * stays far below the one-page limit of mount(2) data; mount runs with that cwd.
 */
export function relativizeOverlay(options: readonly string[]): { cwd: string; options: string[] } {
  const dirs: string[] = [];
  for (const o of options) {
    const prefix = DIR_OPTIONS.find((p) => o.startsWith(p));
    if (prefix) dirs.push(...o.slice(prefix.length).split(':'));
  }
  if (dirs.length === 0) return { cwd: '/', options: [...options] };
  const cwd = commonDir(dirs);
  const rel = (p: string): string => relative(cwd, p) || '.';
  return {
    cwd,
    options: options.map((o) => {
      const prefix = DIR_OPTIONS.find((p) => o.startsWith(p));
      return prefix ? prefix + o.slice(prefix.length).split(':').map(rel).join(':') : o;
    }),
  };
}

/** One mount(2) through the addon; a failure becomes the SystemCommandError mount(8) would give. */
async function sysMount(sys: NativeSys, argv: readonly string[], source: string | null, target: string, fstype: string | null, flags: number, data: string | null, cwd: string | null): Promise<void> {
  try {
    await sys.mount(source, target, fstype, flags, data, cwd);
  } catch (err) {
    throw isNativeError(err) ? new SystemCommandError(argv, null, err.message, err.code) : err;
  }
}

/** One mount of `m` onto `target` (an absolute path). */
async function mountOne(m: Mount, target: string): Promise<void> {
  const sys = native();
  if (m.type === 'bind') {
    const recursive = m.options.includes('rbind');
    const argv = ['mount', recursive ? '--rbind' : '--bind', m.source, target];
    if (sys) await sysMount(sys, argv, m.source, target, null, sys.constants.MS_BIND | (recursive ? sys.constants.MS_REC : 0), null, null);
    else await run(argv);
    return;
  }
  const { cwd, options } = relativizeOverlay(m.options);
  const argv = ['mount', '-t', m.type, '-o', options.join(','), m.source, target];
  if (!sys) {
    await run(argv, { cwd });
    return;
  }
  // the options mount(8) turns into mount flags instead of passing them to the filesystem
  const c = sys.constants;
  const FLAG_OPTIONS: Record<string, number> = { ro: c.MS_RDONLY, rw: 0, nosuid: c.MS_NOSUID, nodev: c.MS_NODEV, noexec: c.MS_NOEXEC };
  const flags = options.reduce((f, o) => f | (FLAG_OPTIONS[o] ?? 0), 0);
  const data = options.filter((o) => !(o in FLAG_OPTIONS)).join(',');
  await sysMount(sys, argv, m.source, target, m.type, flags, data, cwd);
}

/** Makes the bind mount on `target` read-only (`mount -o remount,bind,ro`, keeping its other flags). */
async function remountReadOnly(target: string): Promise<void> {
  const sys = native();
  const argv = ['mount', '-o', 'remount,bind,ro', target];
  if (sys) await sysMount(sys, argv, null, target, null, sys.constants.MS_REMOUNT | sys.constants.MS_BIND | sys.constants.MS_RDONLY, null, null);
  else await run(argv);
}

/** Mounts `mounts` in order onto `target` (bind mounts honour `ro`). */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  const abs = resolve(target);
  let done = 0;
  try {
    for (const m of mounts) {
      await mountOne(m, abs);
      done++;
      if (m.type === 'bind' && m.options.includes('ro')) await remountReadOnly(abs);
    }
  } catch (err) {
    for (let i = 0; i < done; i++) await umountOnce(abs).catch(() => undefined);
    throw err;
  }
}

/** True when `target` is a mount point (per /proc/self/mountinfo). */
export async function isMountPoint(target: string): Promise<boolean> {
  const abs = resolve(target);
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    const mp = f[4]?.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === abs) return true;
  }
  return false;
}

/**
 * Unmounts the top mount on `target`. Returns false when `target` is no mount point
 * (or is missing); through the addon that is umount2's EINVAL/ENOENT, so no mountinfo read.
 */
async function umountOnce(target: string): Promise<boolean> {
  const sys = native();
  if (!sys) {
    if (!(await isMountPoint(target))) return false;
    await run(['umount', target]);
    return true;
  }
  try {
    await sys.umount2(target, 0);
    return true;
  } catch (err) {
    if (isNativeError(err) && (err.code === 'EINVAL' || err.code === 'ENOENT')) return false;
    throw isNativeError(err) ? new SystemCommandError(['umount', target], null, err.message, err.code) : err;
  }
}

/** Unmounts everything stacked on `target`. */
export async function unmountAll(target: string): Promise<void> {
  const abs = resolve(target);
  for (let i = 0; i < 64 && (await umountOnce(abs)); i++);
}

/**
 * Mounts on a fresh temporary directory, runs fn, and always unmounts and removes it.
 * `opts.parent` puts the mount point there (named `<pid>-…`, so a crash leftover can be
 * found and unmounted by its owner's pid) instead of the system temp dir.
 */
export async function withMount<T>(mounts: readonly Mount[], fn: (dir: string) => Promise<T>, opts: { parent?: string } = {}): Promise<T> {
  if (opts.parent !== undefined) await mkdir(opts.parent, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(opts.parent !== undefined ? `${opts.parent}/${process.pid}-` : `${tmpdir()}/tsbuild-mnt-`);
  try {
    await mountAll(mounts, dir);
    try {
      return await fn(dir);
    } finally {
      await unmountAll(dir);
    }
  } finally {
    await rmdir(dir);
  }
}
