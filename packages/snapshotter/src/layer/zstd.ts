/**
 * zstd through zstd-napi: the parallel compressor (frames per block run, compressed on the
 * worker pool; see zstd-block.ts) and the stream decoder. zstd-napi is loaded lazily, so
 * gzip and plain layers keep working where the native build is missing.
 */
import { availableParallelism } from 'node:os';
import type { Transform } from 'node:stream';
import { compressOnPool } from './block-pool.js';
import { checkIntOption, InvalidLayerOptionError } from './errors.js';
import { ParallelBlockTransform } from './parallel-blocks.js';
import { zstdFrame } from './zstd-block.js';

/**
 * Default zstd level for layers (of the compressible runs). See packages/snapshotter/README.md
 * ("Layer pipeline") for the measurements behind the choice.
 */
export const DEFAULT_ZSTD_LEVEL = 1;
const DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024;

/** Options of {@link zstdParallel}. */
export interface ZstdParallelOptions {
  /** zstd level -7..22 except 0 (default {@link DEFAULT_ZSTD_LEVEL}). */
  level?: number;
  /** Bytes of input per block, 64 KiB to 64 MiB (default 4 MiB); no frame spans two blocks. */
  blockSize?: number;
  /** Blocks compressed at the same time (default: the number of CPUs). */
  workers?: number;
}

class ZstdParallelTransform extends ParallelBlockTransform {
  protected override compress(block: Buffer, final: boolean): Promise<Buffer> {
    if (block.length === 0) {
      // an empty input is one empty frame: a zstd stream has at least one frame
      return Promise.resolve(final && this.inputBytes === 0 ? zstdFrame(block, this.level) : Buffer.alloc(0));
    }
    return compressOnPool(this.workers, { kind: 'zstd', block, level: this.level });
  }
}

/**
 * A Transform that compresses its input into a zstd stream (RFC 8878): blocks of
 * `blockSize` bytes compressed on the worker pool, each block's entropy-test runs as
 * separate frames (compressible runs at `level`, random-looking runs as near-free raw
 * frames), concatenated in input order. Decodable by `zstd -d`, libzstd and Go's
 * klauspost/compress (containerd); byte-for-byte deterministic for a given input, `level`
 * and `blockSize`. Rejects (asynchronously) where zstd-napi's native module is missing.
 */
export async function zstdParallel(opts: ZstdParallelOptions = {}): Promise<Transform> {
  const level = opts.level ?? DEFAULT_ZSTD_LEVEL;
  if (!Number.isInteger(level) || level < -7 || level > 22 || level === 0) {
    throw new InvalidLayerOptionError('level', 'a zstd level from -7 to 22, not 0', level);
  }
  const blockSize = checkIntOption('blockSize', opts.blockSize ?? DEFAULT_BLOCK_SIZE, 64 * 1024, 64 * 1024 * 1024);
  const workers = checkIntOption('workers', opts.workers ?? availableParallelism(), 1, 256);
  await loadZstd();
  return new ZstdParallelTransform(level, blockSize, workers);
}

type ZstdModule = typeof import('zstd-napi');
let loaded: Promise<ZstdModule> | undefined;

function loadZstd(): Promise<ZstdModule> {
  loaded ??= import('zstd-napi');
  return loaded;
}

/** A zstd decompressing Transform (all frames of the input, concatenated). */
export async function zstdDecompressStream(): Promise<Transform> {
  const { DecompressStream } = await loadZstd();
  return new DecompressStream();
}
