/**
 * zstd through zstd-napi (libzstd built with ZSTD_MULTITHREAD). The binding is loaded
 * lazily so gzip and plain layers keep working where the native build is missing.
 */
import { availableParallelism } from 'node:os';
import type { Transform } from 'node:stream';
import { InvalidLayerOptionError } from './errors.js';

/** Default zstd level for layers (libzstd's own default). */
export const DEFAULT_ZSTD_LEVEL = 3;

type ZstdModule = typeof import('zstd-napi');
let loaded: Promise<ZstdModule> | undefined;

function loadZstd(): Promise<ZstdModule> {
  loaded ??= import('zstd-napi');
  return loaded;
}

/**
 * A zstd compressing Transform. With `workers` >= 1 libzstd compresses in its own
 * threads (jobs of a few MiB); the output is the same for any `workers` >= 1.
 */
export async function zstdCompressStream(opts: { level?: number; workers?: number } = {}): Promise<Transform> {
  const level = opts.level ?? DEFAULT_ZSTD_LEVEL;
  if (!Number.isInteger(level) || level < -7 || level > 22 || level === 0) {
    throw new InvalidLayerOptionError('level', 'a zstd level from -7 to 22, not 0', level);
  }
  const workers = opts.workers ?? availableParallelism();
  if (!Number.isInteger(workers) || workers < 1 || workers > 200) {
    throw new InvalidLayerOptionError('workers', 'an integer from 1 to 200', workers);
  }
  const { CompressStream } = await loadZstd();
  return new CompressStream({ compressionLevel: level, nbWorkers: workers, checksumFlag: true });
}

/** A zstd decompressing Transform (all frames of the input, concatenated). */
export async function zstdDecompressStream(): Promise<Transform> {
  const { DecompressStream } = await loadZstd();
  return new DecompressStream();
}
