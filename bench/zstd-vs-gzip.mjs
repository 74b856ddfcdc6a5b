// zstd-vs-gzip: writeLayer of the same tar (a file of the export tree) with zstd versus our
// gzip default, into a ContentStore (fsync incl.). ratio = zstd time / gzip time (medians of
// alternating runs); target ≤ 1/3 (≥ 3× faster) with a blob no larger than the gzip one.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { abFields, alternate, benchDir, fmt, mb, median, nodeChild, NPROC, report, sh } from './lib/common.mjs';
import { ensureTarFile } from './lib/tarfile.mjs';

const { file, tree } = await ensureTarFile();
const base = await benchDir();
await sh(`cat '${file}' > /dev/null`, { time: false });
const storeRoot = (compression) => join(base, `store-${compression}`);
const write = (compression) => () => nodeChild('layer-child.mjs', ['write-file', file, storeRoot(compression), compression]);
const runs = await alternate(write('zstd'), write('gzip'), async () => {
  await rm(storeRoot('zstd'), { recursive: true, force: true });
  await rm(storeRoot('gzip'), { recursive: true, force: true });
  await sh('sync', { time: false });
});
await rm(storeRoot('zstd'), { recursive: true, force: true });
await rm(storeRoot('gzip'), { recursive: true, force: true });
const zs = runs.ours[runs.ours.length - 1];
const gz = runs.baseline[runs.baseline.length - 1];
const L = await import('@tsbuild/snapshotter');
const cpu = (xs) => median(xs.map((x) => x.cpuMs));
const r = {
  bench: 'zstd-vs-gzip',
  ...abFields(runs, fmt(1 / 3, 3)),
  // both sides are child processes: wall time of each gzip run (abFields' baseline figure is the child's own)
  baselineRunsMs: runs.baseline.map((x) => fmt(x.wallMs, 0)),
  cpuRatio: fmt(cpu(runs.ours) / cpu(runs.baseline), 3),
  zstdMBps: fmt(mb(zs.uncompressedSize) / (runs.oursMs / 1000), 1),
  gzipMBps: fmt(mb(gz.uncompressedSize) / (runs.baselineMs / 1000), 1),
  zstdBytes: zs.size,
  gzipBytes: gz.size,
  sizeRatio: fmt(zs.size / gz.size, 4),
  sizeTarget: 1,
  zstdLevel: L.DEFAULT_ZSTD_LEVEL,
  gzipLevel: L.DEFAULT_GZIP_LEVEL,
  zstdPeakRssMB: fmt((zs.maxRssKb ?? zs.childMaxRssKb) / 1024, 1),
  gzipPeakRssMB: fmt((gz.maxRssKb ?? gz.childMaxRssKb) / 1024, 1),
  tarBytes: zs.uncompressedSize,
  files: tree.files,
  nproc: NPROC,
};
console.log(`zstd-vs-gzip (median of ${runs.ours.length} A/B runs, load ${r.load.join(' -> ')}): zstd ${r.oursMs} ms (${r.zstdMBps} MB/s, CPU ${r.oursCpuMs.join('/')} ms, ${r.zstdBytes} B) vs gzip ${r.baselineMs} ms (${r.gzipMBps} MB/s, CPU ${r.baselineCpuMs.join('/')} ms, ${r.gzipBytes} B)`);
console.log(`  -> time ratio ${r.ratio} (target <= ${r.target}), CPU ratio ${r.cpuRatio}, size ratio ${r.sizeRatio} (target <= ${r.sizeTarget})`);
report(r);
