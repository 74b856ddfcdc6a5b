export { DockerfileSyntaxError, ShellExpansionError, UnknownTargetError } from './errors.js';
export type { Position, SourceRange, ErrorCode } from './errors.js';
export { parseDockerfile, MAX_LOGICAL_LINE, MAX_HEREDOC } from './syntax/parser.js';
export type { Warning, ParseOptions } from './syntax/parser.js';
export { dumpAst } from './syntax/dump.js';
export type { AstNode, DockerfileAst, Directives, CheckDirective, Heredoc } from './syntax/types.js';
export { chompHeredocContent } from './syntax/heredoc.js';
export { expandWord, expandWords } from './shell/lex.js';
export type { EscapeChar } from './shell/lex.js';
