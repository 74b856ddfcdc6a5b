/** Snapshot → deterministic layer tar → content store. */
import type { Readable } from 'node:stream';
import type { ContentStore } from '../content/index.js';
import type { Compression, LayerDescriptor } from '../layer/index.js';
import { writeLayer } from '../layer/index.js';
import { snapshotLayout } from '../snapshots/snapshotter.js';
import type { Snapshotter } from '../snapshots/types.js';
import { packEntries } from '../tar/writer.js';
import type { TarEntry } from '../tar/types.js';
import { diffEntries } from './diff-entries.js';
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
export function diffTarStream(snapshotter: Snapshotter, key: string, opts: Omit<ExportOptions, 'compression' | 'level' | 'reuse'> = {}): Readable {
  async function* gen(): AsyncGenerator<TarEntry> {
    yield* await entriesOf(snapshotter, key, opts);
  }
  return packEntries(gen(), opts.signal ? { signal: opts.signal } : {});
}

/**
 * Exports a snapshot's diff as a layer blob in `store`. `empty` is true when the
 * snapshot changed nothing (the blob is then an empty tar); `reusedEntries` counts the
 * entries copied from `opts.reuse`'s blob.
 */
export async function exportLayer(snapshotter: Snapshotter, key: string, store: ContentStore, opts: ExportOptions = {}): Promise<LayerDescriptor & { empty: boolean; reusedEntries: number }> {
  const inodes = opts.reuse !== undefined ? new Map<string, bigint>() : undefined;
  const entries = await entriesOf(snapshotter, key, opts, inodes);
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
        return { ...desc, empty: entries.length === 0, reusedEntries: src.reuse.reused };
      } catch (err) {
        // a blob that does not hash to its digest: nothing was committed, read the files instead
        if (!(err instanceof ReuseSourceError)) throw err;
      } finally {
        src.close();
      }
    }
  }
  const desc = await writeLayer(packEntries(entries, signal), store, w);
  return { ...desc, empty: entries.length === 0, reusedEntries: 0 };
}
