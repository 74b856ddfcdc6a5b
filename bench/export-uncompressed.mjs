// export-uncompressed: diff + tar + sha256 of the export tree into the content store, versus
// `tar -cf - DIR | sha256sum`. Target ratio ≤ 1.1.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { alternate, benchDir, ensureTree, fmt, mb, nodeChild, report, sh, warm, abFields } from './lib/common.mjs';

const tree = await ensureTree();
await tree.snapshotter?.close();
const base = await benchDir();
const storeRoot = join(base, 'store-export-uncompressed');
await warm(tree.dir);

const runs = await alternate(
  () => nodeChild('layer-child.mjs', ['export', tree.snapshotter ? tree.snapRoot : '-', tree.snapshotter ? tree.key : tree.dir, storeRoot, 'uncompressed']),
  () => sh(`tar -cf - -C '${tree.dir}' . | sha256sum`),
  async () => {
    await rm(storeRoot, { recursive: true, force: true });
    await sh('sync', { time: false });
  },
);
const ours = runs.ours[runs.ours.length - 1];
await rm(storeRoot, { recursive: true, force: true });
// What ours does beyond the baseline: write + fsync the blob. Measured alone (dd
// conv=fsync of the same bytes), and as an equal-work shell baseline that also keeps the
// tar (`tar | tee FILE | sha256sum && sync FILE`).
const tarFile = join(base, 'export-uncompressed-floor.tar');
await sh(`tar -cf '${tarFile}' -C '${tree.dir}' .`, { time: false });
await sh('sync', { time: false });
const floor = await sh(`dd if='${tarFile}' of='${tarFile}.copy' bs=1M conv=fsync status=none`);
await rm(tarFile, { force: true });
await rm(`${tarFile}.copy`, { force: true });
await sh('sync', { time: false });
const equalWork = await sh(`tar -cf - -C '${tree.dir}' . | tee '${tarFile}' | sha256sum && sync '${tarFile}'`);
await rm(tarFile, { force: true });

const r = {
  bench: 'export-uncompressed',
  ...abFields(runs, 1.1),
  writeFsyncFloorMs: fmt(floor.ms, 0),
  equalWorkBaselineMs: fmt(equalWork.ms, 0),
  equalWorkRatio: fmt(runs.oursMs / equalWork.ms, 3),
  oursMBps: fmt(mb(ours.uncompressedSize) / (runs.oursMs / 1000), 1),
  baselineMBps: fmt(mb(ours.uncompressedSize) / (runs.baselineMs / 1000), 1),
  peakRssMB: fmt((ours.maxRssKb ?? ours.childMaxRssKb) / 1024, 1),
  via: ours.via,
  files: tree.files,
  tarBytes: ours.uncompressedSize,
  note: 'ours also writes and fsyncs the blob into the content store; the baseline only hashes',
};
console.log(`export-uncompressed (median of ${runs.ours.length} A/B runs, load ${r.load.join(' -> ')}): ours ${r.oursMs} ms (${r.oursMBps} MB/s, ${r.via}) vs tar|sha256sum ${r.baselineMs} ms -> ratio ${r.ratio} (target <= ${r.target}); write+fsync of the same bytes (dd conv=fsync) ${r.writeFsyncFloorMs} ms; vs tar|tee FILE|sha256sum + sync ${r.equalWorkBaselineMs} ms -> ${r.equalWorkRatio}`);
report(r);
