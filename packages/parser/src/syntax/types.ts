import type { SourceRange } from '../errors.js';
import type { EscapeChar } from '../shell/lex.js';

/** A heredoc attached to RUN/COPY/ADD (`<<EOF`). `content` is the raw body, lines with their newlines. */
export interface Heredoc {
  /** The delimiter word with quotes removed. */
  name: string;
  /** The body as written (for `<<-` the leading tabs are still there; see `chompHeredocContent`). */
  content: string;
  /** False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): the body is not variable-expanded. */
  expand: boolean;
  /** True for `<<-EOF`: leading tabs are removed from every body line. */
  chomp: boolean;
  /** The file descriptor prefix (`3<<EOF`), 0 when absent. */
  fileDescriptor: number;
}

/** One node of the BuildKit-like untyped AST. */
export interface AstNode {
  /** Instruction keyword as written (on instruction nodes) or an argument value. */
  value: string;
  /** Next argument in the singly linked list. */
  next?: AstNode;
  /** Sub-instructions (only ONBUILD's argument node has one). */
  children: AstNode[];
  /** Flags (`--from=x`) as written, quotes and escapes removed. */
  flags: string[];
  /** Where each flag starts (same order as `flags`). */
  flagRanges: SourceRange[];
  /** `json: true` when the arguments were given in JSON (exec) form. */
  attributes: { json?: boolean };
  /** The logical line (continuations joined), as BuildKit's `Original`. */
  original: string;
  heredocs: Heredoc[];
  /** Comment lines directly above the instruction (without `#`). */
  prevComment: string[];
  /** 1-based physical lines of the instruction (including continuation and heredoc lines). */
  startLine: number;
  endLine: number;
  /** Range from the keyword to the end of the last consumed line. */
  range: SourceRange;
  /** Range of the keyword itself. */
  keywordRange: SourceRange;
  /** Where the argument text (after flags) starts. */
  argsRange: SourceRange;
}

/** Parsed `# check=` directive. */
export interface CheckDirective {
  /** Rule names to skip, or 'all'. */
  skip: string[] | 'all';
  /** When true, any reported check fails the build. */
  error: boolean;
}

/** Parser directives found at the top of the file. */
export interface Directives {
  escape: EscapeChar;
  syntax?: string;
  check?: CheckDirective;
  /** Where each directive was found. */
  ranges: Record<string, SourceRange>;
}

/** The root of a parsed Dockerfile: one child per instruction. */
export interface DockerfileAst {
  /** Always '' (BuildKit's root node value). */
  value: '';
  children: AstNode[];
  /** First instruction's start line, last instruction's end line. */
  startLine: number;
  endLine: number;
  directives: Directives;
  /** The file name used in errors and warnings. */
  file: string;
}
