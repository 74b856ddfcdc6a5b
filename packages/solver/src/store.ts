import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ContentStore, ImageStore, mkdirDurable, openSnapshotter, snapshotDiffSource, unmountAll, type Snapshotter, pidAlive } from '@tsbuild/snapshotter';
import { CacheDb } from './cache/cache-db.js';
import { openCacheDbSafely } from './check/open-db.js';
import { recoverStore, type RecoveryReport } from './check/recover.js';
import { dropVolatileSnapshots } from './frontend/volatile.js';

/** Default store location: `$TSBUILD_ROOT`, else /var/lib/tsbuild as root, else `$XDG_DATA_HOME/tsbuild`. */
export function defaultStoreRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSBUILD_ROOT) return env.TSBUILD_ROOT;
  if (process.getuid?.() === 0) return '/var/lib/tsbuild';
  const xdg = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(xdg, 'tsbuild');
}

export interface StoreOptions {
  /** snapshot backend: overlay where the kernel allows it, else copy */
  snapshotter?: 'auto' | 'overlay' | 'copy';
}

/**
 * Everything a build reads and writes, under one root directory:
 * the root itself is an OCI image layout (blobs/, index.json for image names),
 * snapshots/ holds the layered filesystems, cache.db the SQLite index,
 * tmp/ mount points and bundles (cleared of stale entries on open).
 */
export class BuildStore {
  readonly root: string;
  readonly content: ContentStore;
  readonly images: ImageStore;
  readonly snapshots: Snapshotter;
  readonly db: CacheDb;
  /**
   * What opening the store cleaned up after crashed builders (containers, mounts, temp
   * dirs), and where a corrupt cache index was moved aside (it is then recreated empty).
   */
  recovery: RecoveryReport & { dbBackup?: string; dbReason?: string } = { containers: [], mounts: [], dirs: [] };

  private constructor(root: string, content: ContentStore, images: ImageStore, snapshots: Snapshotter, db: CacheDb) {
    this.root = root;
    this.content = content;
    this.images = images;
    this.snapshots = snapshots;
    this.db = db;
  }

  static async open(root: string = defaultStoreRoot(), opts: StoreOptions = {}): Promise<BuildStore> {
    // durably: a store whose directory a power cut takes away loses every image
    await mkdirDurable(root);
    // first the leftovers of crashed builders: their containers and mounts hold snapshots
    const recovered = await recoverStore(root);
    const content = await ContentStore.open(root);
    await content.cleanupIngest();
    const images = await ImageStore.open(content);
    const snapshots = await openSnapshotter(join(root, 'snapshots'), { backend: opts.snapshotter ?? 'auto' });
    // snapshots written under volatile mounts in an earlier boot may have lost data in a crash
    await dropVolatileSnapshots(root, snapshots);
    // virtual blobs (big uncompressed layers) are regenerated from their committed snapshots
    content.useVirtualSource(snapshotDiffSource(snapshots));
    const opened = openCacheDbSafely(join(root, 'cache.db'));
    opened.db.leasedRefs(isAlive); // drops the leases of dead processes
    await mkdir(join(root, 'tmp'), { recursive: true });
    const store = new BuildStore(root, content, images, snapshots, opened.db);
    store.recovery = { ...recovered, ...(opened.backup !== undefined ? { dbBackup: opened.backup, dbReason: opened.reason ?? '' } : {}) };
    return store;
  }

  /** A fresh private directory under the store's tmp/ (for mount points, bundles). */
  async tempDir(prefix: string): Promise<string> {
    const dir = join(this.root, 'tmp', `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** Removes tmp/ entries left by processes that are gone. */
  async cleanupTemp(): Promise<void> {
    const dir = join(this.root, 'tmp');
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const m = /-(\d+)-[a-z0-9]+$/.exec(name);
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid === process.pid || isAlive(pid)) continue;
      const path = join(dir, name);
      // never rm -r through a live mount: unmount whatever is still mounted below first
      for (const mp of (await mountPoints()).filter((p) => p === path || p.startsWith(`${path}/`)).reverse()) {
        await unmountAll(mp);
      }
      await rm(path, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    this.db.close();
    await this.snapshots.close();
  }
}

/** True when `pid` names a live process (EPERM counts as alive). */
export const isAlive: (pid: number) => boolean = pidAlive;

/** Mount points of this mount namespace, in mount order. */
async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[1].replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}
