// zstd-vs-gzip: writeLayer of the same tar (a file of the export tree) with zstd versus our
// gzip default. ratio = zstd time / gzip time; target ≤ 1/3 (≥ 3× faster) with a blob no
// larger than the gzip one.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { benchDir, fmt, mb, nodeChild, report, sh } from './lib/common.mjs';
import { ensureTarFile } from './lib/tarfile.mjs';

const { file, tree } = await ensureTarFile();
const base = await benchDir();
await sh(`cat '${file}' > /dev/null`, { time: false });
const run = async (compression) => {
  const storeRoot = join(base, `store-${compression}`);
  await rm(storeRoot, { recursive: true, force: true });
  const r = await nodeChild('layer-child.mjs', ['write-file', file, storeRoot, compression]);
  await rm(storeRoot, { recursive: true, force: true });
  return r;
};
const gz = await run('gzip');
const zs = await run('zstd');
const r = {
  bench: 'zstd-vs-gzip',
  ratio: fmt(zs.wallMs / gz.wallMs, 3),
  target: fmt(1 / 3, 3),
  zstdMs: fmt(zs.wallMs, 0),
  gzipMs: fmt(gz.wallMs, 0),
  zstdMBps: fmt(mb(zs.uncompressedSize) / (zs.wallMs / 1000), 1),
  gzipMBps: fmt(mb(gz.uncompressedSize) / (gz.wallMs / 1000), 1),
  zstdBytes: zs.size,
  gzipBytes: gz.size,
  sizeRatio: fmt(zs.size / gz.size, 4),
  sizeTarget: 1,
  zstdPeakRssMB: fmt((zs.maxRssKb ?? zs.childMaxRssKb) / 1024, 1),
  gzipPeakRssMB: fmt((gz.maxRssKb ?? gz.childMaxRssKb) / 1024, 1),
  tarBytes: zs.uncompressedSize,
  files: tree.files,
};
console.log(`zstd-vs-gzip: zstd ${r.zstdMs} ms (${r.zstdMBps} MB/s, ${r.zstdBytes} B) vs gzip ${r.gzipMs} ms (${r.gzipMBps} MB/s, ${r.gzipBytes} B) -> time ratio ${r.ratio} (target <= ${r.target}), size ratio ${r.sizeRatio}`);
report(r);
