/**
 * Error classes of the executor. Branch on `instanceof` or `code`, never on message text.
 */

/** containerd errdefs categories used by the executor. */
export type ExecutorErrorCode = 'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'INTERNAL';

/**
 * An infrastructure failure of the sandbox: missing or unsafe runtime, bad request, runtime
 * error. A step that exits non-zero is NOT an ExecutorError; it is a `RunResult`.
 */
export class ExecutorError extends Error {
  override name = 'ExecutorError';
  readonly code: ExecutorErrorCode;
  /** Debian package that would fix a missing prerequisite, when that is the cause. */
  readonly missingPackage: string | undefined;

  constructor(code: ExecutorErrorCode, message: string, options?: { cause?: unknown; missingPackage?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.missingPackage = options?.missingPackage;
  }
}

/** The step was cancelled through its `AbortSignal`; the sandbox was killed and removed. */
export class AbortError extends Error {
  override name = 'AbortError';
  readonly code = 'CANCELED' as const;

  constructor(message = 'run step aborted', options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}
