import type { Digest } from '../content/digest.js';

/** One progress event of a blob transfer (bytes, so a CLI can show throughput). */
export interface TransferProgress {
  /** Digest of the blob (config, layer or manifest). */
  id: Digest;
  /**
   * `pull`/`push`: bytes moving (`current` of `total`); `exists`: already present
   * (locally on pull, in the registry on push); `mounted`: cross-repository mount.
   */
  action: 'pull' | 'push' | 'exists' | 'mounted';
  current: number;
  total: number;
}

/** Options of {@link RegistryClient}. */
export interface RegistryOptions {
  /**
   * Registries (`host[:port]`) spoken to over plain HTTP. `localhost`, 127.0.0.0/8 and
   * `::1` always are.
   */
  insecureRegistries?: readonly string[];
  /** Directory holding `config.json`; default `$DOCKER_CONFIG`, else `~/.docker`. */
  dockerConfigDir?: string;
  /** Blobs transferred at once (default 4). */
  concurrency?: number;
  /** Retries of a request after a transient failure (connection error, 5xx, 429); default 4. */
  retries?: number;
  /** First retry delay in ms, doubled each time (default 250; `Retry-After` wins). */
  retryDelayMs?: number;
  /** Blobs up to this size are pushed in one PUT; bigger ones in PATCH chunks (default 64 MiB). */
  monolithicPushMax?: number;
  /** PATCH chunk size for big blobs (default 32 MiB). */
  chunkSize?: number;
  onProgress?: (e: TransferProgress) => void;
  signal?: AbortSignal;
  /** Default `tsbuild/<version>`. */
  userAgent?: string;
}
