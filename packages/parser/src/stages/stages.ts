/** Stages, meta ARGs, ARG scoping and the stage dependency graph. */
import { DockerfileSyntaxError, UnknownTargetError, type SourceRange } from '../errors.js';
import { lexWord, type EscapeChar } from '../shell/lex.js';
import { parseInstruction } from '../instructions/parse.js';
import type { ArgInstruction, FromInstruction, Instruction } from '../instructions/types.js';
import type { DockerfileAst } from '../syntax/types.js';
import type { Warning } from '../syntax/parser.js';
import { lintAst } from '../lint/lint.js';

/** A build platform. */
export interface Platform {
  os: string;
  arch: string;
  variant?: string;
}

/** One build stage: a FROM and the instructions after it. */
export interface Stage {
  index: number;
  /** `AS name`, lowercased. */
  name?: string;
  /** The FROM image after meta-ARG expansion (may name another stage). */
  base: string;
  /** `--platform` after meta-ARG expansion. */
  platform?: string;
  instructions: Instruction[];
  from: FromInstruction;
  range: SourceRange;
}

export interface StagesResult {
  stages: Stage[];
  /** Global ARGs declared before the first FROM. */
  metaArgs: ArgInstruction[];
  /** Resolved values of the meta ARGs plus the predefined platform ARGs (the FROM environment). */
  metaEnv: ReadonlyMap<string, string>;
  escape: EscapeChar;
  warnings: Warning[];
  /** True when `# check=error=true` asks for warnings to fail the build. */
  checksFail: boolean;
}

export interface ToStagesOptions {
  buildArgs?: Record<string, string>;
  /** Target platform (default linux/amd64: the parser does no I/O and cannot ask the host). */
  platform?: Platform;
  /** Build platform (default: the target platform). */
  buildPlatform?: Platform;
  file?: string;
}

/** Predefined platform ARG names. */
export const PLATFORM_ARGS = ['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT', 'BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT'] as const;
/** Proxy ARGs usable as build args without an ARG declaration (and kept out of cache keys/history). */
export const PROXY_ARGS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'] as const;
/** Stage names that lint warns about. */
export const RESERVED_STAGE_NAMES = ['context', 'scratch'] as const;

const fmtPlatform = (p: Platform): string => `${p.os}/${p.arch}${p.variant ? '/' + p.variant : ''}`;

/** The predefined TARGET* and BUILD* ARG values. */
export function platformArgs(platform: Platform, buildPlatform: Platform = platform): Map<string, string> {
  return new Map([
    ['TARGETPLATFORM', fmtPlatform(platform)],
    ['TARGETOS', platform.os],
    ['TARGETARCH', platform.arch],
    ['TARGETVARIANT', platform.variant ?? ''],
    ['BUILDPLATFORM', fmtPlatform(buildPlatform)],
    ['BUILDOS', buildPlatform.os],
    ['BUILDARCH', buildPlatform.arch],
    ['BUILDVARIANT', buildPlatform.variant ?? ''],
  ]);
}

/**
 * The value an `ARG key[=default]` takes: the build arg if given, else the
 * default expanded with `env`, else (for a re-declared global ARG) the meta ARG value.
 */
export function resolveArg(
  arg: { key: string; default?: string },
  env: ReadonlyMap<string, string>,
  opts: { buildArgs?: Record<string, string>; metaEnv?: ReadonlyMap<string, string>; escape?: EscapeChar },
): string | undefined {
  if (opts.buildArgs && Object.hasOwn(opts.buildArgs, arg.key)) return opts.buildArgs[arg.key];
  if (arg.default !== undefined) return lexWord(arg.default, env, { escape: opts.escape }).result;
  return opts.metaEnv?.get(arg.key);
}

/**
 * Split a parsed Dockerfile into stages, resolving global ARGs (build args win
 * over defaults) and expanding each FROM's image and platform with them.
 * Runs the lint checks too (`warnings`). Throws `DockerfileSyntaxError`.
 */
export function toStages(ast: DockerfileAst, opts: ToStagesOptions = {}): StagesResult {
  const file = opts.file ?? ast.file;
  const escape = ast.directives.escape;
  const platform = opts.platform ?? { os: 'linux', arch: 'amd64' };
  const metaEnv = platformArgs(platform, opts.buildPlatform);
  const metaArgs: ArgInstruction[] = [];
  const stages: Stage[] = [];
  const fail = (range: SourceRange, msg: string, cause?: unknown): never => {
    throw new DockerfileSyntaxError(file, range, msg, { cause });
  };
  const expand = (word: string, env: ReadonlyMap<string, string>, range: SourceRange): string => {
    try {
      return lexWord(word, env, { escape }).result;
    } catch (e) {
      return fail(range, (e as Error).message, e);
    }
  };
  for (const node of ast.children) {
    const instr = parseInstruction(node, { file });
    if (instr.kind === 'FROM') {
      const base = expand(instr.image, metaEnv, instr.range);
      if (base === '') fail(instr.range, `base name (${instr.image}) should not be blank: expected an image or stage name after expanding build arguments`);
      const stage: Stage = { index: stages.length, base, instructions: [], from: instr, range: instr.range };
      if (instr.stageName !== undefined) stage.name = instr.stageName;
      if (instr.platform !== undefined) stage.platform = expand(instr.platform, metaEnv, instr.range);
      stages.push(stage);
      continue;
    }
    const cur = stages[stages.length - 1];
    if (!cur) {
      if (instr.kind !== 'ARG') {
        return fail(node.keywordRange, `no build stage in current context: expected FROM before ${instr.kind} (only ARG may precede the first FROM)`);
      }
      metaArgs.push(instr);
      for (const a of instr.args) {
        let v: string | undefined;
        try {
          v = resolveArg(a, metaEnv, { buildArgs: opts.buildArgs, escape });
        } catch (e) {
          fail(instr.range, (e as Error).message, e);
        }
        if (v !== undefined) metaEnv.set(a.key, v);
        else metaEnv.delete(a.key);
      }
      continue;
    }
    cur.instructions.push(instr);
  }
  if (stages.length === 0) fail(ast.children[0].keywordRange, 'no build stage found: expected at least one FROM instruction');
  const check = ast.directives.check;
  const warnings = lintAst(ast, { file, buildArgs: opts.buildArgs });
  return { stages, metaArgs, metaEnv, escape, warnings, checksFail: check?.error === true && warnings.length > 0 };
}

