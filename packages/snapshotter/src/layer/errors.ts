/**
 * Errors of the layer pipeline (src/layer). They extend the package's
 * {@link SnapshotterError} so callers can branch on `code` across the package.
 */
import { SnapshotterError } from '../errors.js';

/** An option of writeLayer / gzipParallel is out of range. */
export class InvalidLayerOptionError extends SnapshotterError {
  override name = 'InvalidLayerOptionError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly option: string, readonly expected: string, readonly found: unknown) {
    super(`invalid layer option ${option}: expected ${expected}, found ${JSON.stringify(found)}`);
  }
}

/** A descriptor handed to openLayerStream does not name a layer media type. */
export class UnsupportedLayerMediaTypeError extends SnapshotterError {
  override name = 'UnsupportedLayerMediaTypeError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly mediaType: string) {
    super(`unsupported layer media type: expected an OCI or Docker layer tar (plain, +gzip or +zstd), found ${JSON.stringify(mediaType)}`);
  }
}

/** A stored layer blob failed to decompress (truncated, corrupt, bad checksum). */
export class CorruptLayerError extends SnapshotterError {
  override name = 'CorruptLayerError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly digest: string, readonly compression: 'gzip' | 'zstd', readonly detail: string, options?: ErrorOptions) {
    super(`corrupt layer ${digest}: expected a complete ${compression} stream, found ${detail}`, options);
  }
}

/** `v` when it is an integer in [min, max]; else throws {@link InvalidLayerOptionError} naming `name`. */
export function checkIntOption(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidLayerOptionError(name, `an integer from ${min} to ${max}`, v);
  return v;
}
