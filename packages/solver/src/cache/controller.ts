import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { chainId, type Digest, type SnapshotInfo, type StoredImage } from '@tsbuild/snapshotter';
import { CacheRecordNotFoundError, InvalidPruneOptionError } from '../errors.js';
import { isAlive, type BuildStore } from '../store.js';
import type { CacheRecord, FileDigest, KeyComponents, RecordedLayer } from './cache-db.js';
import { keyOf } from './keys.js';

/** One cache record as `tsbuild cache ls` shows it (after `buildx du --verbose`). */
export interface CacheUsageRecord {
  /** the record's cache key */
  id: string;
  /** the instruction that produced it */
  description: string;
  /** the key of the step it builds on, when that step is itself a cache record */
  parent?: string;
  /** the layer it produced (absent when the step changed no file) */
  layer?: RecordedLayer;
  /** the committed snapshot (chainID) holding its filesystem, when unpacked */
  snapshot?: string;
  /** bytes on disk of its own layer blob and snapshot (allocated blocks) */
  size: number;
  created: number;
  lastUsed: number;
  usageCount: number;
  /** its blob or snapshot is also used by an image or another record */
  shared: boolean;
  /** held by a running build */
  inUse: boolean;
  /** what a plain `cache prune` would free: not shared and not in use */
  reclaimable: boolean;
}

/** Totals over the store, for `tsbuild cache du`. */
export interface CacheUsage {
  records: CacheUsageRecord[];
  /** bytes of the blobs and snapshots the records use, each counted once */
  total: number;
  /** bytes of reclaimable records */
  reclaimable: number;
  /** bytes of records' data that images use too */
  shared: number;
  /** bytes held by running builds */
  inUse: number;
  /** blobs and snapshots that no image, record or running build references (freed by any prune) */
  unreferenced: { blobs: number; snapshots: number; size: number };
  /** every blob and every committed snapshot in the store */
  store: { blobs: number; blobBytes: number; snapshots: number; snapshotBytes: number };
}

/** A record with everything `tsbuild cache inspect` shows. */
export interface CacheRecordDetail extends CacheUsageRecord {
  /** where in which Dockerfile the step is (`file#stage#instruction`) */
  step: string;
  /** what its key was computed from */
  components: KeyComponents;
  /** the context files it read, with their digests */
  files: FileDigest[];
  /** the parent key is a record still in the cache */
  parentInCache: boolean;
  /** records that build on this one */
  children: string[];
  /** names of images whose layers include its layer */
  images: string[];
}

export interface PruneOptions {
  /** also remove records whose data images share, and unpacked image snapshots */
  all?: boolean;
  /** only records not used for this many milliseconds */
  olderThanMs?: number;
  /** stop once the cache is at most this many bytes (least recently used go first) */
  keepStorage?: number;
  /** report what would be removed without removing anything */
  dryRun?: boolean;
}

export interface PruneResult {
  dryRun: boolean;
  records: CacheUsageRecord[];
  blobs: { digest: string; size: number }[];
  snapshots: { key: string; size: number }[];
  /**
   * Bytes freed on disk: the allocated blocks of the removed blobs and snapshot
   * directories (with their metadata files), measured before removal. For a dry run,
   * the estimate.
   */
  reclaimed: number;
}

interface ImageFacts {
  name: string;
  image: StoredImage;
  chain?: string;
  blobs: Set<string>;
}

interface Analysis {
  records: CacheRecord[];
  usage: Map<string, CacheUsageRecord>;
  images: ImageFacts[];
  chains: Map<string, string | null | undefined>;
  snapshots: Map<string, SnapshotInfo>;
  leased: Set<string>;
  oldestLease?: number;
  blobSizes: Map<string, number>;
  /** blobs stored as virtual records: digest → the snapshot that regenerates them */
  virtual: Map<string, string>;
}

const SCRATCH_KEY = keyOf({ from: 'scratch' });

/**
 * The cache controller (BuildKit's `CacheController`): usage, inspection and pruning
 * of the build cache, with garbage collection of blobs and snapshots that no image,
 * no remaining record and no running build references.
 */
export class CacheController {
  private readonly store: BuildStore;

  constructor(store: BuildStore) {
    this.store = store;
  }

