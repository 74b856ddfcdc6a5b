/**
 * The snapshotter: containerd's model over one root directory
 *   <root>/lock, <root>/next-id, <root>/metadata/*.json, <root>/snapshots/<id>/{fs,work}
 * Backends: `overlay` (upperdir = fs, lowers = the parents' fs dirs) and `copy`
 * (prepare copies the parent tree with `cp -a`, preserving owners, modes, xattrs,
 * hardlinks and special files).
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { SnapshotArgumentError, SnapshotExistsError, SnapshotNotFoundError, SnapshotStateError } from '../errors.js';
import { run } from '../tar/system.js';
import { MetaStore } from './metadata.js';
import { crashPoint } from '../crash-point.js';
import { mountAll, unmountAll } from './mount.js';
import type { Mount, Snapshotter, SnapshotInfo, SnapshotRecord, Usage } from './types.js';
import { pidAlive } from '../util/process.js';
import { native } from '../util/native.js';
import { mkdirDurable } from '../content/content-store.js';

/** Options of openSnapshotter. */
export interface OpenSnapshotterOptions {
  /** 'auto' (default): overlay if an overlay mount works under `root`, else copy. */
  backend?: 'auto' | 'overlay' | 'copy';
}

function info(r: SnapshotRecord): SnapshotInfo {
  const i: SnapshotInfo = { key: r.key, kind: r.kind, created: r.created, labels: { ...r.labels } };
  if (r.parent !== undefined) i.parent = r.parent;
  return i;
}

function checkKey(what: string, key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > 4096) {
    throw new SnapshotArgumentError(what, 'a non-empty string of at most 4096 characters', JSON.stringify(key));
  }
}

/** True when this process runs in a user namespace that does not map the whole uid range. */
async function inUserNamespace(): Promise<boolean> {
  const map = await readFile('/proc/self/uid_map', 'utf8').catch(() => '');
  const f = map.trim().split(/\s+/);
  return !(f[0] === '0' && f[1] === '0' && f[2] === '4294967295');
}

async function overlayParamOn(name: string): Promise<boolean> {
  const v = await readFile(`/sys/module/overlay/parameters/${name}`, 'utf8').catch(() => 'N');
  return v.trim() === 'Y' || v.trim() === 'on';
}

/**
 * Tries a real overlay mount under `root`. Returns the extra mount options that made it
 * work (`userxattr` inside a user namespace) or undefined when overlay is unusable here.
 */
export async function probeOverlay(root: string): Promise<string[] | undefined> {
  const dir = join(root, `probe-${process.pid}`);
  await rm(dir, { recursive: true, force: true });
  for (const d of ['l1', 'l2', 'u', 'w', 'm']) await mkdir(join(dir, d), { recursive: true });
  const extra: string[] = [];
  // Exported diffs must see real data in the upperdir: no metacopy, no redirects.
  if (await overlayParamOn('metacopy')) extra.push('metacopy=off');
  if (await overlayParamOn('redirect_dir')) extra.push('redirect_dir=off');
  if (await overlayParamOn('index')) extra.push('index=off');
  const candidates = (await inUserNamespace()) ? [[...extra, 'userxattr'], extra] : [extra];
  try {
    for (const c of candidates) {
      const opts = [`lowerdir=${join(dir, 'l1')}:${join(dir, 'l2')}`, `upperdir=${join(dir, 'u')}`, `workdir=${join(dir, 'w')}`, ...c];
      const ok = await mountAll([{ type: 'overlay', source: 'overlay', options: opts }], join(dir, 'm')).then(
        () => true,
        () => false,
      );
      if (ok) {
        await unmountAll(join(dir, 'm'));
        return c;
      }
    }
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * probeOverlay, remembered under `root` for the rest of this boot: the probe's mount and
 * unmount cost a few ms each, but unmounting an overlay with an upperdir syncs the
 * whole backing filesystem, which takes up to a second when other processes have dirty
 * data — on every process start. The result is keyed by the boot, kernel, user
 * namespace and overlay module parameters; only a working overlay is remembered.
 */
async function cachedProbe(root: string): Promise<string[] | undefined> {
  const params = await Promise.all(['metacopy', 'redirect_dir', 'index'].map((n) => readFile(`/sys/module/overlay/parameters/${n}`, 'utf8').catch(() => '-')));
  const bootId = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '');
  const uidMap = await readFile('/proc/self/uid_map', 'utf8').catch(() => '');
  const key = JSON.stringify([bootId.trim(), release(), uidMap.trim().split(/\s+/), params.map((p) => p.trim())]);
  const file = join(root, 'overlay-probe.json');
  if (bootId !== '') {
    try {
      const saved = JSON.parse(await readFile(file, 'utf8')) as { key?: unknown; options?: unknown };
      if (saved.key === key && Array.isArray(saved.options) && saved.options.every((o) => typeof o === 'string')) return saved.options as string[];
    } catch {
      /* no or unreadable record: probe */
    }
  }
  const options = await probeOverlay(root);
  if (options && bootId !== '') {
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ key, options }));
    await rename(tmp, file);
  }
  return options;
}

