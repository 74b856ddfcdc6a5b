/** Build checks: the lint rules BuildKit's `--check` reports (CopyIgnoredFile is solver-side). */
import type { SourceRange } from '../errors.js';
import { lexWord } from '../shell/lex.js';
import { parseInstruction, suggest } from '../instructions/parse.js';
import type { Instruction } from '../instructions/types.js';
import { parseDockerfile, ruleUrl, type Warning } from '../syntax/parser.js';
import type { AstNode, DockerfileAst } from '../syntax/types.js';

/** Names of the rules this linter implements. */
export const LINT_RULES = [
  'NoEmptyContinuation', 'ConsistentInstructionCasing', 'FromAsCasing', 'StageNameCasing', 'DuplicateStageName',
  'ReservedStageName', 'JSONArgsRecommended', 'MaintainerDeprecated', 'UndefinedArgInFrom', 'WorkdirRelativePath',
  'UndefinedVar', 'MultipleInstructionsDisallowed', 'LegacyKeyValueFormat', 'SecretsUsedInArgOrEnv',
  'InvalidDefaultArgInFrom', 'FromPlatformFlagConstDisallowed', 'RedundantTargetPlatform', 'ExposeProtoCasing',
  'ExposeInvalidFormat',
] as const;

const PLATFORM_ARGS = ['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT', 'BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT'];
const PROXY_ARGS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'];
/** Variables commonly set by base images; the parser cannot see image config, so UndefinedVar skips them. */
const COMMON_IMAGE_ENV = ['PATH', 'HOME', 'HOSTNAME', 'TERM', 'LANG', 'LC_ALL', 'USER', 'SHELL', 'PWD'];
const SECRET = /(?:^|_)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const ALLOWED_SECRET = /(?:^|_)public(?:_|$)/i;

export interface LintOptions {
  file?: string;
  buildArgs?: Record<string, string>;
}

const isUpper = (s: string): boolean => s === s.toUpperCase();
const isLower = (s: string): boolean => s === s.toLowerCase();

