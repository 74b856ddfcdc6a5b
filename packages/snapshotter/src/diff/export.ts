/** Snapshot → deterministic layer tar → content store. */
import type { Readable } from 'node:stream';
import type { ContentStore, Digest, SnapshotDiffRecipe, VirtualBlob, VirtualBlobSource } from '../content/index.js';
import type { Compression, LayerDescriptor } from '../layer/index.js';
import { MediaTypes, writeLayer } from '../layer/index.js';
import { snapshotLayout } from '../snapshots/snapshotter.js';
import type { Snapshotter } from '../snapshots/types.js';
import { hashEntries, packEntries } from '../tar/writer.js';
import type { TarEntry } from '../tar/types.js';
import { DEFAULT_MOUNT_STUBS, diffEntries } from './diff-entries.js';
import { openTarReuse, ReuseSourceError, type LayerReuse } from './reuse.js';

/** Options of exportLayer / diffTarStream. */
export interface ExportOptions {
  compression?: Compression;
  level?: number;
  /** Clamp entry mtimes to min(mtime, sourceDateEpoch) (seconds since the epoch). */
  sourceDateEpoch?: number;
  /** Mount-point stubs to drop when empty and new (default DEFAULT_MOUNT_STUBS). */
  mountStubs?: readonly string[];
  signal?: AbortSignal;
  /**
   * exportLayer only: take the entries of these hardlinked files from an earlier layer's
   * uncompressed blob instead of reading the files (see diff/reuse.ts). The layer is the
   * same byte for byte; without a usable blob every file is read.
   */
  reuse?: LayerReuse;
  /**
   * Uncompressed layers whose tar is at least this big (estimated from the entries) are
   * only hashed, not written: the result has `stored: false`, and the caller makes the
   * blob virtual ({@link snapshotDiffRecipe}, `ContentStore.addVirtual`) once the
   * snapshot is committed and durable. Default: always write.
   */
  virtualMinSize?: number;
  /** Called once, before the tar pass, when the export decided not to write the blob. */
  onVirtual?: () => void;
}

async function entriesOf(snapshotter: Snapshotter, key: string, opts: ExportOptions, inodes?: Map<string, bigint>): Promise<TarEntry[]> {
  const layout = await snapshotLayout(snapshotter, key);
  const o: Parameters<typeof diffEntries>[1] = {};
  if (opts.sourceDateEpoch !== undefined) o.sourceDateEpoch = opts.sourceDateEpoch;
  if (opts.mountStubs !== undefined) o.mountStubs = opts.mountStubs;
  if (opts.signal !== undefined) o.signal = opts.signal;
  if (inodes !== undefined) o.inodes = inodes;
  return diffEntries(layout, o);
}

/** The uncompressed, deterministic tar of a snapshot's diff against its parent. */
export function diffTarStream(snapshotter: Snapshotter, key: string, opts: Omit<ExportOptions, 'compression' | 'level' | 'reuse' | 'virtualMinSize' | 'onVirtual'> = {}): Readable {
  async function* gen(): AsyncGenerator<TarEntry> {
    yield* await entriesOf(snapshotter, key, opts);
  }
  return packEntries(gen(), opts.signal ? { signal: opts.signal } : {});
}

/** Size of the tar of `entries` without PAX records (enough to compare with a threshold). */
function estimatedTarSize(entries: readonly TarEntry[]): number {
  let n = 1024;
  for (const e of entries) n += 512 + Math.ceil(e.size / 512) * 512;
  return n;
}

/**
 * Exports a snapshot's diff as a layer blob in `store`. `empty` is true when the
 * snapshot changed nothing (the blob is then an empty tar); `reusedEntries` counts the
 * entries copied from `opts.reuse`'s blob; `stored` is false when the blob was only
 * hashed (see {@link ExportOptions.virtualMinSize}).
 */
export async function exportLayer(snapshotter: Snapshotter, key: string, store: ContentStore, opts: ExportOptions = {}): Promise<LayerDescriptor & { empty: boolean; reusedEntries: number; stored: boolean }> {
  const inodes = opts.reuse !== undefined ? new Map<string, bigint>() : undefined;
  const entries = await entriesOf(snapshotter, key, opts, inodes);
  if (opts.compression === 'uncompressed' && opts.virtualMinSize !== undefined && entries.length > 0 && estimatedTarSize(entries) >= opts.virtualMinSize) {
    opts.onVirtual?.();
    const { digest: hex, size } = await hashEntries(entries, opts.signal ? { signal: opts.signal } : {});
    const digest: Digest = `sha256:${hex}`;
    return { mediaType: MediaTypes.layer, digest, size, diffId: digest, uncompressedSize: size, empty: false, reusedEntries: 0, stored: false };
  }
  const w: Parameters<typeof writeLayer>[2] = {};
  if (opts.compression !== undefined) w.compression = opts.compression;
  if (opts.level !== undefined) w.level = opts.level;
  if (opts.signal !== undefined) w.signal = opts.signal;
  const signal = opts.signal ? { signal: opts.signal } : {};
  if (opts.reuse !== undefined && inodes !== undefined) {
    const allowed = new Set<string>();
    for (const [path, ino] of opts.reuse.inodes) if (inodes.get(path) === ino) allowed.add(path);
    const src = allowed.size > 0 ? openTarReuse(store.blobPath(opts.reuse.blob), opts.reuse.blob, allowed) : undefined;
    if (src !== undefined) {
      try {
        const desc = await writeLayer(packEntries(entries, { ...signal, reuse: src.reuse }), store, w);
        return { ...desc, empty: entries.length === 0, reusedEntries: src.reuse.reused, stored: true };
      } catch (err) {
        // a blob that does not hash to its digest: nothing was committed, read the files instead
        if (!(err instanceof ReuseSourceError)) throw err;
      } finally {
        src.close();
      }
    }
  }
  const desc = await writeLayer(packEntries(entries, signal), store, w);
  return { ...desc, empty: entries.length === 0, reusedEntries: 0, stored: true };
}

/** The recipe that regenerates the layer tar of committed snapshot `key` exported with `opts`. */
export function snapshotDiffRecipe(key: string, opts: Pick<ExportOptions, 'sourceDateEpoch' | 'mountStubs'>): SnapshotDiffRecipe {
  const r: SnapshotDiffRecipe = { kind: 'snapshot-diff', snapshot: key, mountStubs: [...(opts.mountStubs ?? DEFAULT_MOUNT_STUBS)] };
  if (opts.sourceDateEpoch !== undefined) r.sourceDateEpoch = opts.sourceDateEpoch;
  return r;
}

/**
 * The {@link VirtualBlobSource} for snapshot-diff recipes: available while the snapshot
 * is committed in `snapshotter`; the bytes are {@link diffTarStream} of it (the tar
 * depends only on paths, types, modes, owners, mtimes in seconds, sizes, contents,
 * xattrs and which paths share an inode — not on atime, ctime or directory order).
 */
export function snapshotDiffSource(snapshotter: Snapshotter): VirtualBlobSource {
  return {
    async available(blob: VirtualBlob): Promise<boolean> {
      try {
        return (await snapshotter.stat(blob.recipe.snapshot)).kind === 'committed';
      } catch (err) {
        if ((err as { code?: string }).code === 'NOT_FOUND') return false;
        throw err;
      }
    },
    open(blob: VirtualBlob): Readable {
      const r = blob.recipe;
      return diffTarStream(snapshotter, r.snapshot, { mountStubs: r.mountStubs, ...(r.sourceDateEpoch !== undefined ? { sourceDateEpoch: r.sourceDateEpoch } : {}) });
    },
  };
}
