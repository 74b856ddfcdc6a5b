/**
 * Parallel gzip in the style of pigz: the input is cut into fixed-size blocks at fixed
 * byte offsets; each block is compressed on a pool of worker threads (see gzip-block.ts:
 * raw deflate primed with the previous 32 KiB as preset dictionary, sync-flushed so it
 * ends byte-aligned; random-looking 4 KiB segments stored without running deflate), and
 * the pieces are concatenated, in order, into ONE gzip member whose CRC-32 and ISIZE are
 * computed over the input on the calling thread (zlib.crc32).
 *
 * Output depends only on the input bytes, `level` and `blockSize` (never on timing, chunk
 * boundaries of the input, or `workers`): block cuts, dictionaries and the stored/deflate
 * choice are functions of the bytes only. At most `workers` blocks are in flight, so
 * memory is bounded and upstream is backpressured.
 */
import { availableParallelism } from 'node:os';
import type { Transform } from 'node:stream';
import { nodeZlib } from '../util/lazy-node.js';
import { checkIntOption } from './errors.js';
import { compressOnPool } from './block-pool.js';
import { ParallelBlockTransform } from './parallel-blocks.js';

/** Options of {@link gzipParallel}. */
export interface GzipParallelOptions {
  /** zlib level 0-9 (default {@link DEFAULT_GZIP_LEVEL}). */
  level?: number;
  /** Bytes of input per independently compressed block, 32 KiB to 64 MiB (default 1 MiB). */
  blockSize?: number;
  /** Blocks compressed at the same time (default: the number of CPUs). */
  workers?: number;
}

/**
 * Default gzip level for layers. See packages/snapshotter/README.md ("Layer pipeline")
 * for the measurements behind the choice.
 */
export const DEFAULT_GZIP_LEVEL = 2;
const DEFAULT_BLOCK_SIZE = 1024 * 1024;
const DICT_SIZE = 32 * 1024;
/** gzip header: magic, CM=deflate, no flags, MTIME=0; XFL and OS patched per level. */
const OS_UNKNOWN = 255;

function gzipHeader(level: number): Buffer {
  // XFL: 2 = maximum compression, 4 = fastest, as gzip(1) and Go's compress/gzip write it.
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, xfl, OS_UNKNOWN]);
}

class GzipParallelTransform extends ParallelBlockTransform {
  #prev: Uint8Array = new Uint8Array(0);
  #crc = 0;

  protected override onInput(chunk: Buffer): void {
    this.#crc = nodeZlib().crc32(chunk, this.#crc);
  }

  protected override compress(block: Buffer, final: boolean): Promise<Buffer> {
    const prev = this.#prev;
    // copied before `block` is transferred to a worker
    if (!final) this.#prev = new Uint8Array(block.subarray(block.length - DICT_SIZE));
    return compressOnPool(this.workers, { kind: 'gzip', block, prev, level: this.level, final });
  }

  protected override header(): Buffer {
    return gzipHeader(this.level);
  }

  protected override trailer(): Buffer {
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(this.#crc >>> 0, 0);
    trailer.writeUInt32LE(this.inputBytes % 0x100000000, 4);
    return trailer;
  }
}

/**
 * A Transform that gzips its input into one standard gzip member (RFC 1952), compressing
 * blocks in parallel on the worker pool (block-pool.ts). Decodable by gzip(1), pigz and Go's
 * compress/gzip; byte-for-byte deterministic for a given input, `level` and `blockSize`.
 */
export function gzipParallel(opts: GzipParallelOptions = {}): Transform {
  const level = checkIntOption('level', opts.level ?? DEFAULT_GZIP_LEVEL, 0, 9);
  const blockSize = checkIntOption('blockSize', opts.blockSize ?? DEFAULT_BLOCK_SIZE, DICT_SIZE, 64 * 1024 * 1024);
  const workers = checkIntOption('workers', opts.workers ?? availableParallelism(), 1, 256);
  return new GzipParallelTransform(level, blockSize, workers);
}