class FsSnapshotter implements Snapshotter {
  private closed = false;
  constructor(
    readonly backend: 'overlay' | 'copy',
    readonly root: string,
    private readonly meta: MetaStore,
    /** Extra overlay options (userxattr, metacopy=off, ...). */
    readonly overlayOptions: readonly string[],
  ) {}

  private live(): void {
    if (this.closed) throw new SnapshotStateError('', 'an open snapshotter', 'a closed one');
  }

  /** Directory holding a snapshot's own files (overlay upperdir / copy tree). */
  fsDir(id: string): string {
    return join(this.root, 'snapshots', id, 'fs');
  }

  private workDir(id: string): string {
    return join(this.root, 'snapshots', id, 'work');
  }

  /** Record of a key; throws SnapshotNotFoundError. */
  async record(key: string): Promise<SnapshotRecord> {
    checkKey('snapshot key', key);
    const r = await this.meta.get(key);
    if (!r) throw new SnapshotNotFoundError(key);
    return r;
  }

  /** The committed ancestors of a snapshot, nearest first. */
  async ancestors(rec: SnapshotRecord): Promise<SnapshotRecord[]> {
    const out: SnapshotRecord[] = [];
    let p = rec.parent;
    while (p !== undefined) {
      const r = await this.meta.get(p);
      if (!r) throw new SnapshotNotFoundError(p);
      out.push(r);
      p = r.parent;
    }
    return out;
  }

  private async create(kind: 'active' | 'view', key: string, parent: string | undefined, labels: Record<string, string>): Promise<Mount[]> {
    this.live();
    checkKey('snapshot key', key);
    if (parent !== undefined) checkKey('parent key', parent);
    const rec = await this.meta.withLock(async () => {
      const existing = await this.meta.get(key);
      if (existing) throw new SnapshotExistsError(key, existing.kind);
      let parentRec: SnapshotRecord | undefined;
      if (parent !== undefined) {
        parentRec = await this.meta.get(parent);
        if (!parentRec) throw new SnapshotNotFoundError(parent);
        if (parentRec.kind !== 'committed') throw new SnapshotStateError(parent, 'a committed parent', `a ${parentRec.kind} snapshot`);
      }
      const id = await this.meta.nextId();
      const base = join(this.root, 'snapshots', id);
      await rm(base, { recursive: true, force: true });
      // made under a random name, then renamed: ext4 places a directory below a `+T` one
      // by a hash of its name (spreadSnapshots), and ids repeat in a store reset to an
      // earlier state, which would put the new tree where the last one was just deleted
      const fresh = join(this.root, 'snapshots', `.new-${randomBytes(8).toString('hex')}`);
      await mkdir(fresh, { mode: 0o700 });
      await rename(fresh, base);
      if (this.backend === 'copy' && parentRec) {
        await run(['cp', '-a', '--reflink=auto', '--', this.fsDir(parentRec.id), this.fsDir(id)]);
      } else {
        await mkdir(this.fsDir(id), { mode: 0o755 });
      }
      if (this.backend === 'overlay') await mkdir(this.workDir(id), { mode: 0o700 });
      const r: SnapshotRecord = { key, kind, created: new Date().toISOString(), labels: { ...labels }, id, owner: process.pid };
      if (parent !== undefined) r.parent = parent;
      await this.meta.put(r);
      return r;
    });
    return this.mountsOf(rec);
  }

  prepare(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]> {
    return this.create('active', key, parent, opts?.labels ?? {});
  }

  view(key: string, parent?: string): Promise<Mount[]> {
    return this.create('view', key, parent, {});
  }

  private async mountsOf(rec: SnapshotRecord): Promise<Mount[]> {
    const ro = rec.kind !== 'active';
    if (this.backend === 'copy') {
      return [{ type: 'bind', source: this.fsDir(rec.id), options: ['rbind', ro ? 'ro' : 'rw'] }];
    }
    const parents = await this.ancestors(rec);
    if (parents.length === 0) {
      return [{ type: 'bind', source: this.fsDir(rec.id), options: ['rbind', ro ? 'ro' : 'rw'] }];
    }
    if (ro && parents.length === 1) {
      return [{ type: 'bind', source: this.fsDir(parents[0]!.id), options: ['rbind', 'ro'] }];
    }
    const lower = `lowerdir=${parents.map((p) => this.fsDir(p.id)).join(':')}`;
    if (ro) return [{ type: 'overlay', source: 'overlay', options: [lower, ...this.overlayOptions] }];
    return [
      {
        type: 'overlay',
        source: 'overlay',
        options: [`workdir=${this.workDir(rec.id)}`, `upperdir=${this.fsDir(rec.id)}`, lower, ...this.overlayOptions],
      },
    ];
  }

