import { randomBytes } from 'node:crypto';
import type { CacheDb } from './cache-db.js';

/**
 * A lease protects what a running operation uses from `cache prune` (as containerd's
 * leases do): the refs it holds (record keys, blob digests, snapshot names) and,
 * because a lease records when it started, everything created after that. It lives
 * in the store's SQLite index, so other processes see it; a lease whose process died
 * is dropped by the next prune.
 */
export class Lease {
  readonly id: string;
  private readonly db: CacheDb;
  private released = false;

  private constructor(db: CacheDb, id: string) {
    this.db = db;
    this.id = id;
  }

  /** Registers a new lease held by this process. */
  static acquire(db: CacheDb, refs: readonly string[] = []): Lease {
    const id = `lease-${process.pid}-${randomBytes(6).toString('hex')}`;
    db.addLease(id, process.pid, refs, Date.now());
    return new Lease(db, id);
  }

  /** Adds refs (record keys, blob digests, snapshot names) to the lease. */
  hold(refs: readonly string[]): void {
    if (this.released || refs.length === 0) return;
    this.db.addLease(this.id, process.pid, refs, Date.now());
  }

  /** Looks a cache record up and holds it (and its layer blob) in one transaction. */
  getRecord(key: string): ReturnType<CacheDb['get']> {
    if (this.released) return this.db.get(key);
    return this.db.getAndHold(key, this.id, process.pid, Date.now());
  }

  /** Ends the lease; what it held becomes prunable. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.db.releaseLease(this.id);
  }
}
