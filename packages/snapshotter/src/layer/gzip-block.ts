/**
 * Compression of one block of a parallel gzip stream (runs inside a gzip worker).
 *
 * The block is cut into 4 KiB segments; a segment whose order-0 entropy (sampled) is above
 * 7.6 bits/byte (random or already compressed bytes) is "incompressible". Runs of
 * incompressible segments become deflate stored blocks (a copy, no compressor); the other
 * runs are raw-deflated (the block's first run with the 32 KiB of input before the block
 * as preset dictionary) and ended with a sync flush (Z_FINISH for the very last run of the stream), so every piece ends
 * byte-aligned and the pieces concatenate into one deflate stream. A deflated run that
 * came out larger than its stored form is stored instead. Everything depends on the
 * block's bytes, the 32 KiB before it and the level only: the output is deterministic.
 */
import zlib from 'node:zlib';

const SEGMENT = 4096;
const ENTROPY_STORE_THRESHOLD = 7.6;
const SAMPLE_STRIDE = 4;
const DICT_SIZE = 32 * 1024;
const MAX_STORED = 65535;
const EMPTY_FINAL_BLOCK = [0x03, 0x00];

/**
 * Order-0 entropy in bits per byte of every 4th byte of `buf[start, end)` (1,024
 * samples per segment: the full histogram was ~30% of the compression CPU, measured;
 * random bytes still score ≈7.8 and text ≈4.5-5.5, far from the threshold).
 */
function entropy(buf: Uint8Array, start: number, end: number, hist: Uint32Array): number {
  hist.fill(0);
  for (let i = start; i < end; i += SAMPLE_STRIDE) hist[buf[i]!]!++;
  const n = Math.ceil((end - start) / SAMPLE_STRIDE);
  let h = 0;
  for (let s = 0; s < 256; s++) {
    const c = hist[s]!;
    if (c !== 0) {
      const p = c / n;
      h -= p * Math.log2(p);
    }
  }
  return h;
}

/** Runs of [start, end, incompressible] covering `block`. */
export function classify(block: Uint8Array): [number, number, boolean][] {
  const runs: [number, number, boolean][] = [];
  const hist = new Uint32Array(256);
  for (let s = 0; s < block.length; s += SEGMENT) {
    const e = Math.min(block.length, s + SEGMENT);
    // segments shorter than 1 KiB are too small to judge: compress them
    const inc = e - s >= 1024 && entropy(block, s, e, hist) > ENTROPY_STORE_THRESHOLD;
    const last = runs[runs.length - 1];
    if (last !== undefined && last[2] === inc) last[1] = e;
    else runs.push([s, e, inc]);
  }
  return runs;
}

function storedSize(n: number): number {
  return n + 5 * Math.max(1, Math.ceil(n / MAX_STORED));
}

function storedInto(out: Buffer[], data: Uint8Array, final: boolean): void {
  if (data.length === 0) {
    if (final) out.push(Buffer.from(EMPTY_FINAL_BLOCK));
    return;
  }
  const buf = Buffer.allocUnsafe(storedSize(data.length));
  let o = 0;
  for (let i = 0; i < data.length; i += MAX_STORED) {
    const len = Math.min(MAX_STORED, data.length - i);
    buf[o] = final && i + len === data.length ? 1 : 0;
    buf.writeUInt16LE(len, o + 1);
    buf.writeUInt16LE(~len & 0xffff, o + 3);
    buf.set(data.subarray(i, i + len), o + 5);
    o += 5 + len;
  }
  out.push(buf);
}

/**
 * Deflates `block` (preceded in the stream by `prev`, the up-to-32 KiB of input before it)
 * into a byte-aligned raw deflate piece; `final` ends the deflate stream.
 */
export function compressBlock(block: Uint8Array, prev: Uint8Array, level: number, final: boolean): Buffer {
  const out: Buffer[] = [];
  if (block.length === 0) {
    storedInto(out, block, final);
    return Buffer.concat(out);
  }
  const runs = level === 0 ? [[0, block.length, true] as [number, number, boolean]] : classify(block);
  for (let r = 0; r < runs.length; r++) {
    const [s, e, inc] = runs[r]!;
    const data = block.subarray(s, e);
    const lastRun = final && r === runs.length - 1;
    if (inc) {
      storedInto(out, data, lastRun);
      continue;
    }
    // Preset dictionary: the 32 KiB of input before the run, but only at the start of the
    // block. Runs alternate, so a compressible run inside the block follows random bytes,
    // which give deflate nothing to match, while priming the dictionary costs about as
    // much as compressing 32 KiB.
    const dict = s === 0 ? prev.subarray(Math.max(0, prev.length - DICT_SIZE)) : undefined;
    const piece = zlib.deflateRawSync(data, {
      level,
      ...(dict !== undefined && dict.length > 0 ? { dictionary: dict } : {}),
      finishFlush: lastRun ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
      chunkSize: Math.max(64 * 1024, data.length + (data.length >> 6) + 1024),
    });
    if (piece.length > storedSize(data.length)) storedInto(out, data, lastRun);
    else out.push(piece);
  }
  return Buffer.concat(out);
}