  async mounts(key: string): Promise<Mount[]> {
    this.live();
    const rec = await this.record(key);
    if (rec.kind === 'committed') throw new SnapshotStateError(key, 'an active or view snapshot', 'a committed snapshot');
    return this.mountsOf(rec);
  }

  async commit(name: string, key: string, opts?: { labels?: Record<string, string> }): Promise<void> {
    this.live();
    checkKey('snapshot name', name);
    checkKey('snapshot key', key);
    // The committed record is written and fsync'd before the lock (the fsync is most of a
    // commit's cost; parallel stages would queue behind it), published under the lock,
    // and its directory entry made durable after it (MetaStore.stage).
    const rec = await this.record(key);
    if (rec.kind !== 'active') throw new SnapshotStateError(key, 'an active snapshot', `a ${rec.kind} snapshot`);
    const c: SnapshotRecord = { key: name, kind: 'committed', created: new Date().toISOString(), labels: { ...rec.labels, ...(opts?.labels ?? {}) }, id: rec.id };
    if (rec.parent !== undefined) c.parent = rec.parent;
    const staged = await this.meta.stage(c);
    let published = false;
    try {
      await this.meta.withLock(async () => {
        const now = await this.meta.get(key);
        if (!now) throw new SnapshotNotFoundError(key);
        if (now.kind !== 'active' || now.id !== rec.id) throw new SnapshotStateError(key, 'an active snapshot', `a ${now.kind} snapshot`);
        const existing = await this.meta.get(name);
        if (existing) throw new SnapshotExistsError(name, existing.kind);
        // Order matters for crash safety: the committed record first; recovery drops an
        // active record whose directory is already owned by a committed one.
        await staged.publish();
        published = true;
        crashPoint('snapshot-commit');
        // not durable: should the removal be lost, recovery drops an active record whose id a committed one owns
        await this.meta.del(key, false);
      });
    } finally {
      if (!published) await staged.discard();
    }
    await staged.settle();
    if (this.backend === 'overlay') await rm(this.workDir(rec.id), { recursive: true, force: true });
  }

  async setLabels(key: string, labels: Record<string, string>): Promise<void> {
    this.live();
    await this.meta.withLock(async () => {
      const rec = await this.record(key);
      if (rec.kind !== 'committed') throw new SnapshotStateError(key, 'a committed snapshot', `a ${rec.kind} snapshot`);
      await this.meta.put({ ...rec, labels: { ...labels } });
    });
  }

  async stat(key: string): Promise<SnapshotInfo> {
    this.live();
    return info(await this.record(key));
  }

  async usage(key: string): Promise<Usage> {
    this.live();
    const rec = await this.record(key);
    const seen = new Set<bigint>();
    let size = 0;
    let inodes = 0;
    // byte paths: a name that is not UTF-8 would not survive a round trip through a string
    const slash = Buffer.from('/');
    const visit = async (p: Buffer): Promise<void> => {
      const st = await lstat(p, { bigint: true });
      if (!seen.has(st.ino)) {
        seen.add(st.ino);
        inodes++;
        size += Number(st.blocks) * 512;
      }
      if (st.isDirectory()) for (const n of await readdir(p, { encoding: 'buffer' })) await visit(Buffer.concat([p, slash, n]));
    };
    await visit(Buffer.from(this.fsDir(rec.id)));
    return { size, inodes };
  }

  async remove(key: string): Promise<void> {
    this.live();
    const rec = await this.meta.withLock(async () => {
      const r = await this.meta.get(key);
      if (!r) throw new SnapshotNotFoundError(key);
      if (r.kind === 'committed') {
        const children = (await this.meta.all()).filter((c) => c.parent === key);
        if (children.length > 0) throw new SnapshotStateError(key, 'a snapshot without children', `${children.length} child snapshot(s)`);
      }
      // only a committed record's removal must be durable (its directory goes next)
      await this.meta.del(key, r.kind === 'committed');
      return r;
    });
    await rm(join(this.root, 'snapshots', rec.id), { recursive: true, force: true });
  }

