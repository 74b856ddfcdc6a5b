import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { classify } from './entropy.js';
import { InvalidLayerOptionError } from './errors.js';
import { gzipParallel } from './gzip-parallel.js';
import { prngBytes, requireTool, run, textBytes, through, blockCases } from './test-helpers/tools.js';
import { zstdDecompressStream, zstdParallel, type ZstdParallelOptions } from './zstd.js';

const zst = async (data: Buffer, opts: ZstdParallelOptions = {}, chunkSizes?: number[]): Promise<Buffer> => through(await zstdParallel(opts), data, chunkSizes);
const unzst = async (blob: Buffer): Promise<Buffer> => through(await zstdDecompressStream(), blob);

interface Frame {
  /** Frame_Content_Size from the header. */
  contentSize: number;
  /** Block types in order: 0 raw, 1 RLE, 2 compressed. */
  blockTypes: number[];
  checksum: boolean;
}

/** Walks a zstd stream frame by frame (RFC 8878 §3.1.1), checking the framing as it goes. */
function frames(stream: Buffer): Frame[] {
  const out: Frame[] = [];
  let o = 0;
  while (o < stream.length) {
    assert.equal(stream.readUInt32LE(o), 0xfd2fb528, `frame magic at ${o}`);
    const fhd = stream[o + 4]!;
    o += 5;
    const fcsFlag = fhd >> 6;
    const single = (fhd & 0x20) !== 0;
    const checksum = (fhd & 0x04) !== 0;
    const dictIdSize = [0, 1, 2, 4][fhd & 3]!;
    assert.equal(fhd & 0x08, 0, 'reserved bit');
    if (!single) o += 1;
    o += dictIdSize;
    const fcsSize = fcsFlag === 0 ? (single ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
    assert.ok(fcsSize > 0, 'frame content size present');
    let contentSize = fcsSize === 8 ? Number(stream.readBigUInt64LE(o)) : stream.readUIntLE(o, fcsSize);
    if (fcsSize === 2) contentSize += 256;
    o += fcsSize;
    const blockTypes: number[] = [];
    for (;;) {
      const h = stream.readUIntLE(o, 3);
      o += 3;
      const type = (h >> 1) & 3;
      const size = h >> 3;
      assert.notEqual(type, 3, 'reserved block type');
      blockTypes.push(type);
      o += type === 1 ? 1 : size;
      if ((h & 1) === 1) break;
    }
    if (checksum) o += 4;
    assert.ok(o <= stream.length, 'frame runs past the end');
    out.push({ contentSize, blockTypes, checksum });
  }
  return out;
}

const BS = 64 * 1024;
const cases = blockCases(BS);

describe('zstdParallel', () => {
  for (const [name, data] of cases) {
    it(`round-trips ${name} through zstd -dc and our decoder`, async (t) => {
      const out = await zst(data, { blockSize: BS });
      assert.ok((await unzst(out)).equals(data), 'our decoder differs');
      if (requireTool(t, 'zstd', 'zstd')) {
        assert.ok(run('zstd', ['-dc'], out).equals(data), 'zstd -dc output differs');
        run('zstd', ['-t'], out);
      }
    });
  }

  it('writes one checksummed frame per entropy run of each block, never across blocks; random runs as raw blocks', async () => {
    const data = Buffer.concat([textBytes(11, 100_000), prngBytes(12, 150_000), textBytes(13, 30_000), prngBytes(14, 9000), textBytes(15, 70_001)]);
    const out = await zst(data, { blockSize: BS }, [777, 65536]);
    const got = frames(out);
    const want: [number, boolean][] = [];
    for (let s = 0; s < data.length; s += BS) {
      for (const [a, b, inc] of classify(data.subarray(s, s + BS))) want.push([b - a, inc]);
    }
    assert.ok(want.some(([, inc]) => inc) && want.some(([, inc]) => !inc), 'the sample has both kinds of run');
    assert.deepEqual(got.map((f) => f.contentSize), want.map(([n]) => n));
    for (const [i, f] of got.entries()) {
      assert.ok(f.checksum, `frame ${i} has a content checksum`);
      if (want[i]![1]) assert.deepEqual(new Set(f.blockTypes), new Set([0]), `incompressible frame ${i} is raw blocks only`);
      else assert.ok(f.blockTypes.includes(2), `compressible frame ${i} has a compressed block`);
    }
  });

  it('an empty input is one empty frame', async () => {
    const out = await zst(Buffer.alloc(0));
    assert.deepEqual(frames(out).map((f) => f.contentSize), [0]);
  });

  it('is deterministic across chunkings and worker counts, and depends on level and block size', async () => {
    const data = Buffer.concat([textBytes(16, 300_000), prngBytes(17, 100_000), textBytes(18, 50_000)]);
    const a = await zst(data, { blockSize: BS, workers: 1 }, [1000]);
    const b = await zst(data, { blockSize: BS, workers: 4 }, [7, 65536, 333]);
    const c = await zst(data, { blockSize: BS, workers: 2 }, [1 << 20]);
    assert.ok(a.equals(b) && b.equals(c));
    assert.ok(!(await zst(data, { blockSize: BS, level: 5 })).equals(a));
    assert.ok(!(await zst(data, { blockSize: 2 * BS })).equals(a));
  });

  it('round-trips arbitrary data, chunkings, levels and block sizes (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 150_000 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 5 }),
        fc.constantFrom(-3, 1, 2, 3, 9),
        fc.constantFrom(64 * 1024, 70_000, 128 * 1024),
        async (arr, sizes, level, blockSize) => {
          const data = Buffer.from(arr);
          const out = await zst(data, { level, blockSize, workers: 3 }, sizes);
          assert.ok((await unzst(out)).equals(data));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('random data grows only by frame and block headers', async () => {
    const data = prngBytes(19, 1 << 20);
    const blockSize = 256 * 1024;
    const out = await zst(data, { blockSize });
    // per block one frame: ≤ 14 header bytes, 3 per 128 KiB block, 4 of checksum
    const blocks = data.length / blockSize;
    assert.ok(out.length <= data.length + blocks * (14 + 3 * 2 + 4), `got ${out.length}`);
    assert.deepEqual(frames(out).map((f) => f.contentSize), new Array<number>(blocks).fill(blockSize));
  });

  it('is no bigger than our gzip on mixed text and random data', async () => {
    const data = Buffer.concat([textBytes(20, 500_000), prngBytes(21, 200_000), textBytes(22, 300_000), prngBytes(23, 5000), textBytes(24, 100_000)]);
    const z = await zst(data);
    const g = await through(gzipParallel(), data);
    assert.ok(z.length <= g.length, `zstd ${z.length} vs gzip ${g.length}`);
  });

  it('rejects bad options', async () => {
    await assert.rejects(zstdParallel({ level: 0 }), InvalidLayerOptionError);
    await assert.rejects(zstdParallel({ level: 23 }), InvalidLayerOptionError);
    await assert.rejects(zstdParallel({ blockSize: 1000 }), InvalidLayerOptionError);
    await assert.rejects(zstdParallel({ workers: 0 }), InvalidLayerOptionError);
  });

  it('propagates an upstream error', async () => {
    const src = new Readable({ read() { this.destroy(new Error('boom')); } });
    await assert.rejects(pipeline(src, await zstdParallel(), async (s: AsyncIterable<Buffer>) => { await buffer(s); }), /boom/);
  });
});
