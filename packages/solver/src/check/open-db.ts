/**
 * Opening the SQLite index so that a corrupt one never puts the builder in a crash loop
 * (catalog T34): a file that is not a database, fails `PRAGMA quick_check`, or is not a
 * regular file is moved aside to `cache.db.<time>.bak` (with its -wal/-shm, so the
 * journal stays with its database) and a fresh, empty index is created. The cache is
 * disposable: blobs and images do not depend on it. Lock contention is never taken for
 * corruption.
 */
import { lstatSync, renameSync } from 'node:fs';
import { CacheDb } from '../cache/cache-db.js';

const CORRUPT = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CORRUPT_VTAB', 'SQLITE_IOERR_SHORT_READ']);

/** The result of {@link openCacheDbSafely}. */
export interface OpenedDb {
  db: CacheDb;
  /** where a corrupt index was moved to (undefined when it was fine) */
  backup?: string;
  /** why it was moved aside */
  reason?: string;
}

function corruption(file: string): string | undefined {
  let st;
  try {
    st = lstatSync(file);
  } catch {
    return undefined;
  }
  if (!st.isFile()) return `expected ${file} to be a regular file, found a ${st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'special file'}`;
  return undefined;
}

function moveAside(file: string): string {
  const backup = `${file}.${Date.now()}-${process.pid}.bak`;
  renameSync(file, backup);
  for (const ext of ['-wal', '-shm']) {
    try {
      renameSync(`${file}${ext}`, `${backup}${ext}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return backup;
}

/** Opens the index at `file`, replacing a corrupt one with a fresh index. */
export function openCacheDbSafely(file: string): OpenedDb {
  let reason = corruption(file);
  if (reason === undefined) {
    let db: CacheDb | undefined;
    try {
      db = CacheDb.open(file);
      const check = db.db.pragma('quick_check', { simple: true });
      if (check === 'ok') return { db };
      reason = `the index failed its integrity check: ${String(check)}`;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (!CORRUPT.has(code)) throw err;
      reason = `the index is corrupt: ${(err as Error).message}`;
    }
    try {
      db?.close();
    } catch {
      // closing a corrupt database may fail too; it is moved aside either way
    }
  }
  const backup = moveAside(file);
  return { db: CacheDb.open(file), backup, reason };
}
