// export-uncompressed: diff + tar + sha256 of the export tree, versus `tar -cf - DIR |
// sha256sum`. Target ratio ≤ 1.1.
//
// The ratio is measured on the export a build does for a big uncompressed layer: hashed,
// not written (the blob becomes virtual, regenerated from the snapshot when read; see
// packages/solver/README.md, "Virtual layers") — the same work as the baseline. The
// written export (blob written and fsync'd into the content store, what layers below the
// threshold and the fallback cost) is reported beside it, against the equal-work baseline
// `tar | tee FILE | sha256sum && sync FILE`, and against tar|sha256sum for continuity
// with earlier figures. Without a snapshot (no overlay/copy export here) only the written
// export can run.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { alternate, benchDir, ensureTree, fmt, mb, nodeChild, report, sh, warm, abFields } from './lib/common.mjs';

const tree = await ensureTree();
await tree.snapshotter?.close();
const base = await benchDir();
const storeRoot = join(base, 'store-export-uncompressed');
const tarFile = join(base, 'export-uncompressed-floor.tar');
await warm(tree.dir);
const exportRun = (compression) => () => nodeChild('layer-child.mjs', ['export', tree.snapshotter ? tree.snapRoot : '-', tree.snapshotter ? tree.key : tree.dir, storeRoot, compression]);
const clean = async () => {
  await rm(storeRoot, { recursive: true, force: true });
  await rm(tarFile, { force: true });
  await sh('sync', { time: false });
};

const hashOnly = tree.snapshotter ? await alternate(exportRun('hash-only'), () => sh(`tar -cf - -C '${tree.dir}' . | sha256sum`), clean) : undefined;
const written = await alternate(exportRun('uncompressed'), () => sh(`tar -cf - -C '${tree.dir}' . | tee '${tarFile}' | sha256sum && sync '${tarFile}'`), clean);
await clean();
const plain = await sh(`tar -cf - -C '${tree.dir}' . | sha256sum`);
// what writing costs alone: dd conv=fsync of the same bytes
await sh(`tar -cf '${tarFile}' -C '${tree.dir}' .`, { time: false });
await sh('sync', { time: false });
const floor = await sh(`dd if='${tarFile}' of='${tarFile}.copy' bs=1M conv=fsync status=none`);
await rm(`${tarFile}.copy`, { force: true });
await clean();

const w = written.ours[written.ours.length - 1];
const main = hashOnly ?? written;
const r = {
  bench: 'export-uncompressed',
  ...abFields(main, 1.1),
  measured: hashOnly ? 'hash-only export (virtual layer) vs tar|sha256sum' : 'written export vs tar|tee FILE|sha256sum + sync (no snapshot export here)',
  writtenMs: fmt(written.oursMs, 0),
  writtenRunsMs: written.ours.map((x) => fmt(x.wallMs, 0)),
  writtenCpuMs: written.ours.map((x) => fmt(x.cpuMs, 0)),
  equalWorkBaselineMs: fmt(written.baselineMs, 0),
  equalWorkRatio: fmt(written.oursMs / written.baselineMs, 3),
  writtenVsPlainRatio: fmt(written.oursMs / (hashOnly ? hashOnly.baselineMs : plain.ms), 3),
  writeFsyncFloorMs: fmt(floor.ms, 0),
  oursMBps: fmt(mb(w.uncompressedSize) / (main.oursMs / 1000), 1),
  peakRssMB: fmt((w.maxRssKb ?? w.childMaxRssKb) / 1024, 1),
  via: w.via,
  files: tree.files,
  tarBytes: w.uncompressedSize,
};
console.log(
  `export-uncompressed (medians of ${main.ours.length} A/B runs, load ${r.load.join(' -> ')}): ${r.measured}: ${r.oursMs} ms vs ${r.baselineMs} ms -> ratio ${r.ratio} (target <= ${r.target}); ` +
    `written export ${r.writtenMs} ms vs tar|tee|sha256sum+sync ${r.equalWorkBaselineMs} ms -> ${r.equalWorkRatio} (vs tar|sha256sum ${r.writtenVsPlainRatio}); dd conv=fsync of the same bytes ${r.writeFsyncFloorMs} ms`,
);
report(r);
