/** `tsbuild cache check [--repair]`: the store's fsck (see checkStore in @tsbuild/solver). */
import { openStore } from './store.js';

/** Prints the check report; returns 0 when the store is consistent (or was repaired), 1 otherwise. */
export async function cacheCheckCommand(opts: { repair?: boolean; format: 'text' | 'json' }, io: { stdout: (s: string) => void }): Promise<number> {
  const { checkStore } = await import('@tsbuild/solver');
  const store = await openStore();
  try {
    const report = await checkStore(store, { repair: opts.repair === true });
    if (opts.format === 'json') {
      io.stdout(`${JSON.stringify(report, null, 2)}\n`);
      return report.ok ? 0 : 1;
    }
    const r = report.recovered;
    const cleaned = r.containers.length + r.mounts.length + r.dirs.length;
    if (cleaned > 0) io.stdout(`recovered at open: ${r.containers.length} container(s), ${r.mounts.length} mount(s), ${r.dirs.length} temp dir(s) of crashed builds\n`);
    if (r.dbBackup !== undefined) io.stdout(`the cache index was corrupt (${r.dbReason ?? ''}); moved to ${r.dbBackup} and recreated empty\n`);
    const c = report.checked;
    io.stdout(`checked ${c.blobs} blobs (${c.bytes} bytes, all re-hashed), ${c.images} image names, ${c.records} cache records, ${c.snapshots} snapshots\n`);
    for (const i of report.issues) io.stdout(`${i.repaired ? 'REPAIRED' : 'PROBLEM '} ${i.kind} ${i.subject}: ${i.message}\n`);
    if (report.unreferencedBlobs.length > 0) io.stdout(`${report.unreferencedBlobs.length} blob(s) referenced by no image and no cache record (\`tsbuild cache prune\` removes them)\n`);
    const open = report.issues.filter((i) => !i.repaired).length;
    io.stdout(report.ok ? `ok: the store is consistent\n` : `${open} problem(s) found; run \`tsbuild cache check --repair\` to fix them\n`);
    return report.ok ? 0 : 1;
  } finally {
    await store.close();
  }
}
