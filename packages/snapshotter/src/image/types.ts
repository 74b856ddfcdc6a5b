import type { Digest } from '../content/digest.js';

/** An OCI platform (os/architecture[/variant]). */
export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
}

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
}

/** HEALTHCHECK settings as stored in an image config (durations in nanoseconds). */
export interface HealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** The `config` member of an image config: how to run a container of the image. */
export interface ImageRuntimeConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  Healthcheck?: HealthConfig;
  Shell?: string[];
  OnBuild?: string[] | null;
  ArgsEscaped?: boolean;
}

/** One build step of an image's history. */
export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** An OCI (or Docker) image config file. */
export interface ImageConfigFile {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  config: ImageRuntimeConfig;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: HistoryEntry[];
}

/** An OCI image manifest (Docker schema2 manifests have the same shape). */
export interface Manifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** An image whose manifest, config and layers are in a content store. */
export interface StoredImage {
  manifestDigest: Digest;
  manifestSize: number;
  manifest: Manifest;
  config: ImageConfigFile;
  configDigest: Digest;
  /** config + layer blob sizes + manifest */
  size: number;
}

/** A layer blob already in the content store, with the digest of its uncompressed tar. */
export interface LayerRef {
  mediaType: string;
  digest: Digest;
  size: number;
  diffId: Digest;
}

/** Media types this package reads and writes. */
export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

export const MANIFEST_TYPES: ReadonlySet<string> = new Set([MediaTypes.ociManifest, MediaTypes.dockerManifest]);
export const INDEX_TYPES: ReadonlySet<string> = new Set([MediaTypes.ociIndex, MediaTypes.dockerManifestList]);
export const CONFIG_TYPES: ReadonlySet<string> = new Set([MediaTypes.ociConfig, MediaTypes.dockerConfig]);
export const LAYER_TYPES: ReadonlySet<string> = new Set([
  MediaTypes.ociLayer,
  MediaTypes.ociLayerGzip,
  MediaTypes.ociLayerZstd,
  MediaTypes.dockerLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  MediaTypes.dockerForeignLayerGzip,
]);

/** Manifests, indexes and configs larger than this are refused before parsing (as containers/image does). */
export const MAX_JSON_SIZE = 4 * 1024 * 1024;

/** Annotation holding an image name in an OCI layout index. */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** Annotation containerd and Docker 25+ use for the full image name. */
export const CONTAINERD_NAME_ANNOTATION = 'io.containerd.image.name';
/** Annotation with the time an image was tagged in our store. */
export const CREATED_ANNOTATION = 'io.tsbuild.created';
