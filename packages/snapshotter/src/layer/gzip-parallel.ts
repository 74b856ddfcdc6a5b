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
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { InvalidLayerOptionError } from './errors.js';
import { compressOnPool } from './gzip-pool.js';

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

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidLayerOptionError(name, `an integer from ${min} to ${max}`, v);
  return v;
}

class GzipParallelTransform extends Transform {
  readonly #level: number;
  readonly #blockSize: number;
  readonly #workers: number;
  #block: Buffer;
  #fill = 0;
  #prev: Uint8Array = new Uint8Array(0);
  #crc = 0;
  #total = 0;
  #headerSent = false;
  readonly #queue: Promise<Buffer>[] = [];

  constructor(level: number, blockSize: number, workers: number) {
    super({ highWaterMark: blockSize, readableHighWaterMark: blockSize });
    this.#level = level;
    this.#blockSize = blockSize;
    this.#workers = workers;
    this.#block = Buffer.allocUnsafeSlow(blockSize);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#feed(chunk).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.#finish().then(() => cb(), cb);
  }

  async #feed(chunk: Buffer): Promise<void> {
    this.#crc = zlib.crc32(chunk, this.#crc);
    this.#total += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(this.#blockSize - this.#fill, chunk.length - off);
      chunk.copy(this.#block, this.#fill, off, off + n);
      this.#fill += n;
      off += n;
      if (this.#fill === this.#blockSize) {
        const block = this.#block;
        this.#block = Buffer.allocUnsafeSlow(this.#blockSize);
        this.#fill = 0;
        this.#dispatch(block, false);
        while (this.#queue.length >= this.#workers) this.#emit(await this.#queue.shift()!);
      }
    }
  }

  #dispatch(block: Buffer, final: boolean): void {
    const prev = this.#prev;
    // copied before `block` is transferred to a worker
    if (!final) this.#prev = new Uint8Array(block.subarray(block.length - DICT_SIZE));
    const job = compressOnPool(this.#workers, block, prev, this.#level, final);
    // Awaited later, in order; this keeps a failure from being reported as unhandled meanwhile.
    job.catch(() => undefined);
    this.#queue.push(job);
  }

  #emit(piece: Buffer): void {
    if (!this.#headerSent) {
      this.#headerSent = true;
      this.push(gzipHeader(this.#level));
    }
    if (piece.length > 0) this.push(piece);
  }

  async #finish(): Promise<void> {
    this.#dispatch(this.#block.subarray(0, this.#fill), true);
    while (this.#queue.length > 0) this.#emit(await this.#queue.shift()!);
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(this.#crc >>> 0, 0);
    trailer.writeUInt32LE(this.#total % 0x100000000, 4);
    this.push(trailer);
  }
}

/**
 * A Transform that gzips its input into one standard gzip member (RFC 1952), compressing
 * blocks in parallel on libuv's threadpool. Decodable by gzip(1), pigz and Go's
 * compress/gzip; byte-for-byte deterministic for a given input, `level` and `blockSize`.
 */
export function gzipParallel(opts: GzipParallelOptions = {}): Transform {
  const level = checkInt('level', opts.level ?? DEFAULT_GZIP_LEVEL, 0, 9);
  const blockSize = checkInt('blockSize', opts.blockSize ?? DEFAULT_BLOCK_SIZE, DICT_SIZE, 64 * 1024 * 1024);
  const workers = checkInt('workers', opts.workers ?? availableParallelism(), 1, 256);
  return new GzipParallelTransform(level, blockSize, workers);
}
