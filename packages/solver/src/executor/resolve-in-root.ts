/**
 * Path resolution inside a root filesystem "as if chrooted": symlinks are followed relative
 * to the root, `..` never climbs above it, and the host kernel is only ever asked about
 * paths whose components are already known not to be symlinks.
 */
import { lstat, mkdir, open, readlink } from 'node:fs/promises';
import { isAbsolute, join, posix } from 'node:path';
import { ExecutorError } from './errors.js';

/** Same limit as Linux's MAXSYMLINKS-era loop protection used by runc's securejoin. */
const MAX_LINK_HOPS = 255;

/** Options of {@link resolveInRoot}. */
export interface ResolveInRootOptions {
  /** Follow a symlink in the last component (default true, like open(2) without O_NOFOLLOW). */
  followFinalSymlink?: boolean;
}

function splitPath(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/**
 * Resolves `path` (absolute or relative to `/`) inside `root` as if the caller were chrooted
 * into `root`, and returns the host path. Symlinks (absolute or relative) are followed
 * relative to `root`; `..` is clamped at `root`; components that do not exist are kept as
 * written. More than 255 symlink hops fails with `INVALID_ARGUMENT`; walking through a
 * non-directory fails with `FAILED_PRECONDITION`.
 */
export async function resolveInRoot(root: string, path: string, options?: ResolveInRootOptions): Promise<string> {
  return join(root, ...(await resolveComponents(root, path, options?.followFinalSymlink ?? true)));
}

/**
 * Like {@link resolveInRoot} but returns the resolved path as the process inside the root
 * would see it (always absolute, e.g. `/usr/lib`).
 */
export async function resolveContainerPath(root: string, path: string, options?: ResolveInRootOptions): Promise<string> {
  return '/' + (await resolveComponents(root, path, options?.followFinalSymlink ?? true)).join('/');
}

async function resolveComponents(root: string, path: string, followFinal: boolean): Promise<string[]> {
  if (!isAbsolute(root)) {
    throw new ExecutorError('INVALID_ARGUMENT', `root must be an absolute path, found ${JSON.stringify(root)}`);
  }
  if (path.includes('\0')) {
    throw new ExecutorError('INVALID_ARGUMENT', `path must not contain NUL bytes, found ${JSON.stringify(path)}`);
  }
  const resolved: string[] = [];
  const queue = splitPath(path);
  let hops = 0;
  while (queue.length > 0) {
    const c = queue.shift() as string;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, c);
    let st;
    try {
      st = await lstat(host);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') {
        resolved.push(c);
        continue;
      }
      throw new ExecutorError('INTERNAL', `cannot inspect ${JSON.stringify('/' + [...resolved, c].join('/'))} inside ${root}`, { cause: err });
    }
    const isLast = queue.length === 0;
    if (st.isSymbolicLink() && (!isLast || followFinal)) {
      hops += 1;
      if (hops > MAX_LINK_HOPS) {
        throw new ExecutorError('INVALID_ARGUMENT', `too many levels of symbolic links resolving ${JSON.stringify(path)} inside ${root}: expected at most ${MAX_LINK_HOPS} hops`);
      }
      const target = await readlink(host);
      if (target.startsWith('/')) resolved.length = 0;
      queue.unshift(...splitPath(target));
      continue;
    }
    if (!isLast && !st.isDirectory() && !st.isSymbolicLink()) {
      throw new ExecutorError('FAILED_PRECONDITION', `cannot resolve ${JSON.stringify(path)} inside ${root}: expected ${JSON.stringify('/' + [...resolved, c].join('/'))} to be a directory, found a non-directory`);
    }
    resolved.push(c);
  }
  return resolved;
}

/** Kind of mount point to create. */
export type StubKind = 'dir' | 'file';

/** Result of {@link ensureInRoot}. */
export interface EnsuredPath {
  /** Host path of the (now existing) entry. */
  hostPath: string;
  /** The same entry as seen from inside the root, absolute. */
  containerPath: string;
  /** Entries this call created, relative to root (no leading slash), parents first. */
  created: string[];
}

/**
 * Resolves `path` inside `root` and creates whatever is missing: directories for the
 * parents, and a directory or an empty file (mode 0755 / 0644) for the last component.
 * Each creation is done with a non-following primitive (mkdir, O_CREAT|O_EXCL), so a
 * concurrent symlink swap makes the call fail instead of writing outside the root.
 */
export async function ensureInRoot(root: string, path: string, kind: StubKind): Promise<EnsuredPath> {
  const comps = await resolveComponents(root, path, true);
  const created: string[] = [];
  for (let i = 0; i < comps.length; i++) {
    const rel = comps.slice(0, i + 1);
    const host = join(root, ...rel);
    const last = i === comps.length - 1;
    let st;
    try {
      st = await lstat(host);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw new ExecutorError('INTERNAL', `cannot inspect ${host}`, { cause: err });
    }
    if (st === undefined) {
      try {
        if (last && kind === 'file') {
          const fh = await open(host, 'wx', 0o644);
          await fh.close();
        } else {
          await mkdir(host, { mode: 0o755 });
        }
        created.push(rel.join('/'));
        continue;
      } catch (err) {
        // Someone else created it meanwhile: not ours; inspect what is there now.
        if (errnoOf(err) !== 'EEXIST') throw new ExecutorError('INTERNAL', `cannot create ${host}`, { cause: err });
        st = await lstat(host);
      }
    }
    if (st.isSymbolicLink()) {
      throw new ExecutorError('FAILED_PRECONDITION', `path ${JSON.stringify('/' + rel.join('/'))} inside ${root} changed into a symlink while being prepared`);
    }
    if (!last && !st.isDirectory()) {
      throw new ExecutorError('FAILED_PRECONDITION', `expected ${JSON.stringify('/' + rel.join('/'))} inside ${root} to be a directory, found a non-directory`);
    }
  }
  return { hostPath: join(root, ...comps), containerPath: posix.join('/', ...comps), created };
}
