/**
 * Error classes of @tsbuild/snapshotter. Every class carries a `code` taken from
 * containerd's errdefs categories; branch on `instanceof` or `code`, never on text.
 */

/** Error categories shared by every tsbuild package (containerd errdefs). */
export type ErrorCode = 'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'INTERNAL';

/** Base class of every error thrown by @tsbuild/snapshotter. */
export abstract class SnapshotterError extends Error {
  abstract readonly code: ErrorCode;
}

// ---------------------------------------------------------------------------
// Content store and images (src/content, src/image)
// ---------------------------------------------------------------------------

/** A string is not a valid `sha256:<64 lower-case hex>` digest. */
export class InvalidDigestError extends SnapshotterError {
  override name = 'InvalidDigestError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly input: string) {
    super(`invalid digest: expected "sha256:" followed by 64 lower-case hex characters, found ${JSON.stringify(input.slice(0, 100))}`);
  }
}

/** Content did not hash to the digest the caller expected. Nothing was stored. */
export class DigestMismatchError extends SnapshotterError {
  override name = 'DigestMismatchError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly expected: string, readonly actual: string, options?: ErrorOptions) {
    super(`unexpected commit digest: expected ${expected}, found ${actual}`, options);
  }
}

/** Content did not have the size the caller expected. Nothing was stored. */
export class SizeMismatchError extends SnapshotterError {
  override name = 'SizeMismatchError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly expected: number, readonly actual: number, options?: ErrorOptions) {
    super(`unexpected commit size: expected ${expected} bytes, found ${actual}`, options);
  }
}

/** No blob with this digest is in the content store. */
export class BlobNotFoundError extends SnapshotterError {
  override name = 'BlobNotFoundError';
  readonly code = 'NOT_FOUND' as const;
  constructor(readonly digest: string, options?: ErrorOptions) {
    super(`blob ${digest} not found in the content store`, options);
  }
}

/** Another live writer holds the ingest ref. */
export class IngestLockedError extends SnapshotterError {
  override name = 'IngestLockedError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly ref: string, readonly ownerPid: number | undefined) {
    super(`ingest ref ${JSON.stringify(ref)} is locked: expected no active writer, found one${ownerPid === undefined ? '' : ` (pid ${ownerPid})`}`);
  }
}

/** A writer was used after commit or abort. */
export class WriterClosedError extends SnapshotterError {
  override name = 'WriterClosedError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly ref: string, readonly state: 'committed' | 'aborted') {
    super(`content writer ${JSON.stringify(ref)} is closed: expected an open writer, found one already ${state}`);
  }
}
