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

// ---------------------------------------------------------------------------
// Snapshots, diff, apply (src/snapshots, src/diff, src/tar, src/apply)
// ---------------------------------------------------------------------------

/** No active, view or committed snapshot has this key. */
export class SnapshotNotFoundError extends SnapshotterError {
  override name = 'SnapshotNotFoundError';
  readonly code = 'NOT_FOUND' as const;
  constructor(readonly key: string, options?: ErrorOptions) {
    super(`snapshot ${JSON.stringify(key)} not found: expected an existing snapshot key`, options);
  }
}

/** A snapshot with this key (active, view or committed) already exists. */
export class SnapshotExistsError extends SnapshotterError {
  override name = 'SnapshotExistsError';
  readonly code = 'ALREADY_EXISTS' as const;
  constructor(readonly key: string, readonly kind: string) {
    super(`snapshot ${JSON.stringify(key)} already exists: expected a new key, found a ${kind} snapshot`);
  }
}

/** The snapshot is in the wrong state for the operation (e.g. parent not committed, remove with children). */
export class SnapshotStateError extends SnapshotterError {
  override name = 'SnapshotStateError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly key: string, readonly expected: string, readonly found: string) {
    super(`snapshot ${JSON.stringify(key)}: expected ${expected}, found ${found}`);
  }
}

/** A caller-supplied argument is malformed (empty key, unknown backend, ...). */
export class SnapshotArgumentError extends SnapshotterError {
  override name = 'SnapshotArgumentError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly argument: string, readonly expected: string, readonly found: string) {
    super(`invalid ${argument}: expected ${expected}, found ${found}`);
  }
}

/** A host tool needed for the operation is missing; names the Debian package that provides it. */
export class MissingToolError extends SnapshotterError {
  override name = 'MissingToolError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly tool: string, readonly debianPackage: string) {
    super(`host tool ${tool} not found: expected it on PATH (install the Debian package "${debianPackage}")`);
  }
}

/**
 * A mount/umount/mknod/cp/getfattr/setfattr call failed. Through the native addon there
 * is no process: `exitCode` is null, `errno` names the error (`EINVAL`...) and `stderr`
 * holds its message, so callers see the same class and code either way.
 */
export class SystemCommandError extends SnapshotterError {
  override name = 'SystemCommandError';
  readonly code = 'INTERNAL' as const;
  constructor(readonly argv: readonly string[], readonly exitCode: number | null, readonly stderr: string, readonly errno?: string) {
    super(
      errno !== undefined
        ? `${argv[0]} failed: expected success, found ${errno}: ${stderr.trim().slice(0, 500)}`
        : `${argv[0]} failed: expected exit code 0, found ${exitCode ?? 'signal'}: ${stderr.trim().slice(0, 500)}`,
    );
  }
}

/**
 * A layer entry would write outside the target directory (`..`, a symlink parent that
 * leaves the root, a hardlink to a path outside) or is otherwise unsafe/invalid
 * (`.wh..`, `trusted.*` xattrs). The whole layer is refused.
 */
export class UnsafeLayerError extends SnapshotterError {
  override name = 'UnsafeLayerError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly entry: string, readonly reason: string) {
    super(`unsafe layer entry ${JSON.stringify(entry)}: ${reason}`);
  }
}

/**
 * A layer (or archive) went over a resource cap of the applier: its uncompressed size,
 * its entry count, or its expansion relative to the compressed blob (a decompression
 * bomb, catalog T29). Nothing is committed; the caps are options of applyLayer.
 */
export class LayerLimitError extends SnapshotterError {
  override name = 'LayerLimitError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly limit: 'bytes' | 'entries', readonly max: number, readonly found: number, readonly detail: string) {
    super(`layer over its ${limit === 'bytes' ? 'uncompressed size' : 'entry count'} limit: expected at most ${max} ${limit}, found ${found}${detail ? ` (${detail})` : ''}`);
  }
}

/**
 * A file name is not valid UTF-8 (say Latin-1 bytes). tsbuild handles paths as strings,
 * so it cannot keep such a name byte for byte; rather than store a changed name (or drop
 * the file), the layer, diff or context walk that met it fails. `path` shows the bytes
 * that are not UTF-8 as `\xNN`; with `symlink`, it is that symlink's target. `detail` is
 * the message without `where` (what was being read, e.g. a host directory).
 */
export class UnsupportedFileNameError extends SnapshotterError {
  override name = 'UnsupportedFileNameError';
  readonly code = 'FAILED_PRECONDITION' as const;
  readonly detail: string;
  constructor(readonly path: string, readonly where: string, readonly symlink?: string) {
    const what = symlink === undefined ? `the file name ${path}` : `the target ${path} of the symlink ${JSON.stringify(symlink)}`;
    const detail = `${what} is not valid UTF-8, which tsbuild does not support (it would change the ${symlink === undefined ? 'name' : 'target'})`;
    super(`${where}: ${detail}`);
    this.detail = detail;
  }
}

/** The tar stream is malformed (bad checksum, truncated, unsupported entry type). */
export class InvalidTarError extends SnapshotterError {
  override name = 'InvalidTarError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly offset: number, readonly reason: string) {
    super(`invalid tar at byte ${offset}: ${reason}`);
  }
}