/** Stage dependencies, topologically ordered from the target. */
export interface StageGraph {
  /** Index of the target stage. */
  target: number;
  /** Reachable stages, dependencies first, target last. */
  order: number[];
  /** For every reachable stage, the stages it depends on (FROM, COPY/ADD --from, RUN --mount from). */
  deps: ReadonlyMap<number, readonly number[]>;
}

/** Stage referenced by `ref` from stage `self`, or undefined if it is an external image. */
function resolveStageRef(result: StagesResult, ref: string, self: number, byNameOnlyBefore: boolean, file: string, range: SourceRange): number | undefined {
  const lower = ref.toLowerCase();
  if (/^\d+$/.test(ref) && !byNameOnlyBefore) {
    const idx = Number(ref);
    if (idx >= result.stages.length || idx === self) {
      throw new DockerfileSyntaxError(file, range, `invalid stage index ${ref}: expected an index of another stage (0..${result.stages.length - 1})`);
    }
    return idx;
  }
  for (const s of result.stages) {
    if (s.name !== lower || s.index === self) continue;
    if (byNameOnlyBefore && s.index > self) continue;
    return s.index;
  }
  return undefined;
}

/**
 * Build the stage graph for `target` (a stage name, or the last stage by default).
 * Unreachable stages are pruned. Throws `UnknownTargetError` for an unknown target
 * and `DockerfileSyntaxError` for a dependency cycle.
 */
export function buildStageGraph(result: StagesResult, opts: { target?: string; buildArgs?: Record<string, string>; file?: string } = {}): StageGraph {
  const file = opts.file ?? 'Dockerfile';
  const { stages } = result;
  let target = stages.length - 1;
  if (opts.target !== undefined && opts.target !== '') {
    const t = opts.target.toLowerCase();
    const found = stages.find((s) => s.name === t);
    if (!found) throw new UnknownTargetError(opts.target, stages.flatMap((s) => (s.name ? [s.name] : [])));
    target = found.index;
  }
  const depsOf = (s: Stage): number[] => {
    const deps = new Set<number>();
    const fromStage = resolveStageRef(result, s.base, s.index, true, file, s.range);
    if (fromStage !== undefined) deps.add(fromStage);
    // ARG scoping for --from values: meta env, then stage ARGs in order
    const env = new Map(result.metaEnv);
    for (const i of s.instructions) {
      const ref = (v: string): void => {
        let r: string;
        try {
          r = lexWord(v, env, { escape: result.escape }).result;
        } catch (e) {
          throw new DockerfileSyntaxError(file, i.range, (e as Error).message, { cause: e });
        }
        const d = resolveStageRef(result, r, s.index, false, file, i.range);
        if (d !== undefined) deps.add(d);
      };
      if (i.kind === 'ARG') {
        for (const a of i.args) {
          const v = resolveArg(a, env, { buildArgs: opts.buildArgs, metaEnv: result.metaEnv, escape: result.escape });
          if (v !== undefined) env.set(a.key, v);
        }
      } else if ((i.kind === 'COPY' || i.kind === 'ADD') && i.from !== undefined) ref(i.from);
      else if (i.kind === 'RUN') for (const m of i.mounts) if (m.from !== undefined) ref(m.from);
    }
    return [...deps].sort((a, b) => a - b);
  };
  const deps = new Map<number, number[]>();
  const order: number[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  // iterative DFS (post-order) with cycle detection
  const stack: { idx: number; next: number }[] = [{ idx: target, next: 0 }];
  state.set(target, 'visiting');
  deps.set(target, depsOf(stages[target]));
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const ds = deps.get(top.idx)!;
    if (top.next < ds.length) {
      const d = ds[top.next++];
      const st = state.get(d);
      if (st === 'visiting') {
        const s = stages[d];
        throw new DockerfileSyntaxError(file, s.range, `circular dependency detected on stage: ${s.name ?? String(d)}`);
      }
      if (st === 'done') continue;
      state.set(d, 'visiting');
      deps.set(d, depsOf(stages[d]));
      stack.push({ idx: d, next: 0 });
    } else {
      state.set(top.idx, 'done');
      order.push(top.idx);
      stack.pop();
    }
  }
  return { target, order, deps };
}
