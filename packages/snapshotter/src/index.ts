export const packageName = '@tsbuild/snapshotter';
export * from './content/index.js';
export * from './layer/index.js';
export * from './image/index.js';

// Snapshots, diff, apply (src/snapshots, src/diff, src/tar, src/apply)
/** Snapshotter interface (containerd model), overlay/copy backends and mount helpers. */
export type { Mount, SnapshotInfo, Usage, Snapshotter } from './snapshots/types.js';
export { openSnapshotter, type OpenSnapshotterOptions } from './snapshots/snapshotter.js';
export { mountAll, unmountAll, withMount } from './snapshots/mount.js';
/** Differ: snapshot → deterministic tar → layer blob. */
export { exportLayer, diffTarStream, snapshotDiffRecipe, snapshotDiffSource, type ExportOptions } from './diff/export.js';
export type { LayerReuse } from './diff/reuse.js';
export { DEFAULT_MOUNT_STUBS } from './diff/diff-entries.js';
/** Deterministic tar of a whole directory tree, and a binary-safe tar reader. */
export { treeTarStream } from './tar/tree.js';
export { readTar, type ReadEntry } from './tar/reader.js';
export type { TarEntry, TarEntryType } from './tar/types.js';
/** Applier: layer tar → directory / snapshots. */
export { applyLayer, DEFAULT_LAYER_LIMITS, type ApplyOptions, type ApplyResult, type LayerLimits } from './apply/apply-layer.js';
export { unpackImage, chainId } from './apply/unpack.js';
export {
  SnapshotNotFoundError,
  SnapshotExistsError,
  SnapshotStateError,
  SnapshotArgumentError,
  MissingToolError,
  SystemCommandError,
  UnsafeLayerError,
  InvalidTarError,
  LayerLimitError,
  UnsupportedFileNameError,
} from './errors.js';
export * from './registry/index.js';
/** Crash-point hooks for crash-consistency tests (`TSBUILD_CRASH_AT=point[@N]`). */
export { crashPoint } from './crash-point.js';
export { pidAlive, bootId } from './util/process.js';
/** Native addon helpers the executor uses (false/undefined when the addon is not built). */
export { markInheritedFdsCloexec } from './util/native.js';
/** File names that are not UTF-8: a checked decoding (throws UnsupportedFileNameError). */
export { utf8Name } from './util/file-names.js';
/** Linux dev_t → major and minor (glibc's encoding). */
export { splitDev } from './tar/walk.js';
/** Inodes named exactly (O_PATH fds checked through /proc/self/fd), immune to symlink swaps. */
export { fdPath, openExact } from './util/exact-path.js';
/** TLS options for tsbuild's own connections (NODE_EXTRA_CA_CERTS as the launcher defers it). */
export { tlsTrustOptions } from './util/tls-trust.js';
/** node:zlib and node:http(s) loaded at first use (a static import costs every process start). */
export { nodeHttp, nodeHttps, nodeZlib } from './util/lazy-node.js';