/** An image reference does not follow Docker's reference grammar. */
export class InvalidReferenceError extends SnapshotterError {
  override name = 'InvalidReferenceError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly ref: string, readonly reason: string) {
    super(`invalid reference format ${JSON.stringify(ref.slice(0, 300))}: ${reason}`);
  }
}

/** A manifest, index or config has the wrong shape or media type (CVE-2021-41190 class included). */
export class InvalidManifestError extends SnapshotterError {
  override name = 'InvalidManifestError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly digest: string, readonly reason: string, options?: ErrorOptions) {
    super(`invalid image content ${digest}: ${reason}`, options);
  }
}

/** A JSON document is larger than the cap allowed before parsing. */
export class ContentTooLargeError extends SnapshotterError {
  override name = 'ContentTooLargeError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly what: string, readonly limit: number, readonly actual: number) {
    super(`${what} is too large: expected at most ${limit} bytes, found ${actual}`);
  }
}

/** An index has no manifest for the requested platform. */
export class NoMatchingPlatformError extends SnapshotterError {
  override name = 'NoMatchingPlatformError';
  readonly code = 'NOT_FOUND' as const;
  constructor(readonly platform: string, readonly available: readonly string[]) {
    super(`no match for platform ${platform}; available: ${available.length === 0 ? '(none)' : available.join(', ')}`);
  }
}

/** A lock file stayed held by a live process for too long. */
export class LockTimeoutError extends SnapshotterError {
  override name = 'LockTimeoutError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly path: string, readonly waitedMs: number, readonly holderPid: number | undefined) {
    super(`lock ${path} still held after ${waitedMs} ms: expected it to be released, found it held${holderPid === undefined ? '' : ` by pid ${holderPid}`}`);
  }
}

/** No image has this name or digest. */
export class ImageNotFoundError extends SnapshotterError {
  override name = 'ImageNotFoundError';
  readonly code = 'NOT_FOUND' as const;
  constructor(readonly ref: string) {
    super(`image ${JSON.stringify(ref)} not found`);
  }
}

/** A docker-archive or OCI archive is malformed or hostile. */
export class InvalidArchiveError extends SnapshotterError {
  override name = 'InvalidArchiveError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly member: string | undefined, readonly reason: string, options?: ErrorOptions) {
    super(`invalid image archive${member === undefined ? '' : ` (member ${JSON.stringify(member.slice(0, 300))})`}: ${reason}`, options);
  }
}

// ---------------------------------------------------------------------------
// Registry client (src/registry)
// ---------------------------------------------------------------------------

function statusCode(status: number): ErrorCode {
  if (status === 404) return 'NOT_FOUND';
  if (status === 401 || status === 403 || status === 409 || status === 412 || status === 416) return 'FAILED_PRECONDITION';
  if (status >= 400 && status < 500) return 'INVALID_ARGUMENT';
  return 'INTERNAL';
}

/**
 * A registry answered with an unexpected HTTP status. `registryCode` is the first
 * `errors[].code` of the distribution-spec error body (e.g. MANIFEST_UNKNOWN), if any.
 */
export class RegistryResponseError extends SnapshotterError {
  override name = 'RegistryResponseError';
  readonly code: ErrorCode;
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    readonly expected: string,
    readonly registryCode: string | undefined,
    readonly detail: string,
  ) {
    super(`${method} ${url}: expected ${expected}, found http ${status}${registryCode === undefined ? '' : ` ${registryCode}`}${detail === '' ? '' : `: ${detail.slice(0, 300)}`}`);
    this.code = statusCode(status);
  }
}

/** Authentication with a registry failed (bad credentials, unusable challenge or token). */
export class RegistryAuthError extends SnapshotterError {
  override name = 'RegistryAuthError';
  readonly code = 'FAILED_PRECONDITION' as const;
  constructor(readonly registry: string, readonly reason: string, options?: ErrorOptions) {
    super(`registry ${registry} authentication failed: ${reason}`, options);
  }
}

/**
 * A registry broke the protocol: a refused redirect (downgrade, loop, too many hops),
 * a missing or bad Location, a pushed digest the registry disagrees with.
 */
export class RegistryProtocolError extends SnapshotterError {
  override name = 'RegistryProtocolError';
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(readonly url: string, readonly reason: string) {
    super(`registry protocol error at ${url}: ${reason}`);
  }
}

/** The connection to a registry kept failing (reset, refused, timeout) after every retry. */
export class RegistryUnavailableError extends SnapshotterError {
  override name = 'RegistryUnavailableError';
  readonly code = 'INTERNAL' as const;
  constructor(readonly url: string, readonly attempts: number, options?: ErrorOptions) {
    super(`registry request ${url} failed: expected a response, found a connection error after ${attempts} attempt${attempts === 1 ? '' : 's'}${options?.cause instanceof Error ? ` (${options.cause.message})` : ''}`, options);
  }
}

/** A docker-credential-<helper> program failed or printed something that is not a credential. */
export class CredentialHelperError extends SnapshotterError {
  override name = 'CredentialHelperError';
  readonly code = 'INTERNAL' as const;
  constructor(readonly helper: string, readonly reason: string, options?: ErrorOptions) {
    super(`credential helper docker-credential-${helper} failed: ${reason}`, options);
  }
}
