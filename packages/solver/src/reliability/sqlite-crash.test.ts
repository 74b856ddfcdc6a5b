/**
 * kill -9 during a WAL checkpoint of the cache index (catalog T32, second half). tsbuild
 * never runs `wal_checkpoint` or `VACUUM` itself: SQLite checkpoints on its own, after a
 * commit that takes the WAL past 1000 pages and when the last connection closes. A child
 * process writes records through the store's CacheDb with the automatic checkpoint held
 * back (so the WAL is large), then checkpoints it, explicitly or by closing, and is
 * killed at random moments inside that; the next open (the builder's safe open) keeps
 * the index, `integrity_check` is ok and every committed record is there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { openCacheDbSafely } from '../check/open-db.js';
import { REPO_ROOT } from '../test-helpers/store.js';

const RECORDS = 20;
const FILES_PER_RECORD = 1500;
const KILLS = 6;

// argv: db file, batch name, how to checkpoint ('pragma' | 'close')
const CHILD = `
const { CacheDb } = await import(${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'packages', 'solver', 'dist', 'cache', 'cache-db.js')).href)});
const [file, batch, how] = process.argv.slice(1);
const db = CacheDb.open(file);
db.db.pragma('wal_autocheckpoint = 0');
for (let r = 0; r < ${RECORDS}; r++) {
  const key = 'sha256:' + (batch + '-' + String(r).padStart(4, '0')).padEnd(64, '0');
  const files = [];
  for (let f = 0; f < ${FILES_PER_RECORD}; f++) files.push({ path: '/' + batch + '/' + r + '/file-' + f + '-' + 'x'.repeat(40), digest: 'sha256:' + String(f).padStart(64, '0') });
  db.save({ key, stepRef: 'step', description: batch, components: { parent: '', op: 'RUN ' + batch }, created: r, lastUsed: r, usageCount: 1 }, files);
}
process.stdout.write('checkpoint\\n');
const t0 = performance.now();
if (how === 'pragma') db.db.pragma('wal_checkpoint(TRUNCATE)');
else db.close();
process.stdout.write('done ' + (performance.now() - t0).toFixed(1) + '\\n');
`;

/** Runs the child; with `killAfterMs`, SIGKILLs it that long after it starts checkpointing. */
function child(file: string, batch: string, how: 'pragma' | 'close', killAfterMs?: number): Promise<{ killed: boolean; checkpointMs?: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', CHILD, file, batch, how], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (killAfterMs !== undefined && out.includes('checkpoint\n') && !out.includes('done')) {
        killAfterMs === 0 ? p.kill('SIGKILL') : setTimeout(() => p.kill('SIGKILL'), killAfterMs);
        killAfterMs = undefined;
      }
    });
    p.on('error', reject);
    p.on('close', (_code, signal) => {
      const m = /done ([\d.]+)/.exec(out);
      resolve({ killed: signal === 'SIGKILL' && m === null, ...(m === null ? {} : { checkpointMs: Number(m[1]) }), stderr });
    });
  });
}

describe('kill -9 during a WAL checkpoint of the cache index (T32)', { concurrency: false }, () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsbuild-walcrash-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const how of ['pragma', 'close'] as const) {
    test(`killed inside ${how === 'pragma' ? 'wal_checkpoint(TRUNCATE)' : 'the checkpoint of close()'}: the next open keeps every committed record`, async (t) => {
      const file = join(dir, `${how}.db`);
      // the probe: how long the checkpoint of this WAL takes here, to spread the kills over it
      const probe = await child(file, 'probe', how);
      assert.ok(probe.checkpointMs !== undefined, `the probe did not finish: ${probe.stderr}`);
      const span = Math.max(2, probe.checkpointMs);
      const batches = ['probe'];
      let killedInside = 0;
      let walSeen = 0;
      for (let i = 0; i < KILLS; i++) {
        const batch = `b${i}`;
        // the first kill as soon as the checkpoint starts, the rest spread over its measured length
        const r = await child(file, batch, how, i === 0 ? 0 : Math.floor((i / KILLS) * span));
        batches.push(batch);
        if (!r.killed) continue;
        killedInside++;
        if ((await stat(`${file}-wal`).catch(() => ({ size: 0 }))).size > 0) walSeen++;
        const opened = openCacheDbSafely(file);
        try {
          assert.equal(opened.backup, undefined, `iteration ${i}: the index was moved aside (${opened.reason})`);
          assert.equal(opened.db.db.pragma('integrity_check', { simple: true }), 'ok');
          // every batch committed before its checkpoint, so every record and file row is there
          for (const b of batches) {
            const n = opened.db.db.prepare('SELECT COUNT(*) AS n FROM records WHERE description = ?').get(b) as { n: number };
            assert.equal(n.n, RECORDS, `iteration ${i}: records of ${b}`);
          }
          const files = opened.db.db.prepare('SELECT COUNT(*) AS n FROM record_files').get() as { n: number };
          assert.equal(files.n, batches.length * RECORDS * FILES_PER_RECORD, `iteration ${i}: file rows`);
        } finally {
          opened.db.close();
        }
      }
      t.diagnostic(`checkpoint ${probe.checkpointMs.toFixed(1)} ms; ${killedInside}/${KILLS} kills landed inside it, ${walSeen} left a non-empty WAL behind`);
      assert.ok(killedInside >= 2, `expected several kills inside the checkpoint, only ${killedInside} were`);
      assert.ok(walSeen >= 1, 'expected at least one kill to leave the WAL for the next open to replay');
    });
  }
});