/** Run the checks on a parsed AST; rules listed in `# check=skip=` are left out. */
export function lintAst(ast: DockerfileAst, opts: LintOptions = {}): Warning[] {
  const file = opts.file ?? ast.file;
  const out: Warning[] = [];
  const skip = ast.directives.check?.skip ?? [];
  const skipped = (rule: string): boolean => skip === 'all' || skip.some((s) => s.toLowerCase() === rule.toLowerCase());
  const warn = (rule: string, message: string, range: SourceRange): void => {
    if (!skipped(rule)) out.push({ rule, message, range, url: ruleUrl(rule) });
  };
  const escape = ast.directives.escape;

  // ConsistentInstructionCasing
  let upper = 0;
  let lower = 0;
  for (const n of ast.children) {
    if (isUpper(n.value)) upper++;
    else if (isLower(n.value)) lower++;
  }
  const majorityUpper = upper >= lower;
  for (const n of ast.children) {
    if (majorityUpper ? !isUpper(n.value) : !isLower(n.value)) {
      warn('ConsistentInstructionCasing', `Command '${n.value}' should match the case of the command majority (${majorityUpper ? 'uppercase' : 'lowercase'})`, n.keywordRange);
    }
  }

  const parsed: { node: AstNode; instr: Instruction }[] = [];
  for (const node of ast.children) {
    try {
      parsed.push({ node, instr: parseInstruction(node, { file }) });
    } catch {
      // invalid instructions are errors reported by toStages; the linter skips them
    }
  }

  const metaDeclared = new Map<string, string | undefined>();
  const metaEnvDefaults = new Map<string, string>();
  const stageNames = new Map<string, number>();
  let seenFrom = false;
  let stageVars = new Set<string>();
  let absWorkdir = false;
  let counts = new Map<string, { node: AstNode }[]>();
  const flushCounts = (): void => {
    for (const [kind, list] of counts) {
      for (const item of list.slice(0, -1)) {
        warn('MultipleInstructionsDisallowed', `Multiple ${kind} instructions should not be used in the same stage because only the last one will be used`, item.node.keywordRange);
      }
    }
    counts = new Map();
  };
  const knownVar = (name: string): boolean =>
    stageVars.has(name) || PLATFORM_ARGS.includes(name) || PROXY_ARGS.includes(name) || COMMON_IMAGE_ENV.includes(name);
  const checkUndefined = (words: string[], range: SourceRange): void => {
    const seen = new Set<string>();
    for (const w of words) {
      try {
        lexWord(w, new Map(), {
          escape,
          onLookup: (name) => {
            if (/^[0-9@*#?$!-]/.test(name) || knownVar(name) || seen.has(name)) return;
            seen.add(name);
            const hint = suggest(name, [...stageVars]);
            warn('UndefinedVar', `Usage of undefined variable '$${name}'${hint ? ` (did you mean $${hint}?)` : ''}`, range);
          },
        });
      } catch {
        // malformed words are reported at expansion time
      }
    }
  };

  for (const { node, instr } of parsed) {
    switch (instr.kind) {
      case 'FROM': {
        if (seenFrom) flushCounts();
        seenFrom = true;
        stageVars = new Set();
        absWorkdir = false;
        const args = [];
        for (let n = node.next; n; n = n.next) args.push(n.value);
        if (args.length === 3) {
          const as = args[1];
          if ((isUpper(node.value) && !isUpper(as)) || (isLower(node.value) && !isLower(as))) {
            warn('FromAsCasing', `'${as}' and '${node.value}' keywords' casing do not match`, node.argsRange);
          }
          const written = args[2];
          if (written !== written.toLowerCase()) warn('StageNameCasing', `Stage name '${written}' should be lowercase`, node.argsRange);
        }
        if (instr.stageName !== undefined) {
          if (stageNames.has(instr.stageName)) warn('DuplicateStageName', `Duplicate stage name "${instr.stageName}", stage names should be unique`, node.argsRange);
          else stageNames.set(instr.stageName, stageNames.size);
          if ((['context', 'scratch'] as string[]).includes(instr.stageName)) {
            warn('ReservedStageName', `Stage name should not use the same name as reserved stage "${instr.stageName}"`, node.argsRange);
          }
        }
        // UndefinedArgInFrom / InvalidDefaultArgInFrom
        const undeclared: string[] = [];
        let expandedDefault = '';
        try {
          expandedDefault = lexWord(instr.image, metaEnvDefaults, {
            escape,
            onLookup: (name) => {
              if (!metaDeclared.has(name) && !PLATFORM_ARGS.includes(name) && !undeclared.includes(name)) undeclared.push(name);
            },
          }).result;
        } catch {
          expandedDefault = '';
        }
        if (instr.platform !== undefined) {
          try {
            lexWord(instr.platform, new Map(), {
              escape,
              onLookup: (name) => {
                if (!metaDeclared.has(name) && !PLATFORM_ARGS.includes(name) && !undeclared.includes(name)) undeclared.push(name);
              },
            });
          } catch {
            // reported by toStages
          }
        }
        for (const name of undeclared) {
          const hint = suggest(name, [...metaDeclared.keys(), ...PLATFORM_ARGS]);
          warn('UndefinedArgInFrom', `FROM argument '${name}' is not declared${hint ? ` (did you mean ${hint}?)` : ''}`, node.argsRange);
        }
        if (instr.image.includes('$') && undeclared.length === 0 && !/^[a-z0-9]/i.test(expandedDefault)) {
          const names = [...metaDeclared.keys()].filter((k) => instr.image.includes(k));
          warn('InvalidDefaultArgInFrom', `Default value for ARG ${instr.image} results in empty or invalid base image name`, node.argsRange);
          void names;
        }
        if (instr.platform !== undefined) {
          if (!instr.platform.includes('$')) {
            const name = instr.stageName ?? '';
            const parts = instr.platform.toLowerCase().split('/');
            if (!parts.some((p) => p !== '' && name.includes(p))) {
              warn('FromPlatformFlagConstDisallowed', `FROM --platform flag should not use constant value "${instr.platform}"`, node.flagRanges[0] ?? node.keywordRange);
            }
          } else if (/^\$\{?TARGETPLATFORM\}?$/.test(instr.platform)) {
            warn('RedundantTargetPlatform', `Setting platform to predefined ${instr.platform} in FROM is redundant as this is the default behavior`, node.flagRanges[0] ?? node.keywordRange);
          }
        }
        break;
      }
      case 'ARG':
        for (const a of instr.args) {
          if (SECRET.test(a.key) && !ALLOWED_SECRET.test(a.key)) warn('SecretsUsedInArgOrEnv', `Do not use ARG or ENV instructions for sensitive data (ARG "${a.key}")`, node.argsRange);
          if (a.default !== undefined && seenFrom) checkUndefined([a.default], node.argsRange);
          if (!seenFrom) {
            metaDeclared.set(a.key, a.default);
            if (a.default !== undefined) {
              try {
                metaEnvDefaults.set(a.key, lexWord(a.default, metaEnvDefaults, { escape }).result);
              } catch {
                metaEnvDefaults.delete(a.key);
              }
            }
          } else stageVars.add(a.key);
        }
        break;
      case 'ENV':
        if (instr.legacy) warn('LegacyKeyValueFormat', `"ENV key=value" should be used instead of legacy "ENV key value" format`, node.argsRange);
        checkUndefined(instr.pairs.map((p) => p.value), node.argsRange);
        for (const p of instr.pairs) {
          if (SECRET.test(p.key) && !ALLOWED_SECRET.test(p.key)) warn('SecretsUsedInArgOrEnv', `Do not use ARG or ENV instructions for sensitive data (ENV "${p.key}")`, node.argsRange);
          stageVars.add(p.key);
        }
        break;
      case 'LABEL':
        if (instr.legacy) warn('LegacyKeyValueFormat', `"LABEL key=value" should be used instead of legacy "LABEL key value" format`, node.argsRange);
        checkUndefined(instr.pairs.flatMap((p) => [p.key, p.value]), node.argsRange);
        break;
      case 'MAINTAINER':
        warn('MaintainerDeprecated', 'Maintainer instruction is deprecated in favor of using label', node.keywordRange);
        break;
      case 'CMD':
      case 'ENTRYPOINT':
      case 'HEALTHCHECK': {
        if (instr.kind !== 'HEALTHCHECK' && instr.cmd.form === 'shell') {
          warn('JSONArgsRecommended', `JSON arguments recommended for ${instr.kind} to prevent unintended behavior related to OS signals`, node.argsRange);
        }
        const list = counts.get(instr.kind) ?? [];
        list.push({ node });
        counts.set(instr.kind, list);
        break;
      }
      case 'WORKDIR': {
        checkUndefined([instr.path], node.argsRange);
        let p = instr.path;
        try {
          p = lexWord(instr.path, new Map(), { escape, skipUnsetEnv: true }).result;
        } catch {
          // reported at expansion time
        }
        if (p.startsWith('/') || p.startsWith('$')) absWorkdir = true;
        else if (!absWorkdir) warn('WorkdirRelativePath', `Relative workdir "${p}" can have unexpected results if the base image changes`, node.argsRange);
        break;
      }
      case 'EXPOSE':
        for (const port of instr.ports) {
          if (port.includes(':')) warn('ExposeInvalidFormat', `EXPOSE instruction should not define an IP address or host-port mapping, found '${port}'`, node.argsRange);
          const slash = port.lastIndexOf('/');
          if (slash >= 0) {
            const proto = port.slice(slash + 1);
            if (proto !== proto.toLowerCase()) warn('ExposeProtoCasing', `Defined protocol '${port}' in EXPOSE instruction should be lowercase`, node.argsRange);
          }
        }
        checkUndefined(instr.ports, node.argsRange);
        break;
      case 'COPY':
      case 'ADD':
        checkUndefined([...instr.sources, instr.dest, ...(instr.from !== undefined ? [instr.from] : []), ...(instr.chown !== undefined ? [instr.chown] : [])], node.argsRange);
        break;
      case 'USER':
        checkUndefined([instr.user], node.argsRange);
        break;
      case 'VOLUME':
        checkUndefined(instr.paths, node.argsRange);
        break;
      case 'STOPSIGNAL':
        checkUndefined([instr.signal], node.argsRange);
        break;
      case 'RUN':
      case 'SHELL':
      case 'ONBUILD':
        break;
    }
  }
  flushCounts();
  return out;
}

/**
 * Parse and lint a Dockerfile: parser warnings (NoEmptyContinuation) plus the
 * checks, minus the rules skipped by `# check=skip=...`. Throws `DockerfileSyntaxError`
 * if the file does not parse.
 */
export function lint(text: string, opts: LintOptions = {}): Warning[] {
  const { ast, warnings } = parseDockerfile(text, { file: opts.file });
  const skip = ast.directives.check?.skip ?? [];
  const parserWarnings = warnings.filter((w) => skip !== 'all' && !skip.some((s) => s.toLowerCase() === w.rule.toLowerCase()));
  return [...parserWarnings, ...lintAst(ast, opts)].sort((a, b) => a.range.start.line - b.range.start.line || a.range.start.col - b.range.start.col);
}