  /** Every record with its size and sharing, and the totals. Records sorted by last use, newest first. */
  async usage(): Promise<CacheUsage> {
    const a = await this.analyse();
    const records = [...a.usage.values()].sort((x, y) => y.lastUsed - x.lastUsed || y.created - x.created);
    const counted = new Set<string>();
    let total = 0;
    let shared = 0;
    let inUse = 0;
    let reclaimable = 0;
    for (const r of records) {
      const parts = await this.partsOf(r, a);
      for (const [id, size] of parts) {
        if (counted.has(id)) continue;
        counted.add(id);
        total += size;
        if (r.shared) shared += size;
        if (r.inUse) inUse += size;
        if (r.reclaimable) reclaimable += size;
      }
    }
    const referencedBlobs = await this.referencedBlobs(a, a.records);
    const keptSnapshots = this.snapshotRoots(a, a.records, false, referencedBlobs);
    let unrefBlobs = 0;
    let unrefSnaps = 0;
    let unrefSize = 0;
    let blobBytes = 0;
    for (const [d, size] of a.blobSizes) {
      blobBytes += size;
      if (!referencedBlobs.has(d)) {
        unrefBlobs++;
        unrefSize += size;
      }
    }
    let snapshotBytes = 0;
    let snapshots = 0;
    for (const s of a.snapshots.values()) {
      if (s.kind !== 'committed') continue;
      snapshots++;
      const size = (await this.store.snapshots.usage(s.key)).size;
      snapshotBytes += size;
      if (!keptSnapshots.has(s.key)) {
        unrefSnaps++;
        unrefSize += size;
      }
    }
    return {
      records,
      total,
      reclaimable,
      shared,
      inUse,
      unreferenced: { blobs: unrefBlobs, snapshots: unrefSnaps, size: unrefSize },
      store: { blobs: a.blobSizes.size, blobBytes, snapshots, snapshotBytes },
    };
  }

  /** One record by its key or a unique prefix of it (`sha256:` optional, at least 4 hex digits). */
  async inspect(id: string): Promise<CacheRecordDetail> {
    const a = await this.analyse();
    const rec = findRecord(a.records, id);
    const u = a.usage.get(rec.key)!;
    const images = a.images.filter((i) => rec.layer !== undefined && i.blobs.has(rec.layer.digest)).map((i) => i.name);
    return {
      ...u,
      step: rec.stepRef,
      components: rec.components,
      files: this.store.db.files(rec.key),
      parentInCache: a.usage.has(rec.components.parent),
      children: a.records.filter((r) => r.components.parent === rec.key).map((r) => r.key),
      images,
    };
  }

