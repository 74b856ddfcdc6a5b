import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { crashPoint } from '@tsbuild/snapshotter';
import type { Key } from './keys.js';

/** A layer as recorded in the cache: enough to put it in an image without reading it. */
export interface RecordedLayer {
  mediaType: string;
  digest: Key;
  size: number;
  diffId: Key;
}

/** What a cache key was computed from. Secrets never appear here. */
export interface KeyComponents {
  /** the key of the step this one builds on (the base image digest for a stage's first step) */
  parent: string;
  /** the instruction after variable expansion, in canonical form */
  op: string;
  /** build ARG values the step can see (a changed ARG invalidates from its first use) */
  args?: Record<string, string>;
  /** digest over the files the step reads (COPY/ADD sources, RUN bind mounts) */
  files?: string;
  /** other inputs: keys of stages copied from or mounted */
  inputs?: Record<string, string>;
}

export interface CacheRecord {
  key: Key;
  stepRef: string;
  description: string;
  components: KeyComponents;
  /** undefined when the step changed nothing on disk */
  layer?: RecordedLayer;
  created: number;
  lastUsed: number;
  usageCount: number;
}

export interface FileDigest {
  path: string;
  digest: string;
}

/**
 * One context directory's memo row: for each file whose content digest is known, its name
 * and the lstat fields that must be unchanged for the digest to be reused. Parallel
 * layouts (no object per file): entry `i` is `names[i]`, `stats[4i..4i+3]` = size,
 * mtimeMs, ctimeMs, ino (the doubles `fs.lstat` returns), and `digests.slice(64i, 64i+64)`
 * = the sha256 hex of its content.
 */
export interface DirMemo {
  names: string[];
  stats: Float64Array;
  digests: string;
}

export interface BuildStepSummary {
  stepRef: string;
  description: string;
  stage: string;
  cached: boolean;
  reason?: string;
  key?: string;
  location?: string;
}

export interface BuildSummary {
  id: number;
  dockerfile: string;
  started: number;
  finished?: number;
  ok: boolean;
  steps: BuildStepSummary[];
}

