/** Untyped AST node → typed `Instruction`, with BuildKit's argument and flag validation. */
import { DockerfileSyntaxError, type SourceRange } from '../errors.js';
import type { AstNode, Heredoc } from '../syntax/types.js';
import { chompHeredocContent, parseHeredocWord } from '../syntax/heredoc.js';
import { FlagError, parseFlags, type FlagType, type ParsedFlags } from './flags.js';
import { parseMount } from './mount.js';
import type { CommandLine, CopyInstruction, HealthcheckInstruction, Instruction, RunInstruction } from './types.js';
import { parseGoDuration, validateChmod, ValueError } from './values.js';

/** Instruction keywords (upper case). */
export const INSTRUCTION_NAMES = [
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
] as const;

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

function args(node: AstNode): string[] {
  const out: string[] = [];
  for (let n = node.next; n; n = n.next) {
    if (n.children.length === 0) out.push(n.value);
    else {
      out.push(n.children[0].value);
      out.push(...args(n.children[0]));
    }
  }
  return out;
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

/** The closest candidate (case-insensitive), for "did you mean" hints. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(w.length / 3)) ? best : undefined;
}

interface Ctx {
  node: AstNode;
  file: string;
  cmd: string;
  args: string[];
  json: boolean;
  heredocs: Heredoc[];
}

function errAt(ctx: Ctx, range: SourceRange, msg: string): never {
  throw new DockerfileSyntaxError(ctx.file, range, msg);
}
const err = (ctx: Ctx, msg: string): never => errAt(ctx, ctx.node.keywordRange, msg);
const argErr = (ctx: Ctx, msg: string): never => errAt(ctx, ctx.node.argsRange, msg);

function flags(ctx: Ctx, spec: Record<string, FlagType>): ParsedFlags {
  try {
    return parseFlags(ctx.node.flags, spec);
  } catch (e) {
    if (e instanceof FlagError) return errAt(ctx, ctx.node.flagRanges[e.index] ?? ctx.node.keywordRange, e.message);
    throw e;
  }
}

function flagRange(ctx: Ctx, name: string): SourceRange {
  const i = ctx.node.flags.findIndex((f) => f === `--${name}` || f.startsWith(`--${name}=`));
  return ctx.node.flagRanges[i] ?? ctx.node.keywordRange;
}

function commandLine(ctx: Ctx): CommandLine {
  if (ctx.json) return { form: 'exec', args: ctx.args };
  return { form: 'shell', args: ctx.args.length === 0 ? [] : [ctx.args.join(' ')] };
}

function kvPairs(ctx: Ctx): { pairs: { key: string; value: string }[]; legacy: boolean } {
  if (ctx.args.length === 0) argErr(ctx, `${ctx.cmd} requires at least one argument`);
  if (ctx.args.length % 3 !== 0) argErr(ctx, `bad input to ${ctx.cmd}, too many arguments`);
  const pairs: { key: string; value: string }[] = [];
  let legacy = false;
  for (let j = 0; j < ctx.args.length; j += 3) {
    if (ctx.args[j].length === 0) argErr(ctx, `${ctx.cmd} names can not be blank`);
    pairs.push({ key: ctx.args[j], value: ctx.args[j + 1] });
    if (ctx.args[j + 2] === '') legacy = true;
  }
  return { pairs, legacy };
}

function exactlyOne(ctx: Ctx): string {
  if (ctx.args.length !== 1) argErr(ctx, `${ctx.cmd} requires exactly one argument, found ${ctx.args.length}`);
  return ctx.args[0];
}

function duration(ctx: Ctx, f: ParsedFlags, name: string): number | undefined {
  const s = f.strings.get(name);
  if (s === undefined || s === '') return undefined;
  let d: number;
  try {
    d = parseGoDuration(s);
  } catch (e) {
    return errAt(ctx, flagRange(ctx, name), (e as Error).message);
  }
  if (d === 0) return 0;
  if (d < 1e6) errAt(ctx, flagRange(ctx, name), `interval "${name}" cannot be less than 1ms, found ${s}`);
  return d;
}

function parseCopy(ctx: Ctx, kind: 'COPY' | 'ADD', base: { range: SourceRange; raw: string }): CopyInstruction {
  const spec: Record<string, FlagType> =
    kind === 'ADD'
      ? { chown: 'string', chmod: 'string', link: 'bool', 'keep-git-dir': 'bool', checksum: 'string', exclude: 'strings', unpack: 'bool' }
      : { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings' };
  const f = flags(ctx, spec);
  if (ctx.args.length < 2) argErr(ctx, `${kind} requires at least two arguments, but only ${ctx.args.length === 0 ? 'none was' : 'one was'} provided: destination could not be determined`);
  const srcs = ctx.args.slice(0, -1);
  const dest = ctx.args[ctx.args.length - 1];
  const heredocWord = (w: string): ReturnType<typeof parseHeredocWord> => {
    if (ctx.json) return undefined;
    try {
      return parseHeredocWord(w);
    } catch {
      return undefined;
    }
  };
  if (heredocWord(dest)) argErr(ctx, `${kind} cannot accept a heredoc as a destination`);
  const sources: string[] = [];
  const heredocs: Heredoc[] = [];
  for (const s of srcs) {
    if (heredocWord(s)) {
      const h = ctx.heredocs[heredocs.length];
      if (!h) argErr(ctx, `${kind} heredoc ${s} has no body`);
      heredocs.push({ ...h, content: h.chomp ? chompHeredocContent(h.content) : h.content });
    } else sources.push(s);
  }
  const chmod = f.strings.get('chmod');
  if (chmod !== undefined && !chmod.includes('$')) {
    try {
      validateChmod(chmod);
    } catch (e) {
      errAt(ctx, flagRange(ctx, 'chmod'), (e as Error).message);
    }
  }
  const out: CopyInstruction = {
    kind,
    ...base,
    sources,
    dest,
    heredocs,
    link: f.bools.get('link') ?? false,
    parents: f.bools.get('parents') ?? false,
    exclude: f.lists.get('exclude') ?? [],
    keepGitDir: f.bools.get('keep-git-dir') ?? false,
  };
  const from = f.strings.get('from');
  if (from !== undefined) out.from = from;
  const chown = f.strings.get('chown');
  if (chown !== undefined) out.chown = chown;
  if (chmod !== undefined) out.chmod = chmod;
  const checksum = f.strings.get('checksum');
  if (checksum !== undefined) out.checksum = checksum;
  if (f.bools.has('unpack')) out.unpack = f.bools.get('unpack');
  return out;
}

/** Options of `parseInstruction`. */
export interface ParseInstructionOptions {
  file?: string;
}

/**
 * Turn one AST instruction node into a typed instruction. Throws
 * `DockerfileSyntaxError` for unknown instructions, bad flags and bad arguments.
 */
export function parseInstruction(node: AstNode, opts: ParseInstructionOptions = {}): Instruction {
  const cmd = node.value.toUpperCase();
  const ctx: Ctx = { node, file: opts.file ?? 'Dockerfile', cmd, args: args(node), json: node.attributes.json === true, heredocs: node.heredocs };
  const base = { range: node.range, raw: node.original };
  switch (cmd) {
    case 'FROM': {
      const f = flags(ctx, { platform: 'string' });
      const a = ctx.args;
      let stageName: string | undefined;
      if (a.length === 3 && a[1].toLowerCase() === 'as') {
        stageName = a[2].toLowerCase();
        if (!STAGE_NAME.test(stageName)) argErr(ctx, `invalid name for build stage: "${a[2]}", name can't start with a number or contain symbols`);
      } else if (a.length !== 1) {
        argErr(ctx, `FROM requires either one or three arguments (image [AS name]), found ${a.length}`);
      }
      const out: Instruction = { kind: 'FROM', ...base, image: a[0] };
      if (stageName !== undefined) out.stageName = stageName;
      const p = f.strings.get('platform');
      if (p !== undefined) out.platform = p;
      return out;
    }
    case 'RUN': {
      const f = flags(ctx, { mount: 'strings', network: 'string', security: 'string' });
      if (ctx.args.length === 0) argErr(ctx, 'RUN requires at least one argument');
      const mounts = (f.lists.get('mount') ?? []).map((spec) => {
        try {
          return parseMount(spec);
        } catch (e) {
          if (e instanceof ValueError) return errAt(ctx, flagRange(ctx, 'mount'), e.message);
          throw e;
        }
      });
      const out: RunInstruction = { kind: 'RUN', ...base, cmd: commandLine(ctx), heredocs: ctx.heredocs, mounts };
      const net = f.strings.get('network');
      if (net !== undefined) {
        if (net !== 'default' && net !== 'none' && net !== 'host') errAt(ctx, flagRange(ctx, 'network'), `unsupported network mode "${net}": expected default, none or host`);
        out.network = net;
      }
      const sec = f.strings.get('security');
      if (sec !== undefined) {
        if (sec !== 'sandbox' && sec !== 'insecure') errAt(ctx, flagRange(ctx, 'security'), `unsupported security mode "${sec}": expected sandbox or insecure`);
        out.security = sec;
      }
      return out;
    }
    case 'CMD':
      flags(ctx, {});
      return { kind: 'CMD', ...base, cmd: commandLine(ctx) };
    case 'ENTRYPOINT':
      flags(ctx, {});
      return { kind: 'ENTRYPOINT', ...base, cmd: commandLine(ctx) };
    case 'COPY':
    case 'ADD':
      return parseCopy(ctx, cmd, base);
    case 'ENV': {
      flags(ctx, {});
      return { kind: 'ENV', ...base, ...kvPairs(ctx) };
    }
    case 'LABEL': {
      flags(ctx, {});
      return { kind: 'LABEL', ...base, ...kvPairs(ctx) };
    }
    case 'ARG': {
      flags(ctx, {});
      if (ctx.args.length === 0) argErr(ctx, 'ARG requires at least one argument');
      return {
        kind: 'ARG',
        ...base,
        args: ctx.args.map((a) => {
          const eq = a.indexOf('=');
          if (eq < 0) return { key: a };
          if (eq === 0) argErr(ctx, 'ARG names can not be blank');
          return { key: a.slice(0, eq), default: a.slice(eq + 1) };
        }),
      };
    }
    case 'EXPOSE':
      flags(ctx, {});
      if (ctx.args.length === 0) argErr(ctx, 'EXPOSE requires at least one argument');
      return { kind: 'EXPOSE', ...base, ports: [...ctx.args].sort() };
    case 'WORKDIR':
      flags(ctx, {});
      return { kind: 'WORKDIR', ...base, path: exactlyOne(ctx) };
    case 'USER':
      flags(ctx, {});
      return { kind: 'USER', ...base, user: exactlyOne(ctx) };
    case 'VOLUME': {
      flags(ctx, {});
      if (ctx.args.length === 0) argErr(ctx, 'VOLUME requires at least one argument');
      const paths = ctx.args.map((v) => v.trim());
      if (paths.some((p) => p === '')) argErr(ctx, 'VOLUME specified can not be an empty string');
      return { kind: 'VOLUME', ...base, paths };
    }
    case 'STOPSIGNAL':
      flags(ctx, {});
      return { kind: 'STOPSIGNAL', ...base, signal: exactlyOne(ctx) };
    case 'HEALTHCHECK': {
      if (ctx.args.length === 0) argErr(ctx, 'HEALTHCHECK requires at least one argument (CMD or NONE)');
      const typ = ctx.args[0].toUpperCase();
      const rest = ctx.args.slice(1);
      if (typ === 'NONE') {
        if (rest.length !== 0) argErr(ctx, 'HEALTHCHECK NONE takes no arguments');
        return { kind: 'HEALTHCHECK', ...base, test: 'NONE' };
      }
      const f = flags(ctx, { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' });
      if (typ !== 'CMD') argErr(ctx, `unknown type "${typ}" in HEALTHCHECK (try CMD)`);
      const cmdArgs = ctx.json ? rest : rest.length === 0 ? [] : [rest.join(' ')];
      if (cmdArgs.length === 0) argErr(ctx, 'missing command after HEALTHCHECK CMD');
      const out: HealthcheckInstruction = { kind: 'HEALTHCHECK', ...base, test: [ctx.json ? 'CMD' : 'CMD-SHELL', ...cmdArgs] };
      const set = (k: 'interval' | 'timeout' | 'startPeriod' | 'startInterval', flag: string): void => {
        const d = duration(ctx, f, flag);
        if (d !== undefined) out[k] = d;
      };
      set('interval', 'interval');
      set('timeout', 'timeout');
      set('startPeriod', 'start-period');
      set('startInterval', 'start-interval');
      const r = f.strings.get('retries');
      if (r !== undefined && r !== '') {
        if (!/^[-+]?\d+$/.test(r) || Math.abs(Number(r)) > 2 ** 31 - 1) errAt(ctx, flagRange(ctx, 'retries'), `invalid --retries value "${r}": expected an integer`);
        if (Number(r) < 0) errAt(ctx, flagRange(ctx, 'retries'), `--retries cannot be negative (${r})`);
        out.retries = Number(r);
      }
      return out;
    }
    case 'SHELL': {
      flags(ctx, {});
      if (ctx.args.length === 0) argErr(ctx, 'SHELL requires at least one argument');
      if (!ctx.json) argErr(ctx, 'SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]');
      return { kind: 'SHELL', ...base, shell: ctx.args };
    }
    case 'ONBUILD': {
      flags(ctx, {});
      const child = node.next?.children[0];
      if (!child) return argErr(ctx, 'ONBUILD requires at least one argument');
      const trigger = child.value.toUpperCase();
      if (trigger === 'ONBUILD') argErr(ctx, 'chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (trigger === 'MAINTAINER' || trigger === 'FROM') argErr(ctx, `${trigger} isn't allowed as an ONBUILD trigger`);
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      for (const h of node.heredocs) expression += '\n' + h.content + h.name;
      const instruction = parseInstruction({ ...child, heredocs: node.heredocs }, opts);
      return { kind: 'ONBUILD', ...base, expression, instruction };
    }
    case 'MAINTAINER':
      flags(ctx, {});
      return { kind: 'MAINTAINER', ...base, name: exactlyOne(ctx) };
    default: {
      const hint = suggest(node.value, INSTRUCTION_NAMES);
      return err(ctx, `unknown instruction: ${node.value}${hint ? ` (did you mean ${hint}?)` : ''}`);
    }
  }
}
