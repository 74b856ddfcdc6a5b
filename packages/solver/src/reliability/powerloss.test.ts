/**
 * Power loss (catalog T33): the whole store (TSBUILD_ROOT) lives on plfs, a FUSE
 * filesystem that forgets at a "power cut" everything that was not made durable by
 * fsync (powerloss/README.md gives the model). Builds are stopped at the named crash
 * points and at random moments, the power is cut (every process of the build dies,
 * the filesystem reverts to its durable state) and the machine "reboots" (a new mount
 * and a new boot id). Then: the store opens without help and `tsbuild cache check`
 * finds it clean (so no blob is visible under a digest its bytes do not hash to, and
 * no cache record or image names a missing blob, no snapshot a missing tree); an image
 * tagged before the cut is still there; and a build that needs the surviving snapshots
 * gives the same image as a clean store. Lost work is allowed, corruption is not.
 *
 * On FUSE the snapshotter uses its copy backend: overlayfs refuses a FUSE upper dir.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildStore } from '../store.js';
import { CRASH_POINTS } from '../check/crash-points.js';
import { checkStore } from '../check/index.js';
import { importRootfs } from '../ops/import.js';
import { execFileSync } from 'node:child_process';
import { REPO_ROOT, requireBuildPrereqs, requirePrereq, tempStoreWithBusybox, type TestStore } from '../test-helpers/store.js';
import { assertClean, makeContext, seededRandom, runTsbuild, type Spawned } from './test-helpers/harness.js';
import { killStoreProcesses, plfsPrereqs, PowerLossFs } from './powerloss/plfs.js';

// The second RUN reads what the first wrote, so a build whose first step is a cache hit
// runs on the first step's snapshot: a snapshot that lost files gives another image.
const DOCKERFILE = [
  'FROM busybox:local',
  'RUN echo base > /base; head -c 300000 /bin/busybox > /blob; mkdir -p /d/e; echo x > /d/e/f',
  'ARG N=0',
  'RUN echo "step $N"; cat /base /blob /d/e/f | md5sum > /sum; echo "$N" > /n; ln -s /sum /link',
  'COPY f /f',
  '',
].join('\n');
const TAG = 'pl:latest';

interface CheckJson {
  ok: boolean;
  issues: { kind: string; subject: string; message: string }[];
}

describe('power loss (T33: a FUSE filesystem that drops what was not fsynced)', { concurrency: false }, () => {
  let plfs: PowerLossFs | undefined;
  let clean: TestStore | undefined;
  let ctx = '';
  let work = '';
  let boot = 0;
  const refs = new Map<string, Promise<string>>();
  const builders: number[] = [];
  const stats = { cuts: 0, torn: 0, atPoint: 0, completed: 0, lostTags: 0 };

  const root = (): string => join(plfs!.mountpoint, 'store');
  const bootId = (): string => `plfs-boot-${boot}`;

  after(async () => {
    if (plfs) killStoreProcesses(root(), builders);
    await plfs?.stop();
    await clean?.cleanup();
    delete process.env.TSBUILD_TEST_BOOT_ID;
    for (const d of [ctx, work]) if (d) await rm(d, { recursive: true, force: true });
  });

  function prereqs(t: { skip(msg: string): void }): boolean {
    if (!requireBuildPrereqs(t)) return false;
    for (const p of plfsPrereqs()) if (!requirePrereq(t, p.ok, p.what, p.pkg)) return false;
    return true;
  }

  async function setup(): Promise<void> {
    if (plfs) return;
    work = await mkdtemp(join(tmpdir(), 'tsbuild-powerloss-'));
    plfs = await PowerLossFs.mount(join(work, 'mnt'), { seed: 0x7e57 });
    ctx = await makeContext({ f: 'context file\n' });
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
    clean = await tempStoreWithBusybox();
    await clean.store.close();
  }

  const args = (n: string, iid?: string): string[] => ['build', '--progress', 'plain', '-t', TAG, '--build-arg', `N=${n}`, ...(iid ? ['--iidfile', iid] : []), ctx];

  /** Builds N on `storeRoot` and returns the image id. */
  async function buildIid(storeRoot: string, n: string, env: Record<string, string>): Promise<{ iid: string; r: Spawned }> {
    const file = join(work, `iid-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const r = await runTsbuild(storeRoot, args(n, file), { env: { SOURCE_DATE_EPOCH: '0', ...env } });
    builders.push(r.pid);
    assert.equal(r.code, 0, `build of N=${n} failed:\n${r.stdout}\n${r.stderr}`);
    const iid = (await readFile(file, 'utf8')).trim();
    await rm(file, { force: true });
    return { iid, r };
  }

  /** The image id of N built on a clean store on the ordinary disk (one build per N, started at the first call). */
  function reference(n: string): Promise<string> {
    let iid = refs.get(n);
    if (iid === undefined) {
      iid = buildIid(clean!.root, n, { TSBUILD_TEST_BOOT_ID: '' }).then((b) => b.iid);
      iid.catch(() => undefined); // awaited (and reported) by afterReboot
      refs.set(n, iid);
    }
    return iid;
  }

  /** The image id `TAG` names on the plfs store, or undefined. */
  async function tagged(): Promise<string | undefined> {
    process.env.TSBUILD_TEST_BOOT_ID = bootId();
    const store = await BuildStore.open(root());
    try {
      return (await store.images.resolve(TAG))?.configDigest;
    } finally {
      await store.close();
    }
  }

  /** Power cut: every process of the builds dies, then the filesystem loses what was not durable; then a new boot. */
  async function cut(torn: boolean): Promise<void> {
    killStoreProcesses(root(), builders);
    await plfs!.cut({ torn });
    boot++;
    stats.cuts++;
    if (torn) stats.torn++;
  }

  /**
   * What must hold after every reboot: the store opens by itself (no repair) and checks
   * clean: in this process (checkStore, the code of `tsbuild cache check`) or, with
   * `cli`, through `tsbuild cache check` in a process of its own.
   */
  async function afterReboot(what: string, completed: string | undefined, n: string, cli = false): Promise<void> {
    const env = { TSBUILD_TEST_BOOT_ID: bootId() };
    if (cli) {
      const check = await runTsbuild(root(), ['cache', 'check', '--format', 'json'], { env });
      builders.push(check.pid);
      let report: CheckJson | undefined;
      try {
        report = JSON.parse(check.stdout) as CheckJson;
      } catch {
        // reported below
      }
      assert.ok(
        check.code === 0 && report?.ok === true,
        `${what}: expected \`tsbuild cache check\` to find the store clean after the reboot, it exited ${check.code}:\n` +
          (report ? report.issues.map((i) => `  ${i.kind} ${i.subject}: ${i.message}`).join('\n') : check.stdout + check.stderr),
      );
    } else {
      process.env.TSBUILD_TEST_BOOT_ID = bootId();
      const store = await BuildStore.open(root());
      try {
        assertClean(await checkStore(store), `${what}: after the reboot`);
      } finally {
        await store.close();
      }
    }
    if (completed !== undefined) {
      // tagging is durable: a build that finished before the cut keeps its name
      assert.equal(await tagged(), completed, `${what}: the image tagged before the power cut is gone or changed`);
    }
    // a build on the surviving snapshots and cache gives the clean store's image
    const { iid } = await buildIid(root(), n, env);
    assert.equal(iid, await reference(n), `${what}: the rebuild of N=${n} after the reboot differs from a clean store's`);
  }

  /** Runs one build (stopped at a crash point or after `killAfterMs`), cuts the power, checks. */
  async function round(what: string, n: string, opts: { crashAt?: string; killAfterMs?: number; torn: boolean; cli?: boolean }): Promise<void> {
    void reference(`after-${n}`); // built meanwhile on the clean store
    const iidFile = join(work, 'iid-round');
    await rm(iidFile, { force: true });
    const r = await runTsbuild(root(), args(n, iidFile), {
      env: { SOURCE_DATE_EPOCH: '0', TSBUILD_TEST_BOOT_ID: bootId(), ...(opts.crashAt ? { TSBUILD_CRASH_AT: opts.crashAt } : {}) },
      ...(opts.killAfterMs !== undefined ? { killAfterMs: opts.killAfterMs } : {}),
    });
    builders.push(r.pid);
    let completed: string | undefined;
    if (r.signal === 'SIGKILL') {
      if (opts.crashAt) stats.atPoint++;
    } else {
      assert.equal(r.code, 0, `${what}: a build that was not stopped failed:\n${r.stderr}`);
      completed = (await readFile(iidFile, 'utf8')).trim();
      stats.completed++;
    }
    await cut(opts.torn);
    await afterReboot(`${what}${opts.torn ? ' (torn cut)' : ''}`, completed, `after-${n}`, opts.cli === true);
  }

  test('plfs keeps exactly what fsync made durable (its model, on plain files)', async (t) => {
    if (!prereqs(t)) return;
    await setup();
    const m = join(plfs!.mountpoint, 'model');
    const fsync = async (path: string): Promise<void> => {
      const fh = await open(path, 'r');
      await fh.sync();
      await fh.close();
    };
    await mkdir(m);
    await fsync(plfs!.mountpoint);
    await mkdir(join(m, 'x'));
    await fsync(m);
    // x is never fsynced again: no name made in it is durable
    await writeFile(join(m, 'x', 'unsynced'), 'lost');
    await writeFile(join(m, 'x', 'data-only'), 'lost too');
    await fsync(join(m, 'x', 'data-only'));
    await writeFile(join(m, 'name-only'), 'bytes lost');
    await writeFile(join(m, 'both'), 'kept');
    await fsync(join(m, 'both'));
    await mkdir(join(m, 'sub'));
    await writeFile(join(m, 'sub', 'moved'), 'kept, moved');
    await fsync(join(m, 'sub', 'moved'));
    await fsync(join(m, 'sub'));
    await fsync(m);
    await rename(join(m, 'sub', 'moved'), join(m, 'moved'));
    await fsync(m); // the rename is atomic: durable in both directories at once
    await symlink('target', join(m, 'link'));
    await fsync(m);
    await writeFile(join(m, 'both'), 'overwritten, not synced');
    await cut(false);
    assert.deepEqual((await readdir(m)).sort(), ['both', 'link', 'moved', 'name-only', 'sub', 'x']);
    assert.deepEqual(await readdir(join(m, 'x')), [], 'names in a directory never fsynced are lost, even of fsynced files');
    assert.equal(await readFile(join(m, 'both'), 'utf8'), 'kept');
    assert.equal(await readFile(join(m, 'name-only'), 'utf8'), '', 'a name made durable without its data comes back empty');
    assert.equal(await readFile(join(m, 'moved'), 'utf8'), 'kept, moved');
    assert.deepEqual(await readdir(join(m, 'sub')), []);
    assert.equal(await readlink(join(m, 'link')), 'target');
    // a torn cut keeps a prefix of the unsynced writes: here of 2 appends, 0, 1 or 2
    const fh = await open(join(m, 'both'), 'a');
    await fh.write('+1');
    await fh.write('+2');
    await fh.close();
    await cut(true);
    assert.ok(['kept', 'kept+1', 'kept+1+2'].includes(await readFile(join(m, 'both'), 'utf8')));
    await rm(m, { recursive: true });
  });

  test('a power cut right after a store is created and an image imported keeps the store and the image', async (t) => {
    if (!prereqs(t)) return;
    await setup();
    process.env.TSBUILD_TEST_BOOT_ID = bootId();
    const store = await BuildStore.open(root());
    const rootfs = join(work, 'busybox-rootfs');
    try {
      execFileSync('bash', [join(REPO_ROOT, 'scripts', 'make-busybox-rootfs.sh'), rootfs], { stdio: 'inherit' });
      await importRootfs(store, rootfs, {
        tags: ['busybox:local'],
        config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
        sourceDateEpoch: 0,
      });
    } finally {
      await store.close();
      await rm(rootfs, { recursive: true, force: true });
    }
    await cut(false);
    process.env.TSBUILD_TEST_BOOT_ID = bootId();
    const again = await BuildStore.open(root());
    try {
      assert.ok(await again.images.resolve('busybox:local'), 'the imported image did not survive the power cut');
    } finally {
      await again.close();
    }
    await afterReboot('after importing the base image', undefined, 'fresh', true);
  });

  test('a power cut at each named crash point leaves a store that opens, checks clean and rebuilds the clean image', async (t) => {
    if (!prereqs(t)) return;
    await setup();
    // virtual-*: virtual layers are made on the overlay backend only, never on this copy-backend store
    const points = CRASH_POINTS.filter((p) => !p.startsWith('push-') && !p.startsWith('virtual-'));
    for (const [i, point] of points.entries()) {
      if (point === 'unpack-layer') {
        // a clean reboot first: this boot's snapshots go, so the build unpacks its base again
        await plfs!.checkpoint();
        boot++;
      }
      await round(`a power cut at ${point}`, `p${i}`, { crashAt: point, torn: i % 2 === 1, cli: i === points.length - 1 });
    }
    t.diagnostic(`${points.length} cuts: ${stats.atPoint} builds stopped at their point, ${stats.completed} completed first`);
  });

  test('power cuts at random moments (6 builds) leave a store that opens, checks clean and rebuilds the clean image', async (t) => {
    if (!prereqs(t)) return;
    await setup();
    const started = Date.now();
    const probe = await buildIid(root(), 'probe', { TSBUILD_TEST_BOOT_ID: bootId() });
    const span = Math.max(300, Math.round(probe.r.ms * 1.2));
    const rand = seededRandom(0x5eed1e55);
    const before = { ...stats };
    for (let i = 0; i < 6; i++) {
      // a few arguments repeat, so some cuts hit a build that resumes a half-done one
      const n = i % 3 === 0 ? 'again' : `r${i}`;
      await round(`random power cut ${i}`, n, { killAfterMs: Math.floor(rand() * span), torn: rand() < 0.5, cli: i === 5 });
    }
    t.diagnostic(`6 cuts in ${Date.now() - started} ms (span ${span} ms): ${stats.completed - before.completed} builds completed before the cut, ${stats.torn - before.torn} torn cuts`);
  });
});
