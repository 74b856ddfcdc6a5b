import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { InvalidLayerOptionError } from './errors.js';
import { classify } from './entropy.js';
import { gzipParallel, type GzipParallelOptions } from './gzip-parallel.js';
import { prngBytes, requireTool, run, textBytes, through, blockCases } from './test-helpers/tools.js';

const gz = (data: Buffer, opts: GzipParallelOptions = {}, chunkSizes?: number[]): Promise<Buffer> => through(gzipParallel(opts), data, chunkSizes);

const BS = 32 * 1024;
const cases = blockCases(BS);

describe('gzipParallel', () => {
  for (const [name, data] of cases) {
    it(`round-trips ${name} through gzip -dc and pigz -dc`, async (t) => {
      const out = await gz(data, { blockSize: BS, level: 6 });
      assert.deepEqual(zlib.gunzipSync(out), data);
      if (requireTool(t, 'gzip', 'gzip')) assert.ok(run('gzip', ['-dc'], out).equals(data), 'gzip -dc output differs');
      if (requireTool(t, 'pigz', 'pigz')) assert.ok(run('pigz', ['-dc'], out).equals(data), 'pigz -dc output differs');
      if (requireTool(t, 'gzip', 'gzip')) run('gzip', ['-t'], out);
    });
  }

  it('writes a single gzip member with a correct header, CRC-32 and ISIZE', async () => {
    const data = textBytes(11, 200_000);
    const out = await gz(data, { blockSize: BS, level: 1 });
    assert.deepEqual([...out.subarray(0, 4)], [0x1f, 0x8b, 0x08, 0x00]);
    assert.equal(out.readUInt32LE(4), 0, 'mtime must be 0');
    assert.equal(out[8], 4, 'XFL for level 1');
    assert.equal(out.readUInt32LE(out.length - 8), zlib.crc32(data));
    assert.equal(out.readUInt32LE(out.length - 4), data.length);
    // one member: a raw inflate of the body consumes everything but the 8-byte trailer
    const body = out.subarray(10, out.length - 8);
    assert.deepEqual(zlib.inflateRawSync(body), data);
  });

  it('is deterministic across chunkings and worker counts, and depends on level', async () => {
    const data = Buffer.concat([textBytes(12, 300_000), prngBytes(13, 100_000)]);
    const a = await gz(data, { blockSize: BS, level: 6, workers: 1 }, [1000]);
    const b = await gz(data, { blockSize: BS, level: 6, workers: 4 }, [7, 65536, 333]);
    const c = await gz(data, { blockSize: BS, level: 6, workers: 2 }, [1 << 20]);
    assert.ok(a.equals(b) && b.equals(c));
    const d = await gz(data, { blockSize: BS, level: 1, workers: 2 });
    assert.ok(!d.equals(a));
  });

  it('round-trips arbitrary data, chunkings, levels and block sizes (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 150_000 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 9 }),
        fc.constantFrom(32 * 1024, 40_000, 64 * 1024),
        async (arr, sizes, level, blockSize) => {
          const data = Buffer.from(arr);
          const out = await gz(data, { level, blockSize, workers: 3 }, sizes);
          assert.deepEqual(zlib.gunzipSync(out), data);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('stores incompressible blocks: random data grows only by stored-block headers and gzip framing', async () => {
    const data = prngBytes(14, 1 << 20);
    assert.deepEqual(classify(data.subarray(0, 256 * 1024)), [[0, 256 * 1024, true]]);
    assert.deepEqual(classify(textBytes(15, 256 * 1024)), [[0, 256 * 1024, false]]);
    const mixed = Buffer.concat([textBytes(15, 10_000), prngBytes(16, 20_000), textBytes(17, 5000)]);
    const runs = classify(mixed);
    assert.equal(runs.length, 3);
    assert.deepEqual(runs.map((r) => r[2]), [false, true, false]);
    const blockSize = 256 * 1024;
    const out = await gz(data, { level: 9, blockSize });
    // 5 header bytes per stored block of <= 65535 bytes, 10 + 8 gzip framing, 2 for the empty final block
    const bound = data.length + (data.length / blockSize) * 5 * Math.ceil(blockSize / 65535) + 10 + 8 + 2;
    const mixed2 = Buffer.concat([textBytes(17, 100_000), prngBytes(18, 300_000), textBytes(19, 100_000)]);
    const mixedOut = await gz(mixed2, { level: 6, blockSize });
    const textOnly = zlib.deflateRawSync(Buffer.concat([textBytes(17, 100_000), textBytes(19, 100_000)]), { level: 6 }).length;
    assert.ok(mixedOut.length < 300_000 + textOnly * 1.1 + 200, `mixed block: ${mixedOut.length}`);
    assert.deepEqual(zlib.gunzipSync(mixedOut), mixed2);
    assert.ok(out.length <= bound, `got ${out.length}, bound ${bound}`);
    assert.deepEqual(zlib.gunzipSync(out), data);
  });

  it('compresses text about as well as zlib in one piece', async () => {
    const data = textBytes(16, 2 << 20);
    const out = await gz(data, { level: 6 });
    const ref = zlib.gzipSync(data, { level: 6 });
    assert.ok(out.length <= ref.length * 1.02, `parallel ${out.length} vs zlib ${ref.length}`);
  });

  it('rejects bad options', () => {
    assert.throws(() => gzipParallel({ level: 10 }), InvalidLayerOptionError);
    assert.throws(() => gzipParallel({ blockSize: 1000 }), InvalidLayerOptionError);
    assert.throws(() => gzipParallel({ workers: 0 }), InvalidLayerOptionError);
  });

  it('propagates an upstream error', async () => {
    const src = new Readable({ read() { this.destroy(new Error('boom')); } });
    await assert.rejects(pipeline(src, gzipParallel(), async (s: AsyncIterable<Buffer>) => { await buffer(s); }), /boom/);
  });
});
