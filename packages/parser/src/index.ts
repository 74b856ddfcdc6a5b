/**
 * @tsbuild/parser — the Dockerfile language, conformant with BuildKit's frontend.
 * Pure: no file system, processes, clock or environment.
 *
 * Text → `parseDockerfile` (AST, warnings) → `toStages` (typed instructions per
 * stage, meta ARGs) → `buildStageGraph` (stage DAG for a target).
 * Instruction words are expanded late, with `expandInstruction`, once the
 * build-time environment (base image ENV, ARGs) is known.
 */
export { DockerfileSyntaxError, ShellExpansionError, UnknownTargetError } from './errors.js';
export type { Position, SourceRange, ErrorCode } from './errors.js';

export { parseDockerfile, MAX_LOGICAL_LINE, MAX_HEREDOC } from './syntax/parser.js';
export type { Warning, ParseOptions } from './syntax/parser.js';
export { dumpAst } from './syntax/dump.js';
export { astToJson } from './syntax/json.js';
export type { AstNode, DockerfileAst, Directives, CheckDirective, Heredoc } from './syntax/types.js';
export { chompHeredocContent } from './syntax/heredoc.js';
export { isSupportedSyntax } from './syntax/directives.js';

export { expandWord, expandWords, MAX_NESTING, MAX_EXPANDED_LENGTH } from './shell/lex.js';
export type { EscapeChar } from './shell/lex.js';

export { parseInstruction, INSTRUCTION_NAMES } from './instructions/parse.js';
export type { ParseInstructionOptions } from './instructions/parse.js';
export { expandInstruction, normalizePort } from './instructions/expand.js';
export type { ExpandOptions } from './instructions/expand.js';
export { assertNever } from './instructions/types.js';
export type {
  Instruction, InstructionBase, CommandLine, FromInstruction, RunInstruction, RunMount, CmdInstruction,
  EntrypointInstruction, CopyInstruction, EnvInstruction, ArgInstruction, LabelInstruction, ExposeInstruction,
  WorkdirInstruction, UserInstruction, VolumeInstruction, StopsignalInstruction, HealthcheckInstruction,
  ShellInstruction, OnbuildInstruction, MaintainerInstruction, KeyValue,
} from './instructions/types.js';

export { toStages, buildStageGraph, resolveArg, platformArgs, PLATFORM_ARGS, PROXY_ARGS, RESERVED_STAGE_NAMES } from './stages/stages.js';
export type { Stage, StagesResult, StageGraph, ToStagesOptions, Platform } from './stages/stages.js';

export { lint, lintAst, LINT_RULES } from './lint/lint.js';
export type { LintOptions } from './lint/lint.js';