interface RecordRow {
  key: string;
  step_ref: string;
  description: string;
  components: string;
  layer: string | null;
  created: number;
  last_used: number;
  usage_count: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS records (
  key TEXT PRIMARY KEY,
  step_ref TEXT NOT NULL,
  description TEXT NOT NULL,
  components TEXT NOT NULL,
  layer TEXT,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL,
  usage_count INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS records_step ON records(step_ref, created);
CREATE TABLE IF NOT EXISTS record_files (
  key TEXT NOT NULL,
  path TEXT NOT NULL,
  digest TEXT NOT NULL,
  PRIMARY KEY (key, path)
) WITHOUT ROWID;
DROP TABLE IF EXISTS file_memo;
CREATE TABLE IF NOT EXISTS context_memo (
  dir TEXT PRIMARY KEY,
  names TEXT NOT NULL,
  stats BLOB NOT NULL,
  digests TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS source_digests (
  key TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS builds (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dockerfile TEXT NOT NULL,
  started INTEGER NOT NULL,
  finished INTEGER,
  ok INTEGER NOT NULL DEFAULT 0,
  steps TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS builds_file ON builds(dockerfile, id);
CREATE TABLE IF NOT EXISTS leases (
  id TEXT PRIMARY KEY,
  pid INTEGER NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_refs (
  lease TEXT NOT NULL,
  ref TEXT NOT NULL,
  PRIMARY KEY (lease, ref)
) WITHOUT ROWID;
`;

function toRecord(row: RecordRow): CacheRecord {
  const rec: CacheRecord = {
    key: row.key as Key,
    stepRef: row.step_ref,
    description: row.description,
    components: JSON.parse(row.components) as KeyComponents,
    created: row.created,
    lastUsed: row.last_used,
    usageCount: row.usage_count,
  };
  if (row.layer !== null) rec.layer = JSON.parse(row.layer) as RecordedLayer;
  return rec;
}

let binding: { nativeBinding?: string } | undefined;
/**
 * better-sqlite3's addon, found through its package: by default the package finds it with
 * `bindings`, which walks up from the calling file's place, and the CLI bundle inlines the
 * package's JavaScript (scripts/bundle-cli.mjs), so that place is the bundle's.
 */
function sqliteBinding(): { nativeBinding?: string } {
  if (binding === undefined) {
    binding = {};
    try {
      const req = createRequire(import.meta.url);
      const addon = join(dirname(req.resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');
      if (existsSync(addon)) binding = { nativeBinding: addon };
    } catch {
      // not resolvable from here: better-sqlite3's own lookup
    }
  }
  return binding;
}

/**
 * The store's SQLite index: cache records, per-record file digests (for miss
 * explanations), the context metadata memo, build summaries and leases.
 * WAL mode with a busy timeout, so several tsbuild processes share it; every
 * multi-row update runs in one IMMEDIATE transaction: a deferred transaction that
 * reads before it writes cannot wait for the write lock in WAL mode (SQLITE_BUSY
 * at once, whatever the busy timeout), an immediate one takes it up front and waits.
 */
export class CacheDb {
  readonly db: Database.Database;
  private memoGet: Database.Statement | undefined;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  static open(file: string): CacheDb {
    const db = new Database(file, { timeout: 30_000, ...sqliteBinding() });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 30000');
    db.exec(SCHEMA);
    return new CacheDb(db);
  }

  close(): void {
    this.db.close();
  }

  get(key: string): CacheRecord | undefined {
    const row = this.db.prepare('SELECT * FROM records WHERE key = ?').get(key) as RecordRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** Marks a record as used now. */
  touch(key: string, now: number): void {
    this.db.prepare('UPDATE records SET last_used = ?, usage_count = usage_count + 1 WHERE key = ?').run(now, key);
  }

  /** The most recent record for the same step (excluding `exceptKey`), to explain a miss. */
  latestForStep(stepRef: string, exceptKey: string): CacheRecord | undefined {
    const row = this.db
      .prepare('SELECT * FROM records WHERE step_ref = ? AND key != ? ORDER BY created DESC, rowid DESC LIMIT 1')
      .get(stepRef, exceptKey) as RecordRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** Saves a record and the file digests it was computed from, in one transaction. */
  save(rec: CacheRecord, files: readonly FileDigest[] = []): void {
    const insert = this.db.prepare(
      `INSERT INTO records (key, step_ref, description, components, layer, created, last_used, usage_count)
       VALUES (@key, @step_ref, @description, @components, @layer, @created, @last_used, @usage_count)
       ON CONFLICT(key) DO UPDATE SET last_used = excluded.last_used, step_ref = excluded.step_ref,
         usage_count = records.usage_count + 1`,
    );
    const insertFile = this.db.prepare('INSERT OR REPLACE INTO record_files (key, path, digest) VALUES (?, ?, ?)');
    this.db.transaction(() => {
      insert.run({
        key: rec.key,
        step_ref: rec.stepRef,
        description: rec.description,
        components: JSON.stringify(rec.components),
        layer: rec.layer ? JSON.stringify(rec.layer) : null,
        created: rec.created,
        last_used: rec.lastUsed,
        usage_count: rec.usageCount,
      });
      for (const f of files) insertFile.run(rec.key, f.path, f.digest);
      crashPoint('cache-index-update');
    }).immediate();
    crashPoint('cache-index-committed');
  }

  files(key: string): FileDigest[] {
    return this.db.prepare('SELECT path, digest FROM record_files WHERE key = ? ORDER BY path').all(key) as FileDigest[];
  }

  all(): CacheRecord[] {
    return (this.db.prepare('SELECT * FROM records ORDER BY created').all() as RecordRow[]).map(toRecord);
  }

  /** Deletes records (and their file lists) in one transaction. */
  deleteRecords(keys: readonly string[]): void {
    const del = this.db.prepare('DELETE FROM records WHERE key = ?');
    const delFiles = this.db.prepare('DELETE FROM record_files WHERE key = ?');
    this.db.transaction(() => {
      for (const k of keys) {
        del.run(k);
        delFiles.run(k);
      }
    }).immediate();
  }

  /**
   * The memo row of one context directory (an absolute path), or undefined. A row whose
   * parts disagree in length (damaged) reads as absent: the memo is only a cache.
   */
  loadDirMemo(dir: string): DirMemo | undefined {
    this.memoGet ??= this.db.prepare('SELECT names, stats, digests FROM context_memo WHERE dir = ?').raw();
    const row = this.memoGet.get(dir) as [string, Buffer, string] | undefined;
    if (!row) return undefined;
    const [joined, blob, digests] = row;
    const names = joined === '' ? [] : joined.split('/');
    if (blob.length !== names.length * 32 || digests.length !== names.length * 64) return undefined;
    // copied: a Float64Array view needs 8-byte alignment, which SQLite's buffer need not have
    const stats = new Float64Array(names.length * 4);
    new Uint8Array(stats.buffer).set(blob);
    return { names, stats, digests };
  }

  /** Replaces the memo rows of some directories (absolute paths), in one transaction. */
  saveDirMemos(rows: ReadonlyMap<string, DirMemo>): void {
    if (rows.size === 0) return;
    const put = this.db.prepare('INSERT OR REPLACE INTO context_memo (dir, names, stats, digests) VALUES (?, ?, ?, ?)');
    const del = this.db.prepare('DELETE FROM context_memo WHERE dir = ?');
    this.db.transaction(() => {
      for (const [dir, m] of rows) {
        if (m.names.length === 0) del.run(dir);
        else put.run(dir, m.names.join('/'), Buffer.from(m.stats.buffer, m.stats.byteOffset, m.stats.byteLength), m.digests);
      }
    }).immediate();
  }

  /**
   * The digest of the files some COPY sources match in an immutable layer chain
   * (`COPY --from`), keyed by the chain ID and the sources: a rebuild reuses it
   * instead of mounting the source stage to read its files again.
   */
  sourceDigest(key: string): string | undefined {
    const row = this.db.prepare('SELECT digest FROM source_digests WHERE key = ?').get(key) as { digest: string } | undefined;
    return row?.digest;
  }

  saveSourceDigest(key: string, digest: string, now: number): void {
    this.db.prepare('INSERT OR REPLACE INTO source_digests (key, digest, created) VALUES (?, ?, ?)').run(key, digest, now);
  }

  startBuild(dockerfile: string, now: number): number {
    const r = this.db.prepare('INSERT INTO builds (dockerfile, started) VALUES (?, ?)').run(dockerfile, now);
    return Number(r.lastInsertRowid);
  }

  finishBuild(id: number, ok: boolean, steps: readonly BuildStepSummary[], now: number): void {
    this.db
      .prepare('UPDATE builds SET finished = ?, ok = ?, steps = ? WHERE id = ?')
      .run(now, ok ? 1 : 0, JSON.stringify(steps), id);
  }

  lastBuild(dockerfile?: string): BuildSummary | undefined {
    const row = (
      dockerfile === undefined
        ? this.db.prepare('SELECT * FROM builds WHERE finished IS NOT NULL ORDER BY id DESC LIMIT 1').get()
        : this.db
            .prepare('SELECT * FROM builds WHERE dockerfile = ? AND finished IS NOT NULL ORDER BY id DESC LIMIT 1')
            .get(dockerfile)
    ) as { id: number; dockerfile: string; started: number; finished: number | null; ok: number; steps: string } | undefined;
    if (!row) return undefined;
    const out: BuildSummary = {
      id: row.id,
      dockerfile: row.dockerfile,
      started: row.started,
      ok: row.ok === 1,
      steps: JSON.parse(row.steps) as BuildStepSummary[],
    };
    if (row.finished !== null) out.finished = row.finished;
    return out;
  }

  /** Registers a lease held by this process on a set of refs (record keys, snapshot names, blobs). */
  addLease(id: string, pid: number, refs: readonly string[], now: number): void {
    const ins = this.db.prepare('INSERT OR IGNORE INTO lease_refs (lease, ref) VALUES (?, ?)');
    this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO leases (id, pid, created) VALUES (?, ?, ?)').run(id, pid, now);
      for (const r of refs) ins.run(id, r);
    }).immediate();
  }

  releaseLease(id: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM lease_refs WHERE lease = ?').run(id);
      this.db.prepare('DELETE FROM leases WHERE id = ?').run(id);
    }).immediate();
  }

  /**
   * The leases of live processes: every ref they hold and when the oldest of them
   * started (anything created after that may belong to a running build). Leases of
   * dead processes are dropped.
   */
  liveLeases(isAlive: (pid: number) => boolean): { refs: Set<string>; oldest?: number; count: number } {
    const leases = this.db.prepare('SELECT id, pid, created FROM leases').all() as { id: string; pid: number; created: number }[];
    const refs = new Set<string>();
    let oldest: number | undefined;
    let count = 0;
    const refStmt = this.db.prepare('SELECT ref FROM lease_refs WHERE lease = ?');
    for (const l of leases) {
      if (!isAlive(l.pid)) {
        this.releaseLease(l.id);
        continue;
      }
      count++;
      oldest = oldest === undefined ? l.created : Math.min(oldest, l.created);
      for (const r of refStmt.all(l.id) as { ref: string }[]) refs.add(r.ref);
    }
    return { refs, ...(oldest !== undefined ? { oldest } : {}), count };
  }

  /**
   * Looks a record up and, when it exists, adds it (and its layer blob) to a lease in
   * the same transaction, so a concurrent prune either sees the lease or has already
   * removed the record.
   */
  getAndHold(key: string, lease: string, pid: number, now: number): CacheRecord | undefined {
    return this.db.transaction(() => {
      const rec = this.get(key);
      if (rec) this.addLease(lease, pid, rec.layer ? [rec.key, rec.layer.digest] : [rec.key], now);
      return rec;
    }).immediate();
  }

  /**
   * Deletes the records `pick` chooses among those no live lease holds and that were
   * created before `before`, in one transaction (so a build cannot lease one in between).
   * Returns the deleted records.
   */
  deleteUnleased(pick: (candidates: CacheRecord[]) => CacheRecord[], isAlive: (pid: number) => boolean, dryRun = false): CacheRecord[] {
    return this.db.transaction(() => {
      const live = this.liveLeases(isAlive);
      const candidates = this.all().filter((r) => !live.refs.has(r.key) && (live.oldest === undefined || r.created < live.oldest));
      const chosen = pick(candidates);
      if (!dryRun) this.deleteRecords(chosen.map((r) => r.key));
      return chosen;
    }).immediate();
  }

  /** Refs held by leases whose process is alive; leases of dead processes are dropped. */
  leasedRefs(isAlive: (pid: number) => boolean): Set<string> {
    const leases = this.db.prepare('SELECT id, pid FROM leases').all() as { id: string; pid: number }[];
    const out = new Set<string>();
    for (const l of leases) {
      if (!isAlive(l.pid)) {
        this.releaseLease(l.id);
        continue;
      }
      for (const r of this.db.prepare('SELECT ref FROM lease_refs WHERE lease = ?').all(l.id) as { ref: string }[]) out.add(r.ref);
    }
    return out;
  }
}
