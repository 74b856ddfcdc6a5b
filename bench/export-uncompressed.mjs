// export-uncompressed: diff + tar + sha256 of the export tree into the content store, versus
// `tar -cf - DIR | sha256sum`. Target ratio ≤ 1.1.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { benchDir, ensureTree, fmt, mb, nodeChild, report, sh, warm } from './lib/common.mjs';

const tree = await ensureTree();
await tree.snapshotter?.close();
const base = await benchDir();
const storeRoot = join(base, 'store-export-uncompressed');
await warm(tree.dir);

await rm(storeRoot, { recursive: true, force: true });
const ours = await nodeChild('layer-child.mjs', ['export', tree.snapshotter ? tree.snapRoot : '-', tree.snapshotter ? tree.key : tree.dir, storeRoot, 'uncompressed']);
const baseline = await sh(`tar -cf - -C '${tree.dir}' . | sha256sum`);
await rm(storeRoot, { recursive: true, force: true });

const r = {
  bench: 'export-uncompressed',
  ratio: fmt(ours.wallMs / baseline.ms, 3),
  target: 1.1,
  oursMs: fmt(ours.wallMs, 0),
  baselineMs: fmt(baseline.ms, 0),
  oursMBps: fmt(mb(ours.uncompressedSize) / (ours.wallMs / 1000), 1),
  baselineMBps: fmt(mb(ours.uncompressedSize) / (baseline.ms / 1000), 1),
  peakRssMB: fmt((ours.maxRssKb ?? ours.childMaxRssKb) / 1024, 1),
  via: ours.via,
  files: tree.files,
  tarBytes: ours.uncompressedSize,
  note: 'ours also writes and fsyncs the blob into the content store; the baseline only hashes',
};
console.log(`export-uncompressed: ours ${r.oursMs} ms (${r.oursMBps} MB/s, ${r.via}) vs tar|sha256sum ${r.baselineMs} ms -> ratio ${r.ratio} (target <= ${r.target})`);
report(r);
