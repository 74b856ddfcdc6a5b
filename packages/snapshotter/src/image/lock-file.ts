import { randomBytes } from 'node:crypto';
import { link, readFile, readlink, rename, stat, symlink, unlink } from 'node:fs/promises';
import { crashPoint } from '../crash-point.js';
import { LockTimeoutError } from '../errors.js';
import { bootId, isErrno, pidAlive } from '../util/process.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` while holding an exclusive lock file at `path`: a symlink whose target,
 * "<pid> <boot id> <token>", names its holder. A symlink is created with its target in
 * one step, so a lock is never seen empty, not even after a power cut (a regular file
 * created and then written could survive one empty, and then nobody could tell whether
 * its holder lives: T33). A lock whose holder is dead, or was taken in another boot, is
 * broken: it is renamed aside (only one contender wins that rename) and, if the renamed
 * lock turns out to be a fresh one taken meanwhile, linked back. Waits up to
 * `timeoutMs` (Infinity: for as long as the holder lives).
 */
export async function withLockFile<T>(path: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const token = `${process.pid} ${bootId() ?? '-'} ${randomBytes(6).toString('hex')}`;
  const start = Date.now();
  let delay = 2;
  for (;;) {
    try {
      await symlink(token, path);
      crashPoint('lock-created');
      break;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const holder = await readHolder(path);
    if (holder === undefined || (await breakIfStale(path, holder))) continue;
    if (Date.now() - start > timeoutMs) throw new LockTimeoutError(path, Date.now() - start, holder.pid);
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 50);
  }
  try {
    return await fn();
  } finally {
    // Only remove the lock if it is still ours.
    if ((await lockContent(path)) === token) await unlink(path);
  }
}

/** What a lock at `path` says (undefined when there is none). */
async function lockContent(path: string): Promise<string | undefined> {
  try {
    return await readlink(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    // a regular file: a lock of an older tsbuild ("<pid> <token>\n", or the snapshotter's "<pid>")
    if (isErrno(err, 'EINVAL')) return readFile(path, 'utf8').catch((e: unknown) => (isErrno(e, 'ENOENT') ? undefined : Promise.reject(e)));
    throw err;
  }
}

interface Holder {
  pid: number;
  /** the boot id the lock was taken in; undefined for a lock of an older tsbuild */
  boot: string | undefined;
  content: string;
  mtimeMs: number;
}

async function readHolder(path: string): Promise<Holder | undefined> {
  const content = await lockContent(path);
  if (content === undefined) return undefined;
  const st = await stat(path).catch(() => undefined);
  const [pid, boot] = content.split(' ');
  const symlinked = !content.endsWith('\n') && content.split(' ').length === 3;
  return { pid: Number.parseInt(pid ?? '', 10), boot: symlinked && boot !== '-' ? boot : undefined, content, mtimeMs: st?.mtimeMs ?? Date.now() };
}

async function breakIfStale(path: string, holder: Holder): Promise<boolean> {
  const boot = bootId();
  const otherBoot = holder.boot !== undefined && boot !== undefined && holder.boot !== boot;
  // An older tsbuild's lock file without a pid yet is being written right now, unless it is old.
  const incomplete = !Number.isSafeInteger(holder.pid) || holder.pid <= 0;
  if (!otherBoot && (incomplete ? Date.now() - holder.mtimeMs < 10_000 : holder.pid === process.pid || pidAlive(holder.pid))) return false;
  const aside = `${path}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return true; // someone else broke or released it
    throw err;
  }
  const moved = await lockContent(aside);
  if (moved !== holder.content) {
    // We moved a fresh lock taken after our read: put it back (link() does not follow a symlink).
    await link(aside, path).catch((err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err;
    });
  }
  await unlink(aside);
  return true;
}
