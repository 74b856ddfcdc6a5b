/**
 * Compression of one block of a parallel gzip stream (runs inside a gzip worker).
 *
 * The block is cut into runs by the entropy test of entropy.ts (4 KiB segments; random or
 * already compressed bytes are "incompressible"). Incompressible runs become deflate
 * stored blocks (a copy, no compressor); the other runs are raw-deflated (the block's
 * first run with the 32 KiB of input before the block as preset dictionary) and ended with
 * a sync flush (Z_FINISH for the very last run of the stream), so every piece ends
 * byte-aligned and the pieces concatenate into one deflate stream. A deflated run that
 * came out larger than its stored form is stored instead. Everything depends on the
 * block's bytes, the 32 KiB before it and the level only: the output is deterministic.
 */
import zlib from 'node:zlib';
import { classify, type Run } from './entropy.js';

const DICT_SIZE = 32 * 1024;
const MAX_STORED = 65535;
const EMPTY_FINAL_BLOCK = [0x03, 0x00];

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
  const runs = level === 0 ? [[0, block.length, true] as Run] : classify(block);
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
