/**
 * @tsbuild/solver: runs Dockerfile builds against a local store, with a build cache
 * keyed by content digests that explains every miss.
 *
 * ```ts
 * import { BuildStore, build } from '@tsbuild/solver';
 * const store = await BuildStore.open();
 * const result = await build(store, { context: '.', tags: ['hello'], onProgress: (e) => console.log(e) });
 * ```
 */
export { build, type BuildOptions, type BuildResult, type SecretSource, type SshSource } from './frontend/build.js';
export { BuildStore, defaultStoreRoot, type StoreOptions } from './store.js';
export type { ProgressEvent, ProgressHandler, VertexEvent } from './progress.js';
/** Store consistency: fsck, crash recovery, crash-point names. */
export {
  checkStore,
  recoverStore,
  CRASH_POINTS,
  type CheckStoreOptions,
  type CrashPointName,
  type RecoveryReport,
  type StoreCheckReport,
  type StoreIssue,
  type StoreIssueKind,
} from './check/index.js';
export type { BuildStepSummary, BuildSummary, CacheRecord, KeyComponents, RecordedLayer } from './cache/cache-db.js';
export { BuildError, ExecFailedError, BuildCanceledError, type ErrorCode, type StepLocation } from './errors.js';
export type { NetworkMode } from './executor/index.js';
export { importRootfs, type ImportOptions } from './ops/import.js';
/** Build cache usage, inspection and pruning (`tsbuild cache ls|du|inspect|prune`). */
export { CacheController, type CacheUsage, type CacheUsageRecord, type CacheRecordDetail, type PruneOptions, type PruneResult } from './cache/controller.js';
/** Leases: what a running operation holds is never pruned. */
export { Lease } from './cache/lease.js';
/** Image inspection: per-layer changes and wasted bytes (`tsbuild layers`), image/layer diffs (`tsbuild diff`). */
export {
  analyzeLayers,
  diffImages,
  type ChangeKind,
  type DiffEntry,
  type DiffReport,
  type FileChange,
  type ImageLayersReport,
  type LayerReport,
  type WastedFile,
} from './inspect/layers.js';
export { CacheRecordNotFoundError, InvalidPruneOptionError, InspectTargetNotFoundError } from './errors.js';
/** `rewrite-timestamp=true`: clamp file mtimes in an image's layers to SOURCE_DATE_EPOCH at export. */
export { rewriteTimestamps, ClampMtimes } from './export/rewrite-timestamp.js';
/** Registries: image pulls and pushes, and the build cache shared through a registry or a directory (`--cache-to`/`--cache-from`). */
export { pullImage, pushImage, insecureRegistriesFromEnv, type RegistryAccess } from './remote/registry.js';
export type { CacheExportSpec, CacheExportResult } from './remote/cache-export.js';
export type { CacheImportSpec } from './remote/cache-import.js';
export { CACHE_ARTIFACT_TYPE, CACHE_CONFIG_MEDIA_TYPE, type CacheArtifactConfig, type CacheArtifactRecord } from './remote/cache-format.js';
export { RemoteCacheError } from './errors.js';
