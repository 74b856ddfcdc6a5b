/** Error categories, after containerd's errdefs. */
export type ErrorCode = 'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'INTERNAL' | 'CANCELED';

/** Where in a Dockerfile an error happened. */
export interface StepLocation {
  file: string;
  line: number;
  column?: number;
}

/** A build failed for a reason the user can act on (bad input, missing file, missing image...). */
export class BuildError extends Error {
  override name = 'BuildError';
  readonly code: ErrorCode;
  location?: StepLocation;

  constructor(message: string, code: ErrorCode = 'INVALID_ARGUMENT', options?: { cause?: unknown; location?: StepLocation }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.location) this.location = options.location;
  }
}

/** A RUN step exited non-zero. Carries the exit code and the last lines of its output. */
export class ExecFailedError extends BuildError {
  override name = 'ExecFailedError';
  readonly exitCode: number;
  readonly argv: readonly string[];
  readonly lastLines: readonly string[];
  readonly step: string;

  constructor(step: string, argv: readonly string[], exitCode: number, lastLines: readonly string[], location?: StepLocation) {
    super(`process ${JSON.stringify(argv.join(' '))} did not complete successfully: exit code: ${exitCode}`, 'FAILED_PRECONDITION', location ? { location } : undefined);
    this.step = step;
    this.argv = argv;
    this.exitCode = exitCode;
    this.lastLines = lastLines;
  }
}

/** The build was cancelled (signal aborted, or another step failed first). */
export class BuildCanceledError extends BuildError {
  override name = 'BuildCanceledError';
  constructor(message = 'build canceled') {
    super(message, 'CANCELED');
  }
}

/** `cache inspect` or `cache prune` named a record that is not there (or a prefix matching several). */
export class CacheRecordNotFoundError extends Error {
  override name = 'CacheRecordNotFoundError';
  readonly code = 'NOT_FOUND' as const;
  readonly id: string;

  constructor(id: string, expected: string) {
    super(`no cache record ${JSON.stringify(id)}: expected ${expected}`);
    this.id = id;
  }
}

/** A prune option out of range. */
export class InvalidPruneOptionError extends Error {
  override name = 'InvalidPruneOptionError';
  readonly code = 'INVALID_ARGUMENT' as const;
  readonly option: string;

  constructor(option: string, expected: string, found: string) {
    super(`invalid prune option ${option}: expected ${expected}, found ${found}`);
    this.option = option;
  }
}

/** `tsbuild layers`/`diff` named something that is neither an image in the store nor a layer blob. */
export class InspectTargetNotFoundError extends Error {
  override name = 'InspectTargetNotFoundError';
  readonly code = 'NOT_FOUND' as const;
  readonly target: string;

  constructor(target: string, expected: string) {
    super(`${JSON.stringify(target)} not found: expected ${expected}`);
    this.target = target;
  }
}

/** A build cache could not be imported or exported (`--cache-from`/`--cache-to`): a bad artifact, a missing blob. */
export class RemoteCacheError extends Error {
  override name = 'RemoteCacheError';
  readonly code: 'NOT_FOUND' | 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION';
  /** the cache reference or directory */
  readonly source: string;

  constructor(source: string, message: string, code: 'NOT_FOUND' | 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION' = 'INVALID_ARGUMENT', options?: { cause?: unknown }) {
    super(`cache ${source}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.source = source;
    this.code = code;
  }
}
