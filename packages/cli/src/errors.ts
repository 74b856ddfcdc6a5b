/** A command line that cannot be acted on (exit code 2). */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly code = 'INVALID_ARGUMENT' as const;
}

interface Io {
  stderr: (s: string) => void;
}

interface Located {
  location?: { file: string; line: number; column?: number };
}

/**
 * The one top-level error report: Dockerfile errors with a code frame, failed RUN
 * steps with their exit code and last output lines, other user errors as one line,
 * and anything unexpected as an internal error asking for a report. Returns the exit code.
 */
export function reportError(err: unknown, io: Io): number {
  const e = err as Error & Located & { format?: (src?: string) => string; exitCode?: number; lastLines?: readonly string[]; step?: string; code?: string };
  if (e && e.name === 'DockerfileSyntaxError' && typeof e.format === 'function') {
    io.stderr(`ERROR: ${e.format()}\n`);
    return 1;
  }
  if (e && e.name === 'ExecFailedError') {
    io.stderr(`ERROR: RUN failed: ${e.step ?? ''}\n`);
    if (e.lastLines && e.lastLines.length > 0) {
      io.stderr('------\n');
      for (const l of e.lastLines) io.stderr(` > ${l}\n`);
      io.stderr('------\n');
    }
    io.stderr(`ERROR: ${e.message}${where(e)}\n`);
    return 1;
  }
  if (e instanceof Error && typeof e.code === 'string' && e.code !== 'INTERNAL') {
    io.stderr(`ERROR: ${e.message}${where(e)}\n`);
    return 1;
  }
  if (e instanceof Error && typeof (e as NodeJS.ErrnoException).errno === 'number') {
    io.stderr(`ERROR: ${e.message}\n`);
    return 1;
  }
  io.stderr(`ERROR: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\nThis is a bug in tsbuild; please report it with the command you ran.\n`);
  return 1;
}

function where(e: Located): string {
  if (!e.location) return '';
  return ` (${e.location.file}:${e.location.line}${e.location.column !== undefined ? `:${e.location.column}` : ''})`;
}
