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

/** Options of exportLayer / diffTarStream. */
export interface ExportOptions {
  compression?: Compression;
  level?: number;
  /** Clamp entry mtimes to min(mtime, sourceDateEpoch) (seconds since the epoch). */
  sourceDateEpoch?: number;
  /** Mount-point stubs to drop when empty and new (default DEFAULT_MOUNT_STUBS). */
  mountStubs?: readonly string[];
  signal?: AbortSignal;
}

async function entriesOf(snapshotter: Snapshotter, key: string, opts: ExportOptions): Promise<TarEntry[]> {
  const layout = await snapshotLayout(snapshotter, key);
  const o: Parameters<typeof diffEntries>[1] = {};
  if (opts.sourceDateEpoch !== undefined) o.sourceDateEpoch = opts.sourceDateEpoch;
  if (opts.mountStubs !== undefined) o.mountStubs = opts.mountStubs;
  if (opts.signal !== undefined) o.signal = opts.signal;
  return diffEntries(layout, o);
}

/** The uncompressed, deterministic tar of a snapshot's diff against its parent. */
export function diffTarStream(snapshotter: Snapshotter, key: string, opts: Omit<ExportOptions, 'compression' | 'level'> = {}): Readable {
  async function* gen(): AsyncGenerator<TarEntry> {
    yield* await entriesOf(snapshotter, key, opts);
  }
  return packEntries(gen(), opts.signal ? { signal: opts.signal } : {});
}

/**
 * Exports a snapshot's diff as a layer blob in `store`. `empty` is true when the
 * snapshot changed nothing (the blob is then an empty tar).
 */
export async function exportLayer(snapshotter: Snapshotter, key: string, store: ContentStore, opts: ExportOptions = {}): Promise<LayerDescriptor & { empty: boolean }> {
  const entries = await entriesOf(snapshotter, key, opts);
  const tar = packEntries(entries, opts.signal ? { signal: opts.signal } : {});
  const w: Parameters<typeof writeLayer>[2] = {};
  if (opts.compression !== undefined) w.compression = opts.compression;
  if (opts.level !== undefined) w.level = opts.level;
  if (opts.signal !== undefined) w.signal = opts.signal;
  const desc = await writeLayer(tar, store, w);
  return { ...desc, empty: entries.length === 0 };
}
