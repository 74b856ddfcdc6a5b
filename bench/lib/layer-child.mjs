// One layer operation in its own process, so its peak RSS is measured alone.
// Prints one JSON line. Usage:
//   export <snapRoot|-> <key|dir> <storeRoot> <compression> [level]
//     (compression `hash-only`: uncompressed, hashed but not written — what a build does
//     for a layer above its virtual-layer threshold; needs a snapshot)
//   write-file <tarFile> <storeRoot> <compression> [level]
//   apply <storeRoot> <digest> <mediaType> <targetDir>
import { createReadStream } from 'node:fs';
import { lib } from './common.mjs';
import { tarOfDir } from './tar-dir.mjs';

const [op, ...a] = process.argv.slice(2);
const L = await lib();
const t0 = performance.now();
let out;
if (op === 'export') {
  const [snapRoot, keyOrDir, storeRoot, compression, level] = a;
  const store = await L.ContentStore.open(storeRoot);
  const opts = compression === 'hash-only' ? { compression: 'uncompressed', virtualMinSize: 0 } : { compression, ...(level ? { level: Number(level) } : {}) };
  if (compression === 'hash-only' && snapRoot === '-') throw new Error('hash-only needs a snapshot');
  if (snapRoot !== '-') {
    const s = await L.openSnapshotter(snapRoot);
    out = { via: 'exportLayer', ...(await L.exportLayer(s, keyOrDir, store, opts)) };
    await s.close();
  } else {
    out = { via: 'tar-stream+writeLayer', ...(await L.writeLayer(tarOfDir(keyOrDir), store, opts)) };
  }
} else if (op === 'write-file') {
  const [tarFile, storeRoot, compression, level] = a;
  const store = await L.ContentStore.open(storeRoot);
  out = await L.writeLayer(createReadStream(tarFile, { highWaterMark: 1 << 20 }), store, { compression, ...(level ? { level: Number(level) } : {}) });
} else if (op === 'apply') {
  const [storeRoot, digest, mediaType, target] = a;
  const store = await L.ContentStore.open(storeRoot);
  out = await L.applyLayer(L.openLayerStream(store, { digest, mediaType }), target);
} else {
  throw new Error(`unknown op ${op}`);
}
out.ms = performance.now() - t0;
const ru = process.resourceUsage();
out.childMaxRssKb = ru.maxRSS;
out.cpuMs = (ru.userCPUTime + ru.systemCPUTime) / 1000;
process.stdout.write(`${JSON.stringify(out)}\n`);
