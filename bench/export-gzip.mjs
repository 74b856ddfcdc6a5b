// export-gzip: diff + tar + sha256 + gzip of a freshly written tree (≈1 GiB, ≈50,000 files,
// half random, half text) into the content store, versus
// `tar -cf - DIR | pigz -p$(nproc) -6 | sha256sum`. Target ratio ≤ 0.5, blob ≤ 1.05× pigz's,
// peak RSS < 300 MB.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { alternate, benchDir, ensureTree, fmt, mb, NPROC, nodeChild, report, sh, warm, abFields } from './lib/common.mjs';

const tree = await ensureTree();
await tree.snapshotter?.close();
const base = await benchDir();
const storeRoot = join(base, 'store-export-gzip');
const sizeFile = join(base, 'pigz-size');
await warm(tree.dir);

const runs = await alternate(
  () => nodeChild('layer-child.mjs', ['export', tree.snapshotter ? tree.snapRoot : '-', tree.snapshotter ? tree.key : tree.dir, storeRoot, 'gzip']),
  () => sh(`tar -cf - -C '${tree.dir}' . | pigz -p${NPROC} -6 | tee >(wc -c > '${sizeFile}') | sha256sum`),
  async () => {
    await rm(storeRoot, { recursive: true, force: true });
    await sh('sync', { time: false });
  },
);
const ours = runs.ours[runs.ours.length - 1];
const baseline = runs.baseline[runs.baseline.length - 1];
let pigzBytes = NaN;
for (let i = 0; i < 50 && Number.isNaN(pigzBytes); i++) {
  const s = (await readFile(sizeFile, 'utf8').catch(() => '')).trim();
  if (s) pigzBytes = Number(s);
  else await new Promise((r) => setTimeout(r, 100));
}
await rm(storeRoot, { recursive: true, force: true });

const L = await import('@tsbuild/snapshotter');
const r = {
  bench: 'export-gzip',
  ...abFields(runs, 0.5),
  oursMBps: fmt(mb(ours.uncompressedSize) / (runs.oursMs / 1000), 1),
  baselineMBps: fmt(mb(ours.uncompressedSize) / (runs.baselineMs / 1000), 1),
  blobBytes: ours.size,
  pigzBytes,
  sizeRatio: fmt(ours.size / pigzBytes, 4),
  sizeTarget: 1.05,
  peakRssMB: fmt((ours.maxRssKb ?? ours.childMaxRssKb) / 1024, 1),
  rssTarget: 300,
  baselinePeakRssMB: baseline.maxRssKb === undefined ? null : fmt(baseline.maxRssKb / 1024, 1),
  level: L.DEFAULT_GZIP_LEVEL,
  via: ours.via,
  files: tree.files,
  tarBytes: ours.uncompressedSize,
  nproc: NPROC,
};
console.log(`export-gzip (median of ${runs.ours.length} A/B runs, load ${r.load.join(' -> ')}): ours ${r.oursMs} ms (${r.oursMBps} MB/s, ${r.via}, level ${r.level}) vs tar|pigz -6|sha256sum ${r.baselineMs} ms -> ratio ${r.ratio} (target <= ${r.target})`);
console.log(`  blob ${r.blobBytes} B vs pigz ${r.pigzBytes} B -> ${r.sizeRatio} (target <= ${r.sizeTarget}); peak RSS ${r.peakRssMB} MB (target < ${r.rssTarget})`);
report(r);
