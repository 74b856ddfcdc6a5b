/**
 * The named crash points (H-CRASH). `TSBUILD_CRASH_AT=<point>[@N]` makes a tsbuild
 * process SIGKILL itself at the N-th time it reaches the point (default the first).
 * The hook itself lives in @tsbuild/snapshotter (the lowest package) so every package
 * can call it.
 */
export { crashPoint } from '@tsbuild/snapshotter';

/** Every point a tsbuild process can be told to crash at, in the order a build meets them. */
export const CRASH_POINTS = [
  /** a store lock (snapshot metadata, index.json: a symlink naming its owner) was just created, nothing done under it yet */
  'lock-created',
  /** applying a base layer into a snapshot, before its diffID is verified (overlay mounted) */
  'unpack-layer',
  /** a RUN step is running (its first output chunk arrived; container and overlay live) */
  'run',
  /** a layer blob is being written to an ingest (after each chunk) */
  'layer-write',
  /** a blob is fsynced and verified, not yet renamed to its digest */
  'blob-commit',
  /** a blob was renamed into place, its directory not yet fsynced, no index row yet */
  'blob-committed',
  /** a big layer was hashed (not written) and the syncfs of its snapshot returned; nothing committed yet */
  'virtual-synced',
  /** a snapshot's committed record is written, its active record not yet removed */
  'snapshot-commit',
  /** a virtual blob's snapshot is committed (durable, unlabelled), its record not yet written */
  'virtual-record',
  /** a virtual blob's record was renamed into place, no cache row yet */
  'virtual-recorded',
  /** inside the SQLite transaction that saves a cache record (rolled back by the crash) */
  'cache-index-update',
  /** the SQLite transaction that saved a cache record committed (WAL, not yet checkpointed) */
  'cache-index-committed',
  /** index.json's replacement is written, not yet renamed over it */
  'image-index-update',
  /** a registry push uploaded a blob */
  'push-blob',
  /** a registry push uploaded every blob, not yet the manifest */
  'push-manifest',
] as const;

export type CrashPointName = (typeof CRASH_POINTS)[number];
