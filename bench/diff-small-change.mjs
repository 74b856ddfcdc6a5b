// diff-small-change: exportLayer of a step that changed one file, on top of a committed base
// of 100,000 files versus a base of 1,000 files (× BENCH_SCALE for the big one, at least
// 1,000). ratio = t(big) / t(small); target ≤ 1.5 and t(big) < 50 ms. Needs overlay
// snapshots (root); with the copy backend the numbers are printed but measure a two-tree compare.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { benchDir, dirOfMounts, fmt, lib, report, SCALE, sh } from './lib/common.mjs';

const L = await lib();
if (typeof L.openSnapshotter !== 'function' || typeof L.exportLayer !== 'function') {
  const reason = 'openSnapshotter/exportLayer are not exported by @tsbuild/snapshotter yet';
  console.log(`diff-small-change: skipped: ${reason}`);
  report({ bench: 'diff-small-change', skipped: reason, target: 1.5 });
  process.exit(0);
}
const base = await benchDir();
const REPS = 7;

async function measure(n) {
  const root = join(base, `diffsnaps-${n}`);
  const storeRoot = join(base, `diffstore-${n}`);
  await rm(root, { recursive: true, force: true });
  await rm(storeRoot, { recursive: true, force: true });
  const s = await L.openSnapshotter(root);
  const store = await L.ContentStore.open(storeRoot);
  const dir = dirOfMounts(await s.prepare('base-active'));
  for (let d = 0; d * 1000 < n; d++) {
    const sub = join(dir, `d${d}`);
    await mkdir(sub);
    const writes = [];
    for (let f = d * 1000; f < Math.min(n, (d + 1) * 1000); f++) writes.push(writeFile(join(sub, `f${f}`), `file ${f}\n`.repeat(8)));
    await Promise.all(writes);
  }
  await s.commit('base', 'base-active');
  const upper = dirOfMounts(await s.prepare('step', 'base'));
  await mkdir(join(upper, 'd0'), { recursive: true });
  await writeFile(join(upper, 'd0', 'f0'), 'changed by the step\n');
  // Untimed: flush the freshly written base first. Otherwise the big case's fsyncs (blob,
  // blob dir) wait behind the writeback of the 100,000 files just created — a base image
  // in real use was unpacked long before the step runs.
  await sh('sync', { time: false });
  const times = [];
  let desc;
  for (let i = 0; i < REPS; i++) {
    const t = performance.now();
    desc = await L.exportLayer(s, 'step', store, {});
    times.push(performance.now() - t);
  }
  await s.close();
  await rm(root, { recursive: true, force: true });
  await rm(storeRoot, { recursive: true, force: true });
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], backend: s.backend, tarBytes: desc.uncompressedSize };
}

const small = await measure(1000);
const bigN = Math.max(1000, Math.round(100_000 * SCALE));
const big = await measure(bigN);
const r = {
  bench: 'diff-small-change',
  ratio: fmt(big.ms / small.ms, 3),
  target: 1.5,
  bigMs: fmt(big.ms, 1),
  smallMs: fmt(small.ms, 1),
  absTargetMs: 50,
  bigFiles: bigN,
  smallFiles: 1000,
  backend: big.backend,
  tarBytes: big.tarBytes,
};
console.log(`diff-small-change (${r.backend}): one changed file over ${bigN} files ${r.bigMs} ms vs over 1000 files ${r.smallMs} ms -> ratio ${r.ratio} (target <= 1.5, and < 50 ms)`);
report(r);
