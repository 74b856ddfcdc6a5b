/**
 * Volatile overlay mounts for build steps, and the guard that makes them (and every other
 * snapshot whose files were never synced) safe.
 *
 * Unmounting an overlay that has an upperdir syncs the whole backing filesystem
 * (syncfs): a few ms when idle, up to a second per step when other processes have dirty
 * data. With the overlay `volatile` option (Linux ≥ 5.10) the unmount skips that sync.
 * Within one boot this changes nothing a reader can see (the page cache is coherent:
 * the layer export, later mounts and other processes read the same data). Only a crash
 * of the machine can lose upperdir data that was never written back, while the
 * snapshot's committed record (fsync'd) survives. The guard:
 *
 * - before a process commits its first snapshot made under a volatile mount, the store's
 *   `volatile-boot` stamp is made durable with the current boot id;
 * - such snapshots carry the label {@link VOLATILE_LABEL} = boot id; so do all the other
 *   snapshots whose files nothing syncs: the layers unpacked for a build or import,
 *   and every snapshot of the copy backend (the only one where overlay cannot work, e.g.
 *   a store on FUSE) — only a plain overlay's unmount syncs the step's upper filesystem;
 * - when a store is opened in another boot while the stamp names an older one, every
 *   committed snapshot labelled with another boot, and every snapshot above one, is
 *   removed before anything can use it; they are re-unpacked on demand from their layer
 *   blobs, which the content store fsyncs before they are visible. Then the stamp names
 *   the current boot.
 *
 * A crashed builder *process* leaves only an uncommitted active snapshot, which recovery
 * discards already (its data is in the page cache anyway).
 */
import { spawn } from 'node:child_process';
import { open, readFile, rename, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { bootId, type Snapshotter } from '@tsbuild/snapshotter';

/** Label on committed snapshots made under a volatile mount: the boot id they were written in. */
export const VOLATILE_LABEL = 'tsbuild.volatile-boot';

const STAMP = 'volatile-boot';


/**
 * The kernel's boot id, or undefined when it cannot be read (then no volatile mounts).
 * `TSBUILD_TEST_BOOT_ID` overrides it, for tests only (see bootId in @tsbuild/snapshotter).
 */
export function currentBootId(): Promise<string | undefined> {
  return Promise.resolve(bootId());
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const stamped = new Map<string, Promise<void>>();

/**
 * Makes `<root>/volatile-boot` durably name `bootId` (once per process and root; a no-op
 * when it already does). Must complete before a volatile snapshot is committed.
 */
export function ensureVolatileStamp(root: string, bootId: string): Promise<void> {
  let p = stamped.get(root);
  if (p === undefined) {
    p = (async () => {
      const file = join(root, STAMP);
      const cur = await readFile(file, 'utf8').catch(() => '');
      if (cur.trim() === bootId) return;
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, `${bootId}\n`);
      await fsyncPath(tmp);
      await rename(tmp, file);
      await fsyncPath(dirname(file));
    })();
    p.catch(() => stamped.delete(root));
    stamped.set(root, p);
  }
  return p;
}

/**
 * At store open: when the stamp names another boot, removes the committed snapshots
 * made under volatile mounts in other boots and all snapshots above them, then the
 * stamp is rewritten to name this boot. Returns the snapshot keys found doomed. Cheap (one small read) when there is
 * nothing to do.
 */
export async function dropVolatileSnapshots(root: string, snapshots: Snapshotter): Promise<string[]> {
  const file = join(root, STAMP);
  const stamp = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (stamp === '') return [];
  const boot = await currentBootId();
  if (boot === undefined || stamp === boot) return [];
  const all: { key: string; parent?: string; labels: Record<string, string> }[] = [];
  for await (const s of snapshots.walk()) all.push(s);
  const doomed = new Set(all.filter((s) => s.labels[VOLATILE_LABEL] !== undefined && s.labels[VOLATILE_LABEL] !== boot).map((s) => s.key));
  // everything above a doomed snapshot goes too (its lowerdirs would be incomplete)
  for (let grew = true; grew; ) {
    grew = false;
    for (const s of all) {
      if (!doomed.has(s.key) && s.parent !== undefined && doomed.has(s.parent)) {
        doomed.add(s.key);
        grew = true;
      }
    }
  }
  const depth = (key: string): number => {
    let d = 0;
    for (let s = all.find((x) => x.key === key); s?.parent !== undefined; s = all.find((x) => x.key === s!.parent)) d++;
    return d;
  };
  // children before parents; each is checked again right before removal, so a
  // snapshot another process re-created under the same key meanwhile is kept
  let complete = true;
  for (const key of [...doomed].sort((a, b) => depth(b) - depth(a))) {
    const now = await snapshots.stat(key).catch(() => undefined);
    if (now === undefined) continue;
    const label = now.labels[VOLATILE_LABEL];
    if (!((label !== undefined && label !== boot) || (now.parent !== undefined && doomed.has(now.parent)))) continue;
    await snapshots.remove(key).catch((err: unknown) => {
      // a live child (another builder) keeps it: try again at the next open
      if ((err as { code?: string }).code === 'FAILED_PRECONDITION') complete = false;
      else if ((err as { code?: string }).code !== 'NOT_FOUND') throw err;
    });
  }
  // no snapshot of another boot is left: the stamp may name this one (never removed,
  // so a concurrent builder's stamp for this boot is never lost)
  if (complete) {
    stamped.delete(root);
    await ensureVolatileStamp(root, boot);
  }
  return [...doomed];
}

/**
 * syncfs(2) of the filesystem holding `path` (`sync -f`: Node has no syncfs). Snapshot
 * data written under a volatile mount is durable once this resolves.
 */
export function syncFilesystem(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('sync', ['-f', path], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`sync -f ${path} failed (exit ${code}): ${err.trim()}`))));
  });
}

