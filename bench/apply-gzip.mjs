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

// Every run extracts into a new, empty directory below a `chattr +T` parent, and nothing
// is deleted until the end. On ext4 without a journal (the machine we measure on) file
// creation next to a recently deleted tree costs 5-20x more (the inode allocator skips
// every recently freed inode one by one; the snapshotter README, "Placement", has the
// measurements), and which side meets that depended on the run order: with +T each new
// top directory gets block groups of its own, as a snapshot does in a build.
const runsDir = join(base, 'apply-runs');
await rm(runsDir, { recursive: true, force: true });
await mkdir(runsDir);
await sh(`chattr +T '${runsDir}' 2>/dev/null || true`, { time: false });
let n = 0;
let oursDir = '';
let baseDir = '';
const fresh = async () => {
  n++;
  oursDir = join(runsDir, `ours-${n}`);
  baseDir = join(runsDir, `baseline-${n}`);
  for (const d of [oursDir, baseDir]) await mkdir(d);
  await sh('sync', { time: false });
};
const runs = await alternate(
  () => nodeChild('layer-child.mjs', ['apply', storeRoot, layer.digest, layer.mediaType, oursDir]),
  () => sh(`pigz -dc '${blob}' | tar -x -C '${baseDir}'`),
  fresh,
);
const ours = runs.ours[runs.ours.length - 1];
for (const d of [runsDir, storeRoot]) await rm(d, { recursive: true, force: true });

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