  /**
   * Removes records (never one a running build holds, nor one created after a running
   * build started), then the snapshots and blobs nothing references any more.
   */
  async prune(opts: PruneOptions = {}): Promise<PruneResult> {
    if (opts.olderThanMs !== undefined && (!Number.isFinite(opts.olderThanMs) || opts.olderThanMs < 0)) throw new InvalidPruneOptionError('olderThanMs', 'a duration of zero or more', String(opts.olderThanMs));
    if (opts.keepStorage !== undefined && (!Number.isFinite(opts.keepStorage) || opts.keepStorage < 0)) throw new InvalidPruneOptionError('keepStorage', 'a size of zero bytes or more', String(opts.keepStorage));
    const dryRun = opts.dryRun === true;
    const a = await this.analyse();
    const now = Date.now();
    // the cache size that --keep-storage compares with
    let remaining = 0;
    const counted = new Set<string>();
    const own = new Map<string, number>();
    for (const r of a.usage.values()) {
      let mine = 0;
      for (const [id, size] of await this.partsOf(r, a)) {
        if (!counted.has(id)) {
          counted.add(id);
          remaining += size;
        }
        if (!r.shared) mine += size;
      }
      own.set(r.id, mine);
    }
    const pick = (candidates: CacheRecord[]): CacheRecord[] => {
      let list = candidates.filter((c) => a.usage.has(c.key));
      if (!opts.all) list = list.filter((c) => !a.usage.get(c.key)!.shared);
      if (opts.olderThanMs !== undefined) list = list.filter((c) => now - c.lastUsed >= opts.olderThanMs!);
      if (opts.keepStorage === undefined) return list;
      list.sort((x, y) => x.lastUsed - y.lastUsed || x.created - y.created);
      const out: CacheRecord[] = [];
      for (const c of list) {
        if (remaining <= opts.keepStorage) break;
        out.push(c);
        remaining -= own.get(c.key) ?? 0;
      }
      return out;
    };
    const removed = this.store.db.deleteUnleased(pick, isAlive, dryRun);
    const removedKeys = new Set(removed.map((r) => r.key));
    const left = a.records.filter((r) => !removedKeys.has(r.key));
    // leases may have grown while records were chosen: read them again for the GC
    const live = this.store.db.liveLeases(isAlive);
    for (const r of live.refs) a.leased.add(r);
    if (live.oldest !== undefined) a.oldestLease = Math.min(a.oldestLease ?? live.oldest, live.oldest);

    // a snapshot that regenerates a referenced virtual blob stays (even with --all)
    const keep = this.snapshotRoots(a, left, opts.all === true, await this.referencedBlobs(a, left));
    const doomed = [...a.snapshots.values()].filter((s) => s.kind === 'committed' && !keep.has(s.key));
    // children before parents
    const depth = (s: SnapshotInfo): number => {
      let d = 0;
      for (let p = s.parent; p !== undefined; p = a.snapshots.get(p)?.parent) d++;
      return d;
    };
    doomed.sort((x, y) => depth(y) - depth(x));
    const snapshots: { key: string; size: number }[] = [];
    for (const s of doomed) snapshots.push({ key: s.key, size: (await this.store.snapshots.usage(s.key)).size });
    let reclaimed = 0;
    if (!dryRun && doomed.length > 0) {
      const before = await this.snapshotOverhead();
      const kept = (key: string): void => {
        const i = snapshots.findIndex((x) => x.key === key);
        if (i >= 0) snapshots.splice(i, 1);
      };
      for (const s of doomed) {
        // a build may have held it since the leases were read: read them again right before
        // (what a build holds after this point, it holds before its own lookup: see build.ts onChain)
        if (this.heldNow(s.key, Date.parse(s.created))) {
          kept(s.key);
          continue;
        }
        try {
          await this.store.snapshots.remove(s.key);
        } catch (err) {
          // a concurrent build prepared a child on it since the listing: it is in use, keep it
          if ((err as { code?: string }).code !== 'FAILED_PRECONDITION') throw err;
          kept(s.key);
        }
      }
      const after = await this.snapshotOverhead();
      for (const [k, size] of before) if (!after.has(k)) reclaimed += size;
    }
    for (const s of snapshots) reclaimed += s.size;

    const referenced = await this.referencedBlobs(a, left);
    const cutoff = a.oldestLease !== undefined ? a.oldestLease - 2000 : undefined;
    const blobs: { digest: string; size: number }[] = [];
    for (const [d, size] of a.blobSizes) {
      if (referenced.has(d)) continue;
      const path = a.virtual.has(d) ? this.store.content.virtualPath(d as Digest) : this.store.content.blobPath(d as Digest);
      const st = cutoff !== undefined || !dryRun ? await stat(path).catch(() => undefined) : undefined;
      if (cutoff !== undefined && (!st || st.mtimeMs >= cutoff)) continue;
      if (!dryRun) {
        // as for snapshots: a build may have held it since the leases were read
        if (st && this.heldNow(d, st.mtimeMs)) continue;
        try {
          await this.store.content.delete(d as Digest);
        } catch (err) {
          if ((err as { code?: string }).code === 'NOT_FOUND') continue; // removed by another prune meanwhile
          throw err;
        }
      }
      blobs.push({ digest: d, size });
      reclaimed += size;
    }
    const records = removed.map((r) => a.usage.get(r.key)!);
    return { dryRun, records, blobs, snapshots, reclaimed };
  }

  /**
   * Whether a live lease holds `ref` now, or started early enough to protect something
   * created at `createdMs` (the same rules as the listing's, read again from the index).
   */
  private heldNow(ref: string, createdMs: number): boolean {
    const live = this.store.db.liveLeases(isAlive);
    return live.refs.has(ref) || (live.oldest !== undefined && createdMs >= live.oldest - 2000);
  }

  // ---------------------------------------------------------------------------

