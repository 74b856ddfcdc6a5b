/**
 * Parallel gzip in the style of pigz: the input is cut into fixed-size blocks at fixed
 * byte offsets; each block is deflated independently (raw deflate, primed with the last
 * 32 KiB of the previous block as a preset dictionary, ended with a sync flush so it is
 * byte-aligned), and the pieces are concatenated, in order, into ONE gzip member with a
 * CRC-32 and ISIZE computed over the input. The deflate calls run on libuv's threadpool
 * through node:zlib's async API, `workers` at a time.
 *
 * Output depends only on the input bytes, `level` and `blockSize` (never on timing, chunk
 * boundaries of the input, or `workers`): the block cuts and the dictionaries are
 * functions of byte offsets only.
 *
 * Blocks that look incompressible (every sampled window has an order-0 entropy above
 * 7.8 bits/byte) are written as deflate stored blocks without running the compressor;
 * any block whose deflated form is larger than its stored form is stored as well.
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { InvalidLayerOptionError } from './errors.js';

/** Options of {@link gzipParallel}. */
export interface GzipParallelOptions {
  /** zlib level 0-9 (default {@link DEFAULT_GZIP_LEVEL}). */
  level?: number;
  /** Bytes of input per independently compressed block, 32 KiB to 64 MiB (default 256 KiB). */
  blockSize?: number;
  /** Blocks compressed at the same time (default: the number of CPUs). */
  workers?: number;
}

/**
 * Default gzip level for layers. See packages/snapshotter/README.md ("Layer pipeline")
 * for the measurements behind the choice.
 */
export const DEFAULT_GZIP_LEVEL = 4;
const DEFAULT_BLOCK_SIZE = 256 * 1024;
const DICT_SIZE = 32 * 1024;
const MAX_STORED = 65535;
/** gzip header: magic, CM=deflate, no flags, MTIME=0; XFL and OS patched per level. */
const OS_UNKNOWN = 255;
const EMPTY_FINAL_BLOCK = Buffer.from([0x03, 0x00]);

const SAMPLE_COUNT = 8;
const SAMPLE_SIZE = 4096;
const ENTROPY_STORE_THRESHOLD = 7.8;

function gzipHeader(level: number): Buffer {
  // XFL: 2 = maximum compression, 4 = fastest, as gzip(1) and Go's compress/gzip write it.
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, xfl, OS_UNKNOWN]);
}

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidLayerOptionError(name, `an integer from ${min} to ${max}`, v);
  return v;
}

/** Order-0 entropy in bits per byte of `buf[start, end)`. */
function entropy(buf: Uint8Array, start: number, end: number, hist: Uint32Array): number {
  hist.fill(0);
  for (let i = start; i < end; i++) hist[buf[i]!]!++;
  const n = end - start;
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

/** True when every sampled window of `block` looks like random bytes. */
export function looksIncompressible(block: Uint8Array): boolean {
  if (block.length < SAMPLE_COUNT * SAMPLE_SIZE) return false;
  const hist = new Uint32Array(256);
  const stride = Math.floor((block.length - SAMPLE_SIZE) / (SAMPLE_COUNT - 1));
  for (let k = 0; k < SAMPLE_COUNT; k++) {
    const start = k * stride;
    if (entropy(block, start, start + SAMPLE_SIZE, hist) < ENTROPY_STORE_THRESHOLD) return false;
  }
  return true;
}

/** Size of `n` bytes as deflate stored blocks. */
function storedSize(n: number): number {
  return n + 5 * Math.max(1, Math.ceil(n / MAX_STORED));
}

/** `data` as deflate stored blocks (byte-aligned input position assumed). */
function storedBlocks(data: Uint8Array, final: boolean): Buffer {
  if (data.length === 0) return final ? EMPTY_FINAL_BLOCK : Buffer.alloc(0);
  const out = Buffer.allocUnsafe(storedSize(data.length));
  let o = 0;
  for (let i = 0; i < data.length; i += MAX_STORED) {
    const len = Math.min(MAX_STORED, data.length - i);
    out[o] = final && i + len === data.length ? 1 : 0;
    out.writeUInt16LE(len, o + 1);
    out.writeUInt16LE(~len & 0xffff, o + 3);
    out.set(data.subarray(i, i + len), o + 5);
    o += 5 + len;
  }
  return out;
}

function deflateRawAsync(data: Uint8Array, opts: zlib.ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zlib.deflateRaw(data, opts, (err, out) => (err ? reject(err) : resolve(out)));
  });
}

/** Deflates one block; the result is byte-aligned and, unless `final`, not the last deflate block. */
async function compressBlock(block: Uint8Array, dict: Uint8Array | undefined, level: number, final: boolean): Promise<Buffer> {
  if (block.length === 0) return final ? EMPTY_FINAL_BLOCK : Buffer.alloc(0);
  if (level === 0 || looksIncompressible(block)) return storedBlocks(block, final);
  const out = await deflateRawAsync(block, {
    level,
    ...(dict !== undefined ? { dictionary: dict } : {}),
    finishFlush: final ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
    // one output chunk per block: deflate never grows data by more than ~0.1% + 5 bytes/16 KiB
    chunkSize: Math.max(64 * 1024, block.length + (block.length >> 6) + 1024),
  });
  return out.length > storedSize(block.length) ? storedBlocks(block, final) : out;
}

class GzipParallelTransform extends Transform {
  readonly #level: number;
  readonly #blockSize: number;
  readonly #workers: number;
  #block: Buffer;
  #fill = 0;
  #dict: Uint8Array | undefined;
  #crc = 0;
  #total = 0;
  #headerSent = false;
  readonly #queue: Promise<Buffer>[] = [];

  constructor(level: number, blockSize: number, workers: number) {
    super({ highWaterMark: blockSize, readableHighWaterMark: blockSize });
    this.#level = level;
    this.#blockSize = blockSize;
    this.#workers = workers;
    this.#block = Buffer.allocUnsafe(blockSize);
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
        this.#block = Buffer.allocUnsafe(this.#blockSize);
        this.#fill = 0;
        this.#dispatch(block, false);
        while (this.#queue.length >= this.#workers) this.#emit(await this.#queue.shift()!);
      }
    }
  }

  #dispatch(block: Buffer, final: boolean): void {
    const job = compressBlock(block, this.#dict, this.#level, final);
    // Awaited later, in order; this keeps a failure from being reported as unhandled meanwhile.
    job.catch(() => undefined);
    this.#queue.push(job);
    if (!final) this.#dict = block.subarray(block.length - DICT_SIZE);
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
