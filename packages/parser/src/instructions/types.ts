/**
 * Typed Dockerfile instructions: a discriminated union on `kind`.
 * Words are stored as written (quotes, escapes and `$VAR` intact) except where
 * noted; `expandInstruction` produces the expanded copy BuildKit would dispatch.
 */
import type { SourceRange } from '../errors.js';
import type { Heredoc } from '../syntax/types.js';

/** Shared fields. `raw` is the instruction text with continuations joined (BuildKit's `original`). */
export interface InstructionBase {
  range: SourceRange;
  raw: string;
}

/** A command line: exec form (JSON array) or shell form (`args` = [the whole command string]). */
export interface CommandLine {
  form: 'shell' | 'exec';
  args: string[];
}

export interface FromInstruction extends InstructionBase {
  kind: 'FROM';
  /** The image or stage reference as written (meta ARGs not yet expanded). */
  image: string;
  /** `AS name`, lowercased and validated. */
  stageName?: string;
  /** `--platform` as written. */
  platform?: string;
}

/** One `--mount` of RUN. Numeric fields whose text uses variables are only set after `expandInstruction`. */
export interface RunMount {
  type: 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
  /** The flag value as written (`type=cache,target=/x`). */
  spec: string;
  target?: string;
  source?: string;
  from?: string;
  /** Resolved read-only flag: bind/secret/ssh default to true, cache/tmpfs to false. */
  readonly: boolean;
  id?: string;
  sharing?: 'shared' | 'private' | 'locked';
  mode?: number;
  uid?: number;
  gid?: number;
  required?: boolean;
  /** tmpfs size in bytes. */
  size?: number;
  /** secret exposed as this environment variable. */
  env?: string;
}

export interface RunInstruction extends InstructionBase {
  kind: 'RUN';
  cmd: CommandLine;
  heredocs: Heredoc[];
  mounts: RunMount[];
  network?: 'default' | 'none' | 'host';
  security?: 'sandbox' | 'insecure';
}

export interface CmdInstruction extends InstructionBase {
  kind: 'CMD';
  cmd: CommandLine;
}

export interface EntrypointInstruction extends InstructionBase {
  kind: 'ENTRYPOINT';
  cmd: CommandLine;
}

/** COPY and ADD. `sources` excludes heredoc markers (`<<EOF`), whose bodies are in `heredocs`. */
export interface CopyInstruction extends InstructionBase {
  kind: 'COPY' | 'ADD';
  sources: string[];
  dest: string;
  /** Inline files; for COPY/ADD the `<<-` tabs are already removed (as BuildKit does at parse time). */
  heredocs: Heredoc[];
  from?: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  parents: boolean;
  exclude: string[];
  /** ADD only. */
  checksum?: string;
  /** ADD only. */
  keepGitDir: boolean;
  /** ADD only: `--unpack` given explicitly. */
  unpack?: boolean;
}

export interface KeyValue {
  key: string;
  value: string;
}

export interface EnvInstruction extends InstructionBase {
  kind: 'ENV';
  pairs: KeyValue[];
  /** True for the legacy `ENV key value` form. */
  legacy: boolean;
}

export interface LabelInstruction extends InstructionBase {
  kind: 'LABEL';
  pairs: KeyValue[];
  legacy: boolean;
}

export interface ArgInstruction extends InstructionBase {
  kind: 'ARG';
  args: { key: string; default?: string }[];
}

export interface ExposeInstruction extends InstructionBase {
  kind: 'EXPOSE';
  /** As written (sorted, like BuildKit); after expansion: `port[/proto]` or `start-end[/proto]`, proto lowercased. */
  ports: string[];
}

export interface WorkdirInstruction extends InstructionBase {
  kind: 'WORKDIR';
  path: string;
}

export interface UserInstruction extends InstructionBase {
  kind: 'USER';
  user: string;
}

export interface VolumeInstruction extends InstructionBase {
  kind: 'VOLUME';
  paths: string[];
}

export interface StopsignalInstruction extends InstructionBase {
  kind: 'STOPSIGNAL';
  signal: string;
}

export interface HealthcheckInstruction extends InstructionBase {
  kind: 'HEALTHCHECK';
  /** 'NONE', or Docker's test array: ['CMD', ...args] (exec form) or ['CMD-SHELL', command]. */
  test: string[] | 'NONE';
  /** Durations in nanoseconds. */
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}

export interface ShellInstruction extends InstructionBase {
  kind: 'SHELL';
  shell: string[];
}

export interface OnbuildInstruction extends InstructionBase {
  kind: 'ONBUILD';
  /** The trigger text (what follows ONBUILD, plus heredoc bodies), stored in the image config. */
  expression: string;
  /** The trigger, parsed. */
  instruction: Instruction;
}

export interface MaintainerInstruction extends InstructionBase {
  kind: 'MAINTAINER';
  name: string;
}

/** Every Dockerfile instruction. */
export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | CopyInstruction
  | EnvInstruction
  | ArgInstruction
  | LabelInstruction
  | ExposeInstruction
  | WorkdirInstruction
  | UserInstruction
  | VolumeInstruction
  | StopsignalInstruction
  | HealthcheckInstruction
  | ShellInstruction
  | OnbuildInstruction
  | MaintainerInstruction;

/** Exhaustiveness helper for `switch (instr.kind)`. */
export function assertNever(x: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(x)}`);
}
