import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { LockTimeoutError } from '../errors.js';
import { isErrno, pidAlive } from '../util/process.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` while holding an exclusive lock file at `path` (created with O_EXCL and
 * holding "<pid> <token>"). A lock whose pid is dead is broken: it is renamed aside
 * (only one contender wins that rename) and, if the renamed file turns out to be a
 * fresh lock taken meanwhile, linked back. Waits up to `timeoutMs`.
 */
export async function withLockFile<T>(path: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  const start = Date.now();
  let delay = 2;
  for (;;) {
    try {
      const fh = await open(path, 'wx', 0o644);
      try {
        await fh.writeFile(token);
      } finally {
        await fh.close();
      }
      break;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const holder = await readHolder(path);
    if (holder !== undefined && await breakIfStale(path, holder)) continue;
    if (Date.now() - start > timeoutMs) throw new LockTimeoutError(path, Date.now() - start, holder?.pid);
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 50);
  }
  try {
    return await fn();
  } finally {
    // Only remove the lock if it is still ours.
    const current = await readFile(path, 'utf8').catch(() => undefined);
    if (current === token) await unlink(path);
  }
}

async function readHolder(path: string): Promise<{ pid: number; content: string; mtimeMs: number } | undefined> {
  try {
    const [content, st] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { pid: Number.parseInt(content.split(' ')[0] ?? '', 10), content, mtimeMs: st.mtimeMs };
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

async function breakIfStale(path: string, holder: { pid: number; content: string; mtimeMs: number }): Promise<boolean> {
  // An empty/partial file is a lock being written right now unless it is old.
  const incomplete = !holder.content.endsWith('\n');
  if (incomplete ? Date.now() - holder.mtimeMs < 10_000 : pidAlive(holder.pid)) return false;
  const aside = `${path}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return true; // someone else broke or released it
    throw err;
  }
  const moved = await readFile(aside, 'utf8').catch(() => '');
  if (moved !== holder.content) {
    // We moved a fresh lock taken after our read: put it back.
    await link(aside, path).catch((err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err;
    });
  }
  await unlink(aside);
  return true;
}
