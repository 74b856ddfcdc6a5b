import type { Digest } from '../content/index.js';

/** How a layer blob is compressed. */
export type Compression = 'gzip' | 'zstd' | 'uncompressed';

/** OCI layer media types written by {@link writeLayer}. */
export const MediaTypes: {
  readonly layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip';
  readonly layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd';
  readonly layer: 'application/vnd.oci.image.layer.v1.tar';
} = {
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

/** A layer blob in the content store: its descriptor fields plus the diffID for the image config. */
export interface LayerDescriptor {
  /** One of {@link MediaTypes}. */
  mediaType: string;
  /** sha256 of the blob as stored (compressed bytes). */
  digest: Digest;
  /** Size of the blob in bytes. */
  size: number;
  /** sha256 of the uncompressed tar (goes into the image config's `rootfs.diff_ids`). */
  diffId: Digest;
  /** Size of the uncompressed tar in bytes. */
  uncompressedSize: number;
}
