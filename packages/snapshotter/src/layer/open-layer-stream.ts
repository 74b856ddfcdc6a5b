import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream';
import { nodeZlib } from '../util/lazy-node.js';
import type { Digest } from '../content/index.js';
import { SnapshotterError } from '../errors.js';
import { CorruptLayerError, UnsupportedLayerMediaTypeError } from './errors.js';
import { zstdDecompressStream } from './zstd.js';

/** The part of the content store that openLayerStream needs (ContentStore satisfies it). */
export interface LayerProvider {
  createReadStream(d: Digest): Readable;
  /**
   * Where the blob's file would be (ContentStore's layout). When given, applyLayer may
   * inflate a gzip blob from that file itself (the addon; see native-gunzip.ts) instead
   * of reading the stream; a blob that is not there (a virtual one) is read as a stream.
   */
  blobPath?(d: Digest): string;
}

/** Set on openLayerStream's stream when the provider has blobPath: what applyLayer needs to read the blob itself. */
export const LAYER_BLOB: unique symbol = Symbol('tsbuild.layerBlob');
export interface LayerBlobHint {
  path: string;
  digest: Digest;
}

/** Layer media types accepted by {@link openLayerStream} (OCI and Docker, incl. non-distributable). */
export const LAYER_MEDIA_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar.zstd',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

/** What the first bytes of a blob say it is. */
export function sniffCompression(head: Uint8Array): 'gzip' | 'zstd' | 'uncompressed' {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'uncompressed';
}

const OUT_CHUNK = 128 * 1024;

/**
 * The uncompressed tar of a layer blob. The compression is taken from the blob's magic
 * bytes (gzip, zstd, or none), as containerd and Docker do, so a media type that
 * disagrees with the bytes still decodes; a media type that is not a layer type throws
 * {@link UnsupportedLayerMediaTypeError}. A truncated or corrupt blob errors the stream
 * with {@link CorruptLayerError} (also when the tar inside looked complete).
 */
export function openLayerStream(store: LayerProvider, desc: { digest: Digest; mediaType: string }): Readable {
  if (!LAYER_MEDIA_TYPES.has(desc.mediaType)) throw new UnsupportedLayerMediaTypeError(desc.mediaType);
  const digest = desc.digest;
  async function* decompressed(): AsyncGenerator<Buffer> {
    const src = store.createReadStream(digest);
    const it: AsyncIterator<Buffer> = src[Symbol.asyncIterator]();
    let dec: Transform | undefined;
    try {
      const head: Buffer[] = [];
      let headLen = 0;
      let ended = false;
      while (headLen < 4) {
        const r = await it.next();
        if (r.done === true) {
          ended = true;
          break;
        }
        head.push(r.value);
        headLen += r.value.length;
      }
      const first = Buffer.concat(head);
      const kind = sniffCompression(first);
      if (kind === 'uncompressed') {
        if (first.length > 0) yield first;
        if (ended) return;
        for (;;) {
          const r = await it.next();
          if (r.done === true) return;
          yield r.value;
        }
      }
      dec = kind === 'gzip' ? nodeZlib().createGunzip({ chunkSize: OUT_CHUNK }) : await zstdDecompressStream();
      async function* rest(): AsyncGenerator<Buffer> {
        yield first;
        if (ended) return;
        for (;;) {
          const r = await it.next();
          if (r.done === true) return;
          yield r.value;
        }
      }
      const decoder = dec;
      pipeline(Readable.from(rest()), decoder, () => undefined);
      try {
        for await (const chunk of decoder) yield chunk as Buffer;
      } catch (err) {
        // Errors of the store (missing blob, I/O) pass through; the decoder's own mean bad bytes.
        if (err instanceof SnapshotterError || (err instanceof Error && 'syscall' in err)) throw err;
        throw new CorruptLayerError(digest, kind, err instanceof Error ? err.message : String(err), { cause: err });
      }
    } finally {
      dec?.destroy();
      src.destroy();
    }
  }
  const out = Readable.from(decompressed(), { objectMode: false, highWaterMark: OUT_CHUNK });
  if (typeof store.blobPath === 'function') {
    const hint: LayerBlobHint = { path: store.blobPath(digest), digest };
    Object.defineProperty(out, LAYER_BLOB, { value: hint });
  }
  return out;
}
