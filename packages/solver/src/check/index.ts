/** Store consistency: fsck (checkStore), crash recovery at open, crash-point hooks. */
export { checkStore, type CheckStoreOptions, type StoreCheckReport, type StoreIssue, type StoreIssueKind } from './check-store.js';
export { recoverStore, type RecoveryReport } from './recover.js';
export { crashPoint, CRASH_POINTS, type CrashPointName } from './crash-points.js';
