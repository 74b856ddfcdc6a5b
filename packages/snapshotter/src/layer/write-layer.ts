import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ContentInfo, ContentWriter, Digest } from '../content/index.js';
import { InvalidLayerOptionError } from './errors.js';
import { gzipParallel } from './gzip-parallel.js';
import { MediaTypes, type Compression, type LayerDescriptor } from './types.js';
import { zstdParallel } from './zstd.js';
import { crashPoint } from '../crash-point.js';

/** The part of the content store that writeLayer needs (ContentStore satisfies it). */
export interface LayerIngester {
  writer(opts?: { ref?: string }): Promise<ContentWriter>;
}

/** Options of {@link writeLayer}. */
export interface WriteLayerOptions {
  /** Default 'gzip'. */
  compression?: Compression;
  /** gzip 0-9 (default 2), zstd -7..22 except 0 (default 1), see README; ignored for 'uncompressed'. */
  level?: number;
  /** Aborts the pass; the ingest is dropped and nothing is committed. */
  signal?: AbortSignal;
}

/** Hashes and counts what passes through. */
class HashTap extends Transform {
  readonly hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
}

async function makeCompressor(compression: Compression, level: number | undefined): Promise<Transform | undefined> {
  switch (compression) {
    case 'gzip':
      return gzipParallel(level === undefined ? {} : { level });
    case 'zstd':
      return zstdParallel(level === undefined ? {} : { level });
    case 'uncompressed':
      return undefined;
    default: {
      const never: never = compression;
      throw new InvalidLayerOptionError('compression', "'gzip', 'zstd' or 'uncompressed'", never);
    }
  }
}

const MEDIA_TYPE: Record<Compression, string> = {
  gzip: MediaTypes.layerGzip,
  zstd: MediaTypes.layerZstd,
  uncompressed: MediaTypes.layer,
};

/**
 * Streams a layer tar into the content store in one pass: the diffID (sha256 of the
 * tar) and the compression are computed while the blob is written to an ingest; the
 * store hashes the blob as it writes it (that is the blob digest, and for an
 * uncompressed layer also the diffID), and the commit checks the size.
 * Memory stays bounded: every stage is backpressured.
 * On any failure or abort the ingest is dropped and the error is rethrown.
 */
export async function writeLayer(tar: Readable, store: LayerIngester, opts: WriteLayerOptions = {}): Promise<LayerDescriptor> {
  const compression = opts.compression ?? 'gzip';
  const compressor = await makeCompressor(compression, opts.level);
  opts.signal?.throwIfAborted();
  const writer = await store.writer();
  let info: ContentInfo;
  let diffId: Digest;
  let uncompressedSize: number;
  let blobSize = 0;
  // a failed write (ENOSPC, EIO) must be what the caller sees, not the AbortError with
  // which leaving the loop destroys the upstream streams
  let writeError: unknown;
  try {
    const sink = async (source: AsyncIterable<Buffer>): Promise<void> => {
      for await (const chunk of source) {
        blobSize += chunk.length;
        try {
          await writer.write(chunk);
        } catch (err) {
          writeError = err;
          throw err;
        }
        crashPoint('layer-write');
      }
    };
    const popts = opts.signal === undefined ? {} : { signal: opts.signal };
    // The blob digest is the store's own: it hashes every byte it writes (one sha256
    // pass over the blob instead of two; measured ≈0.3 s per 200 MB here).
    if (compressor === undefined) {
      await pipeline(tar, sink, popts);
      info = await writer.commit({ size: blobSize });
      diffId = info.digest;
      uncompressedSize = blobSize;
    } else {
      const diff = new HashTap();
      await pipeline(tar, diff, compressor, sink, popts);
      diffId = `sha256:${diff.hash.digest('hex')}`;
      uncompressedSize = diff.size;
      info = await writer.commit({ size: blobSize });
    }
  } catch (err) {
    await writer.abort();
    throw writeError ?? err;
  }
  return { mediaType: MEDIA_TYPE[compression], digest: info.digest, size: info.size, diffId, uncompressedSize };
}