  private async analyse(): Promise<Analysis> {
    const records = this.store.db.all();
    const live = this.store.db.liveLeases(isAlive);
    const images: ImageFacts[] = [];
    for (const e of await this.store.images.list()) {
      const image = await this.store.images.resolve(e.name);
      if (!image) continue;
      const blobs = new Set<string>([image.manifestDigest, image.configDigest, ...image.manifest.layers.map((l) => l.digest)]);
      const chain = chainId(image.config.rootfs.diff_ids);
      images.push({ name: e.familiar, image, blobs, ...(chain !== undefined ? { chain } : {}) });
    }
    const snapshots = new Map<string, SnapshotInfo>();
    for await (const s of this.store.snapshots.walk()) snapshots.set(s.key, s);
    const blobSizes = new Map<string, number>();
    const virtual = new Map<string, string>();
    for await (const b of this.store.content.walk()) {
      if (b.virtual !== undefined) {
        // no bytes of its own: the snapshot that regenerates it is counted as a snapshot
        virtual.set(b.digest, b.virtual.recipe.snapshot);
        blobSizes.set(b.digest, 0);
        continue;
      }
      const st = await stat(this.store.content.blobPath(b.digest)).catch(() => undefined);
      if (st) blobSizes.set(b.digest, st.blocks * 512);
    }
    const chains = this.chains(records, images);
    const a: Analysis = { records, usage: new Map(), images, chains, snapshots, leased: live.refs, blobSizes, virtual, ...(live.oldest !== undefined ? { oldestLease: live.oldest } : {}) };

    const blobUsers = new Map<string, number>();
    for (const r of records) if (r.layer) blobUsers.set(r.layer.digest, (blobUsers.get(r.layer.digest) ?? 0) + 1);
    const snapUsers = new Map<string, number>();
    for (const r of records) {
      const c = chains.get(r.key);
      if (r.layer && c) snapUsers.set(c, (snapUsers.get(c) ?? 0) + 1);
    }
    const imageBlobs = new Set<string>();
    for (const i of images) for (const b of i.blobs) imageBlobs.add(b);
    const imageChains = new Set<string>();
    for (const i of images) {
      const ids = i.image.config.rootfs.diff_ids;
      for (let n = 1; n <= ids.length; n++) imageChains.add(chainId(ids.slice(0, n))!);
    }
    const keyRecords = new Set<string>(records.map((r) => r.key));
    for (const r of records) {
      const chain = r.layer ? chains.get(r.key) : undefined;
      const snap = chain && snapshots.get(chain)?.kind === 'committed' ? chain : undefined;
      let size = 0;
      if (r.layer) size += blobSizes.get(r.layer.digest) ?? 0;
      if (snap) size += (await this.store.snapshots.usage(snap)).size;
      const shared =
        r.layer !== undefined &&
        (imageBlobs.has(r.layer.digest) || (blobUsers.get(r.layer.digest) ?? 0) > 1 || (snap !== undefined && (imageChains.has(snap) || (snapUsers.get(snap) ?? 0) > 1)));
      const inUse = live.refs.has(r.key) || (live.oldest !== undefined && r.created >= live.oldest);
      const u: CacheUsageRecord = {
        id: r.key,
        description: r.description,
        ...(keyRecords.has(r.components.parent) ? { parent: r.components.parent } : {}),
        ...(r.layer ? { layer: r.layer } : {}),
        ...(snap ? { snapshot: snap } : {}),
        size,
        created: r.created,
        lastUsed: r.lastUsed,
        usageCount: r.usageCount,
        shared,
        inUse,
        reclaimable: !shared && !inUse,
      };
      a.usage.set(r.key, u);
    }
    return a;
  }

  /**
   * The snapshot (chainID) of each record: its parent's chain plus its layer. A
   * stage's first step builds on `keyOf({from: manifestDigest})` of its base image, or
   * on scratch; undefined when the base image is no longer in the store.
   */
  private chains(records: readonly CacheRecord[], images: readonly ImageFacts[]): Map<string, string | null | undefined> {
    const bases = new Map<string, string | null>([[SCRATCH_KEY, null]]);
    for (const i of images) bases.set(keyOf({ from: i.image.manifestDigest }), i.chain ?? null);
    const byKey = new Map<string, CacheRecord>(records.map((r) => [r.key, r]));
    const out = new Map<string, string | null | undefined>();
    const resolve = (key: string, depth: number): string | null | undefined => {
      if (out.has(key)) return out.get(key);
      if (bases.has(key)) return bases.get(key);
      const r = byKey.get(key);
      if (!r || depth > 10_000) return undefined;
      const parent = resolve(r.components.parent, depth + 1);
      let c: string | null | undefined;
      if (parent === undefined) c = undefined;
      else if (!r.layer) c = parent;
      else c = parent === null ? r.layer.diffId : chainId([parent as Digest, r.layer.diffId])!;
      // chainId over [parent, diffId] hashes `parent + " " + diffId`, the same step as chainID's definition
      out.set(key, c);
      return c;
    };
    for (const r of records) resolve(r.key, 0);
    return out;
  }

