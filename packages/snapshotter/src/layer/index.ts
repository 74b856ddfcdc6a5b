/** Layer pipeline: tar → diffID + gzip/zstd → content store, and back. */
export { MediaTypes, type Compression, type LayerDescriptor } from './types.js';
export { writeLayer, type WriteLayerOptions, type LayerIngester } from './write-layer.js';
export { openLayerStream, sniffCompression, LAYER_MEDIA_TYPES, type LayerProvider } from './open-layer-stream.js';
export { gzipParallel, DEFAULT_GZIP_LEVEL, type GzipParallelOptions } from './gzip-parallel.js';
export { zstdParallel, DEFAULT_ZSTD_LEVEL, type ZstdParallelOptions } from './zstd.js';
export { InvalidLayerOptionError, UnsupportedLayerMediaTypeError, CorruptLayerError } from './errors.js';