  async *walk(): AsyncIterable<SnapshotInfo> {
    this.live();
    for (const r of await this.meta.all()) yield info(r);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /**
   * Startup recovery: unmount and remove mount points of dead processes under `mnt/`,
   * finish interrupted commits, drop active/view snapshots whose owner process is dead,
   * delete directories no record owns.
   */
  async recover(): Promise<void> {
    await this.meta.withLock(async () => {
      const mnt = join(this.root, 'mnt');
      for (const name of await readdir(mnt).catch(() => [] as string[])) {
        const pid = Number(/^(\d+)-/.exec(name)?.[1]);
        if (!Number.isSafeInteger(pid) || pid === process.pid || pidAlive(pid)) continue;
        await unmountAll(join(mnt, name));
        await rm(join(mnt, name), { recursive: true, force: true });
      }
      await this.meta.removeDeadTemps();
      await this.meta.dropUnreadable();
      let all = await this.meta.all();
      const committedIds = new Set(all.filter((r) => r.kind === 'committed').map((r) => r.id));
      for (const r of all) if (r.kind !== 'committed' && committedIds.has(r.id)) await this.meta.del(r.key);
      for (const r of all) {
        if (r.kind === 'committed' || committedIds.has(r.id) || r.owner === undefined || r.owner === process.pid || pidAlive(r.owner)) continue;
        await this.meta.del(r.key);
      }
      all = await this.meta.all();
      const owned = new Set(all.map((r) => r.id));
      const dir = join(this.root, 'snapshots');
      for (const id of await readdir(dir)) {
        if (!owned.has(id)) await rm(join(dir, id), { recursive: true, force: true });
      }
    });
  }
}

/** Internal accessor for the differ/applier: the snapshot's own directory and its ancestors' directories. */
export interface SnapshotLayout {
  backend: 'overlay' | 'copy';
  /** The snapshot's own files (overlay upperdir, or the full tree for copy). */
  dir: string;
  /** Parent chain's directories, nearest first (overlay lowerdirs; for copy only the parent's full tree matters). */
  parentDirs: string[];
  kind: SnapshotInfo['kind'];
}

/** Resolves the on-disk layout of a snapshot created by openSnapshotter. */
export async function snapshotLayout(s: Snapshotter, key: string): Promise<SnapshotLayout> {
  if (!(s instanceof FsSnapshotter)) {
    throw new SnapshotArgumentError('snapshotter', 'a snapshotter returned by openSnapshotter', s.constructor.name);
  }
  const rec = await s.record(key);
  const parents = await s.ancestors(rec);
  return { backend: s.backend, dir: s.fsDir(rec.id), parentDirs: parents.map((p) => s.fsDir(p.id)), kind: rec.kind };
}

/**
 * Opens (creating if needed) a snapshotter rooted at `root`. The root is made 0700:
 * unprivileged host users must never reach setuid files inside snapshots.
 */
export async function openSnapshotter(root: string, opts: OpenSnapshotterOptions = {}): Promise<Snapshotter> {
  const backend = opts.backend ?? 'auto';
  if (!['auto', 'overlay', 'copy'].includes(backend)) throw new SnapshotArgumentError('backend', "'auto', 'overlay' or 'copy'", JSON.stringify(backend));
  await mkdirDurable(join(root, 'snapshots'), 0o700);
  spreadSnapshots(join(root, 'snapshots'));
  const meta = new MetaStore(root);
  await meta.init();
  let chosen: 'overlay' | 'copy' = 'copy';
  let extra: string[] = [];
  if (backend !== 'copy') {
    const probe = await cachedProbe(root);
    if (probe) {
      chosen = 'overlay';
      extra = probe;
    } else if (backend === 'overlay') {
      throw new SnapshotStateError(root, 'a filesystem where an overlay mount works', 'overlay mount failing (use backend "copy")');
    }
  }
  const s = new FsSnapshotter(chosen, root, meta, extra);
  await s.recover();
  return s;
}

/**
 * Asks ext2/3/4 to place every snapshot directory like a top-level directory (Orlov: in a
 * block group with few directories), not next to the others. Without it all snapshots
 * share the block groups near `snapshots/`, and on ext4 without a journal (the machine we
 * measure on) the inode allocator skips each free inode of a recently deleted file one by
 * one: after a 50,000-file snapshot was removed, extracting the same tar into a new
 * snapshot-like directory took 36.8 and 43.1 s (system time), into one below a `+T`
 * directory 5.3 and 2.0 s. A hint only: skipped without the addon or where the
 * filesystem has no such flag; a failure never stops the store from opening.
 */
function spreadSnapshots(dir: string): void {
  try {
    native()?.topDir(dir);
  } catch {
    // a placement hint: the store works the same without it
  }
}
