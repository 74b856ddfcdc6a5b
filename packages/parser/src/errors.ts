/**
 * Error classes of @tsbuild/parser. Every error carries a `code` category
 * (containerd errdefs style) and its data as readonly fields.
 */

/** A 1-based position in the Dockerfile source. `col` counts UTF-16 code units, 1-based. */
export interface Position {
  line: number;
  col: number;
}

/** A source range; `end` is inclusive of the last line, exclusive column. */
export interface SourceRange {
  start: Position;
  end: Position;
}

/** Error code categories shared by all tsbuild packages. */
export type ErrorCode = 'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'INTERNAL';

/**
 * A Dockerfile that cannot be parsed or is semantically invalid.
 * `format()` renders `file:line:col: message` plus the offending source line and a caret.
 */
export class DockerfileSyntaxError extends Error {
  override name = 'DockerfileSyntaxError';
  readonly code = 'INVALID_ARGUMENT' as const;
  readonly file: string;
  readonly range: SourceRange;
  /** The message without the location prefix. */
  readonly detail: string;

  constructor(file: string, range: SourceRange, detail: string, options?: { cause?: unknown }) {
    super(`${file}:${range.start.line}:${range.start.col}: ${detail}`, options);
    this.file = file;
    this.range = range;
    this.detail = detail;
  }

  /** `file:line:col: message`, then (when `source` is given) the source line and a caret under the column. */
  format(source?: string): string {
    const head = `${this.file}:${this.range.start.line}:${this.range.start.col}: ${this.detail}`;
    if (source === undefined) return head;
    const line = sourceLine(source, this.range.start.line);
    if (line === undefined) return head;
    const shown = line.length > 200 ? line.slice(0, 200) + '…' : line;
    const col = Math.max(1, Math.min(this.range.start.col, shown.length + 1));
    const pad = shown.slice(0, col - 1).replace(/[^\t]/g, ' ');
    const gutter = `${this.range.start.line} | `;
    return `${head}\n${gutter}${shown}\n${' '.repeat(gutter.length)}${pad}^`;
  }
}

/** A variable expansion (`$VAR`, `${VAR...}`) that failed; thrown by `expandWord`/`expandWords`. */
export class ShellExpansionError extends Error {
  override name = 'ShellExpansionError';
  readonly code = 'INVALID_ARGUMENT' as const;
  /** The word being processed. */
  readonly word: string;
  constructor(word: string, message: string) {
    super(message);
    this.word = word;
  }
}

/** `buildStageGraph` was asked for a target stage that does not exist. */
export class UnknownTargetError extends Error {
  override name = 'UnknownTargetError';
  readonly code = 'NOT_FOUND' as const;
  readonly target: string;
  readonly available: readonly string[];
  constructor(target: string, available: readonly string[]) {
    super(`target stage "${target}" could not be found; expected one of: ${available.join(', ') || '(none)'}`);
    this.target = target;
    this.available = available;
  }
}

function sourceLine(source: string, line: number): string | undefined {
  let start = 0;
  for (let i = 1; i < line; i++) {
    const nl = source.indexOf('\n', start);
    if (nl < 0) return undefined;
    start = nl + 1;
  }
  let end = source.indexOf('\n', start);
  if (end < 0) end = source.length;
  return source.slice(start, end).replace(/\r$/, '');
}
