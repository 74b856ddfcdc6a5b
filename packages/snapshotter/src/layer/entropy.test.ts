import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { classify, type Run } from './entropy.js';
import { prngBytes, textBytes } from './test-helpers/tools.js';

/** The test as first written (one histogram, `Math.log2` per bin): classify must agree bit for bit. */
function reference(block: Uint8Array): Run[] {
  const runs: Run[] = [];
  const hist = new Uint32Array(256);
  for (let s = 0; s < block.length; s += 4096) {
    const e = Math.min(block.length, s + 4096);
    let inc = false;
    if (e - s >= 1024) {
      hist.fill(0);
      for (let i = s; i < e; i += 4) hist[block[i]!]!++;
      const n = Math.ceil((e - s) / 4);
      let h = 0;
      for (let c = 0; c < 256; c++) {
        const k = hist[c]!;
        if (k !== 0) h -= (k / n) * Math.log2(k / n);
      }
      inc = h > 7.6;
    }
    const last = runs[runs.length - 1];
    if (last !== undefined && last[2] === inc) last[1] = e;
    else runs.push([s, e, inc]);
  }
  return runs;
}

describe('classify', () => {
  it('finds random and text runs', () => {
    const mixed = Buffer.concat([textBytes(1, 10_000), prngBytes(2, 20_000), textBytes(3, 5000)]);
    assert.deepEqual(classify(mixed).map((r) => r[2]), [false, true, false]);
    assert.deepEqual(classify(Buffer.alloc(0)), []);
    assert.deepEqual(classify(prngBytes(4, 1000)), [[0, 1000, false]], 'too short to judge');
  });

  it('agrees with the direct formula, also near the threshold (property)', () => {
    // bytes drawn from 2^k symbols with a random skew put segments on both sides of 7.6 bits
    const segment = fc.tuple(fc.integer({ min: 180, max: 256 }), fc.integer({ min: 1, max: 1 << 30 }), fc.integer({ min: 1, max: 4096 })).map(([symbols, seed, len]) => {
      const r = prngBytes(seed, len);
      const out = Buffer.allocUnsafe(len);
      for (let i = 0; i < len; i++) out[i] = (r[i]! * symbols) >> 8;
      return out;
    });
    const seen = new Set<boolean>();
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 12 }), (parts) => {
        const block = Buffer.concat(parts);
        const runs = classify(block);
        assert.deepEqual(runs, reference(block));
        for (const r of runs) seen.add(r[2]);
      }),
      { numRuns: 300 },
    );
    assert.deepEqual(seen, new Set([true, false]), 'the samples fall on both sides of the threshold');
  });
});
