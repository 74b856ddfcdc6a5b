/**
 * The incompressibility test shared by the parallel gzip and zstd compressors.
 *
 * A block is cut into 4 KiB segments; a segment whose order-0 entropy (sampled) is above
 * 7.6 bits/byte (random or already compressed bytes) is "incompressible". The result
 * depends on the bytes only, so the compressors that use it stay deterministic.
 */

const SEGMENT = 4096;
const ENTROPY_STORE_THRESHOLD = 7.6;
const SAMPLE_STRIDE = 4;
/** Samples in a full segment. */
const FULL = SEGMENT / SAMPLE_STRIDE;
/**
 * `p·log2(p)` for p = c / FULL, c = 0..FULL: the terms of a full segment's entropy,
 * computed with the same operations as the direct formula, so a table lookup gives the
 * same bits (measured: the per-bin `Math.log2` was half of the test's time).
 */
const TERM = new Float64Array(FULL + 1);
for (let c = 1; c <= FULL; c++) {
  const p = c / FULL;
  TERM[c] = p * Math.log2(p);
}

/** A run of a block: `[start, end, incompressible]`. */
export type Run = [number, number, boolean];

/**
 * Order-0 entropy in bits per byte of every 4th byte of `buf[start, end)` (1,024
 * samples per segment: the full histogram was ~30% of the compression CPU, measured;
 * random bytes still score ≈7.8 and text ≈4.5-5.5, far from the threshold).
 * `hist` holds 4 × 256 counters: a full segment counts into four interleaved histograms
 * (consecutive equal bytes then do not wait on one counter), summed per byte value.
 */
function entropy(buf: Uint8Array, start: number, end: number, hist: Uint32Array): number {
  hist.fill(0);
  let h = 0;
  if (end - start === SEGMENT) {
    for (let i = start; i < end; i += 4 * SAMPLE_STRIDE) {
      hist[buf[i]!]!++;
      hist[256 + buf[i + SAMPLE_STRIDE]!]!++;
      hist[512 + buf[i + 2 * SAMPLE_STRIDE]!]!++;
      hist[768 + buf[i + 3 * SAMPLE_STRIDE]!]!++;
    }
    for (let s = 0; s < 256; s++) {
      const c = hist[s]! + hist[256 + s]! + hist[512 + s]! + hist[768 + s]!;
      if (c !== 0) h -= TERM[c]!;
    }
    return h;
  }
  for (let i = start; i < end; i += SAMPLE_STRIDE) hist[buf[i]!]!++;
  const n = Math.ceil((end - start) / SAMPLE_STRIDE);
  for (let s = 0; s < 256; s++) {
    const c = hist[s]!;
    if (c !== 0) {
      const p = c / n;
      h -= p * Math.log2(p);
    }
  }
  return h;
}

/** Runs of [start, end, incompressible] covering `block`, alternating, in order. */
export function classify(block: Uint8Array): Run[] {
  const runs: Run[] = [];
  const hist = new Uint32Array(4 * 256);
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
