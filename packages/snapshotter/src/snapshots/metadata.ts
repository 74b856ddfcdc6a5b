/**
 * Crash-safe snapshot metadata shared by processes: one small JSON per snapshot
 * (`metadata/<sha256(key)>.json`, written temp + fsync + rename + fsync(dir)) and a
 * lock file (`lock`, see withLockFile: a symlink naming the holder's pid and boot; a
 * lock whose holder is dead or of another boot is broken) that serialises every mutation.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, mkdirDurable } from '../content/content-store.js';
import { withLockFile } from '../image/lock-file.js';
import type { SnapshotRecord } from './types.js';


/** Writes a file atomically and (unless `durable` is false) durably. */
export async function writeFileAtomic(path: string, data: string, durable = true): Promise<void> {
  const dir = join(path, '..');
  const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    if (durable) await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  if (durable) await fsyncDir(dir);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A committed record written durably under a temp name (see MetaStore.stage). */
export interface StagedRecord {
  /** renames it into place (hold the lock) */
  publish(): Promise<void>;
  /** makes the rename durable (after the lock) */
  settle(): Promise<void>;
  /** removes the temp file when the commit did not happen */
  discard(): Promise<void>;
}

/** How many snapshot ids one `next-id` update reserves (see nextId). */
const ID_BLOCK = 32;

export class MetaStore {
  private readonly dir: string;
  private readonly lockPath: string;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(readonly root: string) {
    this.dir = join(root, 'metadata');
    this.lockPath = join(root, 'lock');
  }

  async init(): Promise<void> {
    await mkdirDurable(this.dir, 0o700);
  }

  /** Runs fn holding the cross-process lock (and serialised within this process). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    // no timeout: the holder is alive (a dead one's lock, or one from another boot, is broken)
    const next = this.chain.then(() => withLockFile(this.lockPath, fn, Infinity));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private file(key: string): string {
    return join(this.dir, createHash('sha256').update(key).digest('hex') + '.json');
  }

  async get(key: string): Promise<SnapshotRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.file(key), 'utf8')) as SnapshotRecord;
    } catch (e) {
      // unreadable: an active/view record torn by a machine crash (see all())
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof SyntaxError) return undefined;
      throw e;
    }
  }

  /**
   * Committed records are written durably. Active and view records are not (no fsync:
   * 2 of a build step's ~7 metadata fsyncs): after a machine crash such a record is
   * either intact, missing or unreadable, and recovery treats all three the same — the
   * owner is dead, so the record is dropped and its directory removed as unowned.
   */
  async put(rec: SnapshotRecord): Promise<void> {
    await writeFileAtomic(this.file(rec.key), JSON.stringify(rec), rec.kind === 'committed');
  }

  /**
   * A committed record in two halves, so that a commit holds the lock only for cheap
   * calls: `stage` writes it durably under a temp name (no lock: the name is private),
   * `publish` (under the lock) renames it into place, and `settle` (after the lock)
   * fsyncs the directory; the commit returns after `settle`. A crash before the
   * directory fsync may lose the rename: the snapshot is then as if never committed
   * (its active record, if any, names a dead owner and recovery removes it). Any other
   * record published later in the same directory and made durable also makes this
   * rename durable, so a child never outlives its parent's record on disk.
   */
  async stage(rec: SnapshotRecord): Promise<StagedRecord> {
    const tmp = join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(JSON.stringify(rec));
      await fh.sync();
    } finally {
      await fh.close();
    }
    return {
      publish: () => rename(tmp, this.file(rec.key)),
      settle: () => fsyncDir(this.dir),
      discard: () => unlink(tmp).catch(() => undefined),
    };
  }

  /**
   * Removes a record; `durable: false` (for active and view records only) skips the
   * directory fsync: if the removal is lost in a crash, recovery drops the record again.
   */
  async del(key: string, durable = true): Promise<void> {
    await unlink(this.file(key));
    if (durable) await fsyncDir(this.dir);
  }

  async all(): Promise<SnapshotRecord[]> {
    const names = await readdir(this.dir);
    const out: SnapshotRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(await readFile(join(this.dir, n), 'utf8')) as SnapshotRecord);
      } catch (e) {
        // unreadable: an active/view record (never fsync'd) torn by a machine crash; committed
        // records are written durably, so this never hides one
        if (e instanceof SyntaxError) continue;
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * Removes the record files that do not parse (must hold the lock): active and view
   * records are written without fsync, so a machine crash can leave one empty or torn;
   * its owner is gone with the machine. Returns how many were removed.
   */
  async dropUnreadable(): Promise<number> {
    let n = 0;
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith('.json')) continue;
      const text = await readFile(join(this.dir, name), 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      try {
        JSON.parse(text);
      } catch {
        await unlink(join(this.dir, name)).catch(() => undefined);
        n++;
      }
    }
    return n;
  }

  /** Removes temp files (`.tmp-<pid>-…`: staged or half-written records) of dead processes. */
  async removeDeadTemps(): Promise<void> {
    for (const n of await readdir(this.dir)) {
      const pid = Number(/^\.tmp-(\d+)-/.exec(n)?.[1]);
      if (Number.isSafeInteger(pid) && pid !== process.pid && !alive(pid)) await unlink(join(this.dir, n)).catch(() => undefined);
    }
  }

  /** Ids this instance reserved in `next-id` and has not handed out yet. */
  private reserved = { next: 0, end: 0 };

  /**
   * Allocates a short, never-reused directory id (must hold the lock). `next-id` is moved
   * on durably by a block of ID_BLOCK ids at a time, which this instance then hands out
   * without touching the file: one temp + fsync + rename + dir fsync per block instead of
   * per snapshot. Ids of a block left unused (the process ends) are skipped, never reused:
   * the durable counter is always past every id handed out.
   */
  async nextId(): Promise<string> {
    if (this.reserved.next >= this.reserved.end) {
      const p = join(this.root, 'next-id');
      const cur = Number.parseInt(await readFile(p, 'utf8').catch(() => '1'), 10) || 1;
      await writeFileAtomic(p, String(cur + ID_BLOCK));
      this.reserved = { next: cur, end: cur + ID_BLOCK };
    }
    return (this.reserved.next++).toString(36);
  }
}
