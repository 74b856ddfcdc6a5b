// apply-gzip: applyLayer(openLayerStream(gzip layer of the export tree)) into an empty dir,
// versus `pigz -dc BLOB | tar -x -C DIR`. Target ratio ≤ 1.1.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { alternate, benchDir, fmt, lib, mb, nodeChild, report, sh, abFields } from './lib/common.mjs';
import { ensureTarFile } from './lib/tarfile.mjs';

const L = await lib();
if (typeof L.applyLayer !== 'function') {
  const reason = 'applyLayer is not exported by @tsbuild/snapshotter yet';
  console.log(`apply-gzip: skipped: ${reason}`);
  report({ bench: 'apply-gzip', skipped: reason, target: 1.1 });
  process.exit(0);
}
const { file, tree } = await ensureTarFile();
const base = await benchDir();
const storeRoot = join(base, 'store-apply');
await rm(storeRoot, { recursive: true, force: true });
const layer = await nodeChild('layer-child.mjs', ['write-file', file, storeRoot, 'gzip']);
const store = await L.ContentStore.open(storeRoot);
const blob = store.blobPath(layer.digest);
await sh(`cat '${blob}' > /dev/null`, { time: false });

const oursDir = join(base, 'apply-ours');
const baseDir = join(base, 'apply-baseline');
// Fresh, empty target dirs before every run, flushed (sync) outside the timing. Both sides
// extract next to where the previous runs' trees were just deleted: on ext4 without a
// journal (the machine we measure on) the inode allocator then skips every recently
// deleted inode one by one, so file creation on both sides costs more from run to run
// (the snapshotter README, "Placement", has the measurements); builds avoid it by giving
// each snapshot block groups of its own, this bench keeps both sides on equal terms.
const fresh = async () => {
  for (const d of [oursDir, baseDir]) await rm(d, { recursive: true, force: true });
  for (const d of [oursDir, baseDir]) await mkdir(d);
  await sh('sync', { time: false });
};
const runs = await alternate(
  () => nodeChild('layer-child.mjs', ['apply', storeRoot, layer.digest, layer.mediaType, oursDir]),
  () => sh(`pigz -dc '${blob}' | tar -x -C '${baseDir}'`),
  fresh,
);
const ours = runs.ours[runs.ours.length - 1];
for (const d of [oursDir, baseDir, storeRoot]) await rm(d, { recursive: true, force: true });

const r = {
  bench: 'apply-gzip',
  ...abFields(runs, 1.1),
  oursMBps: fmt(mb(layer.uncompressedSize) / (runs.oursMs / 1000), 1),
  entries: ours.entries,
  blobBytes: layer.size,
  tarBytes: layer.uncompressedSize,
  peakRssMB: fmt((ours.maxRssKb ?? ours.childMaxRssKb) / 1024, 1),
  files: tree.files,
};
console.log(`apply-gzip (median of ${runs.ours.length} A/B runs, load ${r.load.join(' -> ')}): ours ${r.oursMs} ms (${r.oursMBps} MB/s, ${r.entries} entries) vs pigz -dc|tar -x ${r.baselineMs} ms -> ratio ${r.ratio} (target <= ${r.target})`);
report(r);
