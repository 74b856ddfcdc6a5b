/**
 * Removal of mount-point stubs after a step (BuildKit's post-run recheck, CVE-2024-23652):
 * each stub path is re-walked from the root without following any symlink, and only an
 * entry that is still an empty directory or an empty regular file is removed.
 */
import { lstat, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ExecutorError } from './errors.js';

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** lstat of root/rel if every parent component is a real directory (no symlinks), else undefined. */
async function lstatNoFollow(root: string, rel: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  const comps = rel.split('/').filter((c) => c !== '' && c !== '.');
  if (comps.length === 0 || comps.includes('..')) return undefined;
  for (let i = 0; i < comps.length; i++) {
    let st;
    try {
      st = await lstat(join(root, ...comps.slice(0, i + 1)));
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new ExecutorError('INTERNAL', `cannot inspect mount stub ${rel} inside ${root}`, { cause: err });
    }
    if (i === comps.length - 1) return st;
    if (!st.isDirectory()) return undefined; // a parent became a symlink or file: leave it alone
  }
  return undefined;
}

/**
 * Removes the stubs (paths relative to `root`, parents before children, as reported in
 * `RunResult.createdStubs`) that are still empty, deepest first. Never follows a symlink:
 * a stub whose parent was replaced by a symlink is left in place. Returns the removed paths.
 */
export async function removeStubs(root: string, stubs: readonly string[]): Promise<string[]> {
  const removed: string[] = [];
  const ordered = [...stubs].sort((a, b) => b.split('/').length - a.split('/').length || b.localeCompare(a));
  for (const rel of ordered) {
    const st = await lstatNoFollow(root, rel);
    if (st === undefined) continue;
    const host = join(root, rel);
    try {
      if (st.isDirectory()) await rmdir(host);
      else if (st.isFile() && st.size === 0) await unlink(host);
      else continue;
    } catch (err) {
      // Not empty any more (the step wrote there after unmounting): it is now the step's content.
      if (errnoOf(err) === 'ENOTEMPTY' || errnoOf(err) === 'EEXIST') continue;
      throw new ExecutorError('INTERNAL', `cannot remove mount stub ${rel} inside ${root}`, { cause: err });
    }
    removed.push(rel);
  }
  return removed;
}
