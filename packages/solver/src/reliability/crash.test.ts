/**
 * Crash safety (catalog T30, T31, T32, T35, T40; H-CRASH, H-VERIFY): a tsbuild process
 * killed with SIGKILL at every named crash point, then at random moments in a loop,
 * leaves a store that the next command uses without manual repair, that checkStore
 * finds consistent, and that gives the same image digest as a clean store.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BuildStore } from '../store.js';
import { checkStore } from '../check/index.js';
import { CRASH_POINTS } from '../check/crash-points.js';
import { requireBuildPrereqs, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';
import { assertClean, makeContext, seededRandom, mountsUnder, runcContainers, runTsbuild, verifyStore } from './test-helpers/harness.js';

const DOCKERFILE = 'FROM busybox:local\nARG N=0\nRUN echo "run $N"; echo "$N" > /n; head -c 200000 /bin/busybox > /blob\nCOPY f /f\n';
const ENV = { SOURCE_DATE_EPOCH: '0' };
/** The RUN layer (~200 KB) is stored virtual: hashed only, regenerated from its snapshot. */
const VIRTUAL_ENV = { ...ENV, TSBUILD_VIRTUAL_LAYER_MIN_BYTES: '100000' };
const envFor = (point: string): Record<string, string> => (point.startsWith('virtual-') ? VIRTUAL_ENV : ENV);

function buildArgs(ctx: string, n: number | string): string[] {
  return ['build', '--progress', 'plain', '-t', 'crash:latest', '--build-arg', `N=${n}`, ctx];
}

/** The image digest printed by `--iidfile`-less builds: read it back from the store. */
async function taggedDigest(root: string): Promise<string> {
  const store = await BuildStore.open(root);
  try {
    const img = await store.images.resolve('crash:latest');
    assert.ok(img, 'expected crash:latest in the store');
    return img.manifestDigest;
  } finally {
    await store.close();
  }
}

/** Removes every snapshot, so the next build unpacks its base image again. */
async function dropSnapshots(root: string): Promise<void> {
  const store = await BuildStore.open(root);
  try {
    const all: { key: string; parent?: string }[] = [];
    for await (const s of store.snapshots.walk()) all.push(s);
    const depth = (k: string | undefined): number => (k === undefined ? 0 : 1 + depth(all.find((s) => s.key === k)?.parent));
    for (const s of all.sort((a, b) => depth(b.key) - depth(a.key))) await store.snapshots.remove(s.key);
  } finally {
    await store.close();
  }
}