  /** The (id, bytes) pieces of disk a record uses: its blob and its snapshot. */
  private async partsOf(r: CacheUsageRecord, a: Analysis): Promise<[string, number][]> {
    const out: [string, number][] = [];
    if (r.layer) out.push([r.layer.digest, a.blobSizes.get(r.layer.digest) ?? 0]);
    if (r.snapshot) out.push([`snapshot:${r.snapshot}`, (await this.store.snapshots.usage(r.snapshot)).size]);
    return out;
  }

  private async referencedBlobs(a: Analysis, records: readonly CacheRecord[]): Promise<Set<string>> {
    const out = new Set<string>(await this.store.images.referencedBlobs());
    for (const r of records) if (r.layer) out.add(r.layer.digest);
    for (const r of a.leased) out.add(r);
    return out;
  }

  /**
   * Committed snapshots to keep: used by records, held by builds, recent, images' (unless
   * `all`), those regenerating a virtual blob in `referenced`, and their ancestors.
   */
  private snapshotRoots(a: Analysis, records: readonly CacheRecord[], all: boolean, referenced: ReadonlySet<string>): Set<string> {
    const keep = new Set<string>();
    const add = (key: string | null | undefined): void => {
      for (let k = key ?? undefined; k !== undefined && !keep.has(k); k = a.snapshots.get(k)?.parent) keep.add(k);
    };
    const chains = this.chains(records, a.images);
    for (const r of records) if (r.layer) add(chains.get(r.key));
    if (!all) for (const i of a.images) add(i.chain);
    for (const [d, snap] of a.virtual) if (referenced.has(d)) add(snap);
    for (const s of a.snapshots.values()) {
      if (s.kind !== 'committed') add(s.parent);
      if (a.leased.has(s.key)) add(s.key);
      if (a.oldestLease !== undefined && Date.parse(s.created) >= a.oldestLease - 2000) add(s.key);
    }
    return keep;
  }

  /**
   * Allocated bytes of each snapshot directory outside its `fs` tree (the directory
   * itself, a leftover work dir) and of each metadata file, by path: compared before
   * and after removal to count what `usage()` does not.
   */
  private async snapshotOverhead(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const root = this.store.snapshots.root;
    for (const sub of ['snapshots', 'metadata']) {
      const dir = join(root, sub);
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        const p = join(dir, name);
        out.set(p, await allocatedExcept(p, 'fs'));
      }
    }
    return out;
  }
}

/** Allocated bytes of a tree, skipping the direct child named `skip`. */
async function allocatedExcept(path: string, skip: string): Promise<number> {
  const seen = new Set<bigint>();
  let total = 0;
  const visit = async (p: string, top: boolean): Promise<void> => {
    const st = await lstat(p, { bigint: true }).catch(() => undefined);
    if (!st) return;
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      total += Number(st.blocks) * 512;
    }
    if (!st.isDirectory()) return;
    for (const n of await readdir(p).catch(() => [] as string[])) {
      if (top && n === skip) continue;
      await visit(join(p, n), false);
    }
  };
  await visit(path, true);
  return total;
}

function findRecord(records: readonly CacheRecord[], id: string): CacheRecord {
  const hex = id.replace(/^sha256:/, '').toLowerCase();
  if (!/^[0-9a-f]{4,64}$/.test(hex)) throw new CacheRecordNotFoundError(id, 'a record id: 4 to 64 hex digits, optionally prefixed with sha256:');
  const found = records.filter((r) => r.key.slice(7).startsWith(hex));
  if (found.length === 0) throw new CacheRecordNotFoundError(id, 'the id of a record in the cache');
  if (found.length > 1) throw new CacheRecordNotFoundError(id, `a prefix matching one record, found ${found.length}`);
  return found[0];
}
