// Deterministic test data for the benchmarks: a seeded PRNG (xorshift128+ style, via
// 32-bit mulberry32 streams) drives file sizes, names and contents, so every run on
// every machine produces the same bytes.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** mulberry32: tiny, fast, good enough for test data. Returns a function giving uint32. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `n` pseudo-random bytes (incompressible). */
export function randomBytes(rand, n) {
  const buf = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) buf.writeUInt32LE(rand(), i);
  for (; i < n; i++) buf[i] = rand() & 0xff;
  return buf;
}

const WORDS = (
  'the of and to in is for on that with as by this be are from at or an it not ' +
  'function return const let var if else while for import export default class ' +
  'new this null undefined true false async await yield static public private ' +
  'error warning info debug trace request response status header body content ' +
  'layer image container build cache snapshot mount overlay digest manifest config ' +
  'user group file directory path name size mode time value index length buffer ' +
  'stream reader writer parser token string number object array map set list node'
).split(' ');

/** `n` bytes of compressible, log/source-like text (gzip -6 gets roughly 3-4x). */
export function textBytes(rand, n) {
  const parts = [];
  let len = 0;
  while (len < n) {
    const words = 4 + (rand() % 12);
    let line = '';
    if (rand() % 4 === 0) line += `${(rand() % 100000).toString().padStart(6, '0')} `;
    for (let w = 0; w < words; w++) {
      // skewed towards the first words (zipf-ish)
      const r = rand();
      const idx = Math.floor(((r & 0xffff) / 0x10000) ** 2 * WORDS.length);
      line += (w ? ' ' : '') + WORDS[idx];
      if (rand() % 16 === 0) line += `_${(rand() % 4096).toString(16)}`;
    }
    line += '\n';
    parts.push(line);
    len += line.length;
  }
  return Buffer.from(parts.join(''), 'latin1').subarray(0, n);
}

/**
 * Writes a tree of about `files` files totalling about `bytes` bytes under `dir`:
 * half the files random, half text; sizes log-uniform-ish around the mean; 100 files
 * per directory. Returns { files, bytes } actually written.
 */
export async function makeTree(dir, { files, bytes, seed = 1 }) {
  const rand = prng(seed);
  const mean = bytes / files;
  let total = 0;
  let count = 0;
  const pending = [];
  for (let i = 0; i < files; i++) {
    const d = join(dir, `d${Math.floor(i / 100).toString().padStart(4, '0')}`);
    if (i % 100 === 0) await mkdir(d, { recursive: true });
    // size in [mean/8, mean*1.875] with mean ~ mean
    const u = rand() / 0x100000000;
    const size = Math.max(0, Math.round(mean * (0.125 + 1.75 * u)));
    const data = i % 2 === 0 ? randomBytes(rand, size) : textBytes(rand, size);
    pending.push(writeFile(join(d, `f${i}.${i % 2 === 0 ? 'bin' : 'txt'}`), data));
    if (pending.length >= 64) await Promise.all(pending.splice(0));
    total += size;
    count++;
  }
  await Promise.all(pending);
  return { files: count, bytes: total };
}