/** How much newly used space on the store's filesystem starts a writeback during a step. */
const PUMP_BYTES = 64 * 1024 * 1024;
const PUMP_INTERVAL_MS = 250;

/**
 * While a step writes into its snapshot, starts a syncfs of the store's filesystem each
 * time another {@link PUMP_BYTES} of space went into use (statfs counts ext4's delayed
 * allocations, so this tracks data that is still dirty), one at a time. Returns the
 * function that stops it (and waits for a sync in flight).
 *
 * Why: with 24 GiB of RAM a step's gigabyte stays dirty until the export's own syncfs,
 * and on the machine we measure on writing into a large dirty set costs more kernel time
 * per write. S4's RUN (1 GiB in 50,000 files), 7 alternating pairs of whole builds: 8.1-11.7 s
 * (median 9.7) with the pump, 9.4-16.9 s (median 12.5) without; its export 1.1-1.2 s
 * against 1.4-2.0 s, as the export's syncfs finds the data mostly written (with snapshots
 * in block groups of their own, see the snapshotter's placement: medians 5.7 s against 6.5 s,
 * export 1.0-1.3 s against 1.4-1.6 s). Steps that
 * write less than the threshold never sync; the cost is one statfs per interval.
 * `TSBUILD_WRITEBACK_PUMP=off` disables it.
 */
export function pumpWriteback(
  path: string,
  opts: { bytes?: number; intervalMs?: number; sync?: (path: string) => Promise<void> } = {},
): () => Promise<void> {
  if (process.env.TSBUILD_WRITEBACK_PUMP === 'off') return async () => {};
  const threshold = opts.bytes ?? PUMP_BYTES;
  const sync = opts.sync ?? syncFilesystem;
  let stopped = false;
  let mark: number | undefined;
  let inFlight: Promise<void> | undefined;
  let polling = false;
  const poll = async (): Promise<void> => {
    if (stopped || polling || inFlight !== undefined) return;
    polling = true;
    try {
      const st = await statfs(path);
      const free = st.bfree * st.bsize;
      if (mark === undefined || free > mark) mark = free; // space freed meanwhile: measure from here
      else if (mark - free >= threshold && !stopped) {
        mark = free;
        inFlight = sync(path)
          .catch(() => {}) // best effort: the export's own syncfs decides durability
          .finally(() => (inFlight = undefined));
      }
    } catch {
      // statfs failed (store gone?): nothing to pump
    } finally {
      polling = false;
    }
  };
  void poll();
  const timer = setInterval(() => void poll(), opts.intervalMs ?? PUMP_INTERVAL_MS);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await inFlight;
  };
}

/**
 * After a syncfs that started once `key` and its ancestors were committed: drops the
 * volatile label of this boot from them (each record rewritten durably), so the guard
 * keeps them after a machine crash. A virtual blob regenerated from `key` needs the
 * whole chain: the guard removes everything above a volatile snapshot.
 */
export async function markDurable(snapshots: Snapshotter, key: string, bootId: string | undefined): Promise<void> {
  if (bootId === undefined) return;
  for (let k: string | undefined = key; k !== undefined; ) {
    const s = await snapshots.stat(k);
    if (s.labels[VOLATILE_LABEL] === bootId) {
      const { [VOLATILE_LABEL]: _dropped, ...rest } = s.labels;
      void _dropped;
      await snapshots.setLabels(k, rest);
    }
    k = s.parent;
  }
}
