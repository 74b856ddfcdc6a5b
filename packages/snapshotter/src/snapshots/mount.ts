/** Performing Mount[] with mount(8), and always undoing it. */
import { mkdir, mkdtemp, readFile, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, relative, resolve, sep } from 'node:path';
import { run } from '../tar/system.js';
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

/** Mounts `mounts` in order onto `target` (bind mounts honour `ro`). */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  const done: number[] = [];
  try {
    for (const m of mounts) {
      if (m.type === 'bind') {
        const recursive = m.options.includes('rbind');
        await run(['mount', recursive ? '--rbind' : '--bind', m.source, target]);
        done.push(1);
        if (m.options.includes('ro')) await run(['mount', '-o', 'remount,bind,ro', target]);
      } else {
        const { cwd, options } = relativizeOverlay(m.options);
        await run(['mount', '-t', 'overlay', '-o', options.join(','), m.source, resolve(target)], { cwd });
        done.push(1);
      }
    }
  } catch (err) {
    for (let i = 0; i < done.length; i++) await run(['umount', target]).catch(() => undefined);
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

/** Unmounts everything stacked on `target`. */
export async function unmountAll(target: string): Promise<void> {
  for (let i = 0; i < 64 && (await isMountPoint(target)); i++) await run(['umount', target]);
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