describe('crash safety (kill -9)', { concurrency: false }, () => {
  let ts: TestStore | undefined;
  let ctx = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    ts = await tempStoreWithBusybox();
    await ts.store.close();
    ctx = await makeContext({ f: 'context file\n' });
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
  });
  after(async () => {
    await ts?.cleanup();
    if (ctx) await rm(ctx, { recursive: true, force: true });
  });

  test('a crash at each named point leaves a store that recovers by itself and checks clean', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const root = ts!.root;
    const points = CRASH_POINTS.filter((p) => !p.startsWith('push-'));
    for (const [i, point] of points.entries()) {
      if (point === 'unpack-layer') await dropSnapshots(root);
      const r = await runTsbuild(root, buildArgs(ctx, `p${i}`), { env: { ...envFor(point), TSBUILD_CRASH_AT: point } });
      assert.equal(r.signal, 'SIGKILL', `expected the build to reach crash point ${point} and die, it exited ${r.code}:\n${r.stderr}`);
      if (point === 'run') {
        // the crash really left work behind: the step's container and the mounted rootfs
        assert.ok(runcContainers(root).length > 0 || mountsUnder(root).length > 0, 'expected a crash during RUN to leave a container or mount');
      }
      // the next command (any command: here opening the store) recovers without help
      const report = await verifyStore(root);
      assertClean(report, `after a crash at ${point}`);
      assert.deepEqual(runcContainers(root), [], `runc containers left after a crash at ${point}`);
      assert.deepEqual(mountsUnder(root), [], `mounts left after a crash at ${point}`);
      const again = await runTsbuild(root, buildArgs(ctx, `p${i}`), { env: envFor(point) });
      assert.equal(again.code, 0, `the build after a crash at ${point} failed:\n${again.stderr}`);
    }
    assertClean(await verifyStore(root), 'after the rebuilds');
  });

  test('T39: a kill between creating a store lock and writing its owner does not wedge the store', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const root = ts!.root;
    const r = await runTsbuild(root, buildArgs(ctx, 'lock'), { env: { ...ENV, TSBUILD_CRASH_AT: 'lock-created' } });
    assert.equal(r.signal, 'SIGKILL', `expected the build to reach the lock and die, it exited ${r.code}:\n${r.stderr}`);
    // the next command must break the ownerless lock by itself (bounded: an empty lock used to block every later command forever)
    const again = await runTsbuild(root, buildArgs(ctx, 'lock'), { env: ENV, killAfterMs: 60_000 });
    assert.equal(again.code, 0, `the build after a kill at lock-created did not finish (signal ${again.signal}):\n${again.stderr}`);
    assert.deepEqual((await readdir(join(root, 'snapshots'))).filter((n) => n.startsWith('lock')), [], 'a lock file was left');
    assertClean(await verifyStore(root), 'after the kill at lock-created');
  });

  test('T40: SIGTERM during a RUN: the build exits promptly, leaves no container, mount or active snapshot, and the next build is identical', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const root = ts!.root;
    // the step sleeps only when its secret says so: secrets are not in the cache key, so the
    // interrupted build and the next one are the same step
    const df = 'FROM busybox:local\nCOPY f /f\nRUN --mount=type=secret,id=slow if [ "$(cat /run/secrets/slow)" = yes ]; then echo SLOW-STEP-$((1+1)); sleep 120; fi; echo out > /o\n';
    await writeFile(join(ctx, 'Dockerfile.term'), df);
    const secret = (v: string): string[] => ['--secret', `id=slow,src=${join(ctx, `slow-${v}`)}`];
    await writeFile(join(ctx, 'slow-yes'), 'yes');
    await writeFile(join(ctx, 'slow-no'), 'no');
    const args = (v: string): string[] => ['build', '--progress', 'plain', '-t', 'term:latest', '-f', join(ctx, 'Dockerfile.term'), ...secret(v), ctx];
    const clean = await tempStoreWithBusybox();
    let reference: string;
    try {
      await clean.store.close();
      const r = await runTsbuild(clean.root, args('no'), { env: ENV });
      assert.equal(r.code, 0, r.stderr);
      const s = await BuildStore.open(clean.root);
      reference = (await s.images.resolve('term:latest'))!.manifestDigest;
      await s.close();
    } finally {
      await clean.cleanup();
    }
    const r = await runTsbuild(root, args('yes'), { env: ENV, killAfterMs: 60_000, signalOn: { text: 'SLOW-STEP-2', signal: 'SIGTERM' } });
    assert.ok(r.signalledAtMs !== undefined, `the step never started:\n${r.stdout}${r.stderr}`);
    assert.notEqual(r.signal, 'SIGKILL', 'the build did not exit within 60 s of SIGTERM (killed)');
    assert.notEqual(r.code, 0, 'an interrupted build must not succeed');
    assert.match(r.stdout + r.stderr, /interrupted|aborted/);
    t.diagnostic(`exited ${r.ms - r.signalledAtMs} ms after SIGTERM (the step would have slept 120 s)`);
    // what the process itself cleaned up, before any other command opens the store (which would recover)
    assert.deepEqual(runcContainers(root), [], 'a runc container was left');
    assert.deepEqual(mountsUnder(root), [], 'a mount was left');
    const metaDir = join(root, 'snapshots', 'metadata');
    const active = [];
    for (const n of await readdir(metaDir)) if (n.endsWith('.json')) {
      const rec = JSON.parse(await readFile(join(metaDir, n), 'utf8')) as { kind: string; key: string };
      if (rec.kind !== 'committed') active.push(rec.key);
    }
    assert.deepEqual(active, [], 'active snapshots were left');
    assert.deepEqual((await readdir(join(root, 'tmp'))).filter((n) => n.includes(`-${r.pid}-`)), [], 'temp files of the interrupted build were left');
    assertClean(await verifyStore(root), 'after SIGTERM');
    const again = await runTsbuild(root, args('no'), { env: ENV });
    assert.equal(again.code, 0, again.stderr);
    const s = await BuildStore.open(root);
    try {
      assert.equal((await s.images.resolve('term:latest'))?.manifestDigest, reference, 'the build after the interruption differs from a clean build');
    } finally {
      await s.close();
    }
  });

  test('a crash mid-transaction never leaves half a cache record (SQLite rolls back)', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const root = ts!.root;
    const r = await runTsbuild(root, buildArgs(ctx, 'txn'), { env: { ...ENV, TSBUILD_CRASH_AT: 'cache-index-update' } });
    assert.equal(r.signal, 'SIGKILL');
    const store = await BuildStore.open(root);
    try {
      const db = store.db.db;
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      // every record_files row has its record, every record with a layer has its blob
      const orphans = db.prepare('SELECT COUNT(*) AS n FROM record_files WHERE key NOT IN (SELECT key FROM records)').get() as { n: number };
      assert.equal(orphans.n, 0);
      for (const rec of store.db.all()) if (rec.layer) assert.ok(await store.content.has(rec.layer.digest), `record ${rec.key} points at a missing blob`);
      // the hot journal is still there for SQLite to use, never deleted by us
      assertClean(await checkStore(store), 'after a crash inside the transaction');
    } finally {
      await store.close();
    }
  });

  test('random kill -9 loop (50 builds), then the store verifies and rebuilds the clean digest', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const root = ts!.root;
    // reference: a clean build on a separate clean store
    const clean = await tempStoreWithBusybox();
    let reference: string;
    try {
      await clean.store.close();
      const r = await runTsbuild(clean.root, buildArgs(ctx, 'final'), { env: ENV });
      assert.equal(r.code, 0, r.stderr);
      reference = await taggedDigest(clean.root);
    } finally {
      await clean.cleanup();
    }
    // how long a cache-missing build takes here, to spread the kills over all of it
    const probe = await runTsbuild(root, buildArgs(ctx, 'probe'), { env: ENV });
    assert.equal(probe.code, 0, probe.stderr);
    const span = Math.max(300, Math.round(probe.ms * 1.1));
    const rand = seededRandom(0x2545f491);
    let killed = 0;
    const started = Date.now();
    for (let i = 0; i < 50; i++) {
      // a few arguments repeat, so some kills hit a build that resumes a half-done one
      const n = i % 7 === 0 ? 'final' : `loop${i}`;
      // every other build stores its RUN layer virtual: kills also land around the syncfs and the record
      const r = await runTsbuild(root, buildArgs(ctx, n), { env: i % 2 === 1 ? VIRTUAL_ENV : ENV, killAfterMs: Math.floor(rand() * span) });
      if (r.signal === 'SIGKILL') killed++;
      else assert.equal(r.code, 0, `iteration ${i}: a build that was not killed failed:\n${r.stderr}`);
    }
    t.diagnostic(`50 iterations in ${Date.now() - started} ms, ${killed} killed mid-build (span ${span} ms)`);
    assert.ok(killed >= 25, `expected most builds to be killed mid-way, only ${killed} were`);
    assertClean(await verifyStore(root), 'after the kill loop');
    assert.deepEqual(runcContainers(root), []);
    const final = await runTsbuild(root, buildArgs(ctx, 'final'), { env: ENV });
    assert.equal(final.code, 0, final.stderr);
    assert.equal(await taggedDigest(root), reference, 'the resumed build must give the clean build digest');
    assertClean(await verifyStore(root), 'after the final build');
  });

  test('`tsbuild cache check` reports a corrupt blob and a broken record; --repair fixes them; the next build succeeds', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const root = ts!.root;
    const r0 = await runTsbuild(root, buildArgs(ctx, 'fsck'), { env: ENV });
    assert.equal(r0.code, 0, r0.stderr);
    const store = await BuildStore.open(root);
    const img = await store.images.resolve('crash:latest');
    await store.close();
    const layer = img!.manifest.layers.at(-1)!;
    const path = join(root, 'blobs', 'sha256', layer.digest.slice(7));
    const bytes = await readFile(path);
    bytes[bytes.length >> 1] ^= 0xff;
    await writeFile(path, bytes);
    const bad = await runTsbuild(root, ['cache', 'check']);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, new RegExp(`PROBLEM  blob-corrupt ${layer.digest}`));
    assert.match(bad.stdout, /PROBLEM  image-broken .*crash:latest/);
    const fixed = await runTsbuild(root, ['cache', 'check', '--repair']);
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    assert.match(fixed.stdout, /REPAIRED blob-corrupt/);
    assert.match(fixed.stdout, /REPAIRED record-broken/);
    const clean = await runTsbuild(root, ['cache', 'check', '--format', 'json']);
    assert.equal(clean.code, 0, clean.stdout);
    assert.equal((JSON.parse(clean.stdout) as { ok: boolean }).ok, true);
    const again = await runTsbuild(root, buildArgs(ctx, 'fsck'), { env: ENV });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout + again.stderr, /no longer in the store|MISS/);
  });

  test('a corrupt cache index is moved aside and the build succeeds (T34)', async (t) => {
    if (!requireBuildPrereqs(t)) return;
    const root = ts!.root;
    const db = join(root, 'cache.db');
    for (const damage of ['garbage', 'empty-dir'] as const) {
      await rm(db, { recursive: true, force: true });
      await rm(`${db}-wal`, { force: true });
      await rm(`${db}-shm`, { force: true });
      if (damage === 'garbage') await writeFile(db, Buffer.alloc(8192, 0x5a));
      else await mkdir(db);
      const r = await runTsbuild(root, buildArgs(ctx, `corrupt-${damage}`), { env: ENV });
      assert.equal(r.code, 0, `build with a ${damage} cache.db failed:\n${r.stderr}`);
      const store = await BuildStore.open(root);
      try {
        assert.equal(store.recovery.dbBackup, undefined, 'the fresh index must be healthy on the next open');
        assertClean(await checkStore(store), `after recovering a ${damage} index`);
      } finally {
        await store.close();
      }
    }
  });
});
