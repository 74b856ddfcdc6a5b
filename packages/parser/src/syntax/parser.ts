/**
 * The Dockerfile parser: physical lines → logical lines (continuations,
 * comments, directives) → untyped AST nodes with heredocs and source ranges,
 * the same tree BuildKit's `parser.Parse` builds.
 */
import { DockerfileSyntaxError, type Position, type SourceRange } from '../errors.js';
import type { EscapeChar } from '../shell/lex.js';
import { isGoSpace, trimGoSpaceLeft } from '../shell/unicode.js';
import { heredocsFromLine } from './heredoc.js';
import { isSupportedSyntax, matchDirective, parseCheckDirective } from './directives.js';
import { LineError, nodeFromLine, type RawLineNode, type RawNode } from './line-parsers.js';
import type { AstNode, Directives, DockerfileAst, Heredoc } from './types.js';

/** A non-fatal finding of the parser or the linter. */
export interface Warning {
  /** Check rule name, e.g. `NoEmptyContinuation`, `StageNameCasing`. */
  rule: string;
  message: string;
  range: SourceRange;
  url?: string;
}

/** Cap on one logical line (continuations joined), UTF-16 units. */
export const MAX_LOGICAL_LINE = 16 * 1024 * 1024;
/** Cap on one heredoc body, UTF-16 units. */
export const MAX_HEREDOC = 64 * 1024 * 1024;

export const ruleUrl = (rule: string): string =>
  `https://docs.docker.com/go/dockerfile/rule/${rule.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()}/`;

interface PhysLine {
  /** Text without the line ending. */
  text: string;
  /** Text with its line ending (heredoc bodies keep it). */
  raw: string;
}

function splitLines(text: string): PhysLine[] {
  const out: PhysLine[] = [];
  let start = 0;
  while (start < text.length) {
    let nl = text.indexOf('\n', start);
    const end = nl < 0 ? text.length : nl + 1;
    const raw = text.slice(start, end);
    let j = raw.length;
    while (j > 0 && (raw.charCodeAt(j - 1) === 0x0a || raw.charCodeAt(j - 1) === 0x0d)) j--;
    out.push({ text: raw.slice(0, j), raw });
    start = end;
    nl = -1;
  }
  return out;
}

const isComment = (s: string): boolean => trimGoSpaceLeft(s).startsWith('#');

/** Maps offsets in a logical line back to physical positions. */
class OffsetMap {
  private readonly offs: number[] = [];
  private readonly pos: Position[] = [];
  add(offset: number, line: number, col: number): void {
    this.offs.push(offset);
    this.pos.push({ line, col });
  }
  at(offset: number): Position {
    let lo = 0;
    let hi = this.offs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offs[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    const base = this.pos[lo] ?? { line: 1, col: 1 };
    return { line: base.line, col: base.col + (offset - (this.offs[lo] ?? 0)) };
  }
}

const NONE: never[] = Object.freeze([]) as never[];
const NO_ATTRS: { json?: boolean } = Object.freeze({});

/** Options of `parseDockerfile`. */
export interface ParseOptions {
  /** File name used in errors and warnings (default `Dockerfile`). */
  file?: string;
}

/**
 * Parse Dockerfile text into a BuildKit-like AST.
 * Throws `DockerfileSyntaxError` (with file, line and column) on malformed input.
 */
export function parseDockerfile(text: string, opts: ParseOptions = {}): { ast: DockerfileAst; warnings: Warning[] } {
  const file = opts.file ?? 'Dockerfile';
  const fail = (start: Position, end: Position, msg: string): never => {
    throw new DockerfileSyntaxError(file, { start, end }, msg);
  };
  if (typeof text !== 'string') fail({ line: 1, col: 1 }, { line: 1, col: 1 }, `expected the Dockerfile as a string, found ${typeof text}`);
  const lines = splitLines(text);
  if (lines.length > 0 && lines[0].text.startsWith('\uFEFF')) {
    lines[0] = { text: lines[0].text.slice(1), raw: lines[0].raw.slice(1) };
  }

  // Directives: a prefix of lines that match `# name=value` with a known name.
  const directives: Directives = { escape: '\\', ranges: {} };
  for (let i = 0; i < lines.length; i++) {
    const t = trimGoSpaceLeft(lines[i].text);
    const lead = lines[i].text.length - t.length;
    const d = matchDirective(t);
    if (!d) break;
    const range: SourceRange = { start: { line: i + 1, col: lead + 1 }, end: { line: i + 1, col: lines[i].text.length + 1 } };
    const vpos = { line: i + 1, col: lead + d.valueOffset + 1 };
    if (directives.ranges[d.name]) fail(range.start, range.end, `only one ${d.name} parser directive can be used`);
    directives.ranges[d.name] = range;
    if (d.name === 'escape') {
      if (d.value !== '`' && d.value !== '\\') fail(vpos, range.end, `invalid escape token '${d.value}' does not match \` or \\`);
      directives.escape = d.value as EscapeChar;
    } else if (d.name === 'syntax') {
      if (!isSupportedSyntax(d.value)) {
        fail(vpos, range.end, `unsupported syntax image "${d.value}": expected docker/dockerfile:1 (or 1.x, 1.x.y, -labs), which tsbuild's built-in frontend serves`);
      }
      directives.syntax = d.value;
    } else {
      try {
        directives.check = parseCheckDirective(d.value);
      } catch (e) {
        fail(vpos, range.end, (e as Error).message);
      }
    }
  }
  const esc = directives.escape;
  const escCode = esc.charCodeAt(0);
  // continuation: the escape char, not preceded by another one, then only blanks
  const e = esc === '\\' ? '\\\\' : '`';
  const reCont = new RegExp(`(?:([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$)`);
  const trimCont = (s: string): [string, boolean] => {
    const m = reCont.exec(s);
    if (!m) return [s, true];
    return [s.slice(0, m.index) + (m[1] ?? ''), false];
  };

  const warnings: Warning[] = [];
  const children: AstNode[] = [];
  let comments: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const first = lines[i];
    i++;
    if (isComment(first.text)) {
      const c = trimGoSpaceLeft(first.text).slice(1).trim();
      if (c === '') comments = [];
      else comments.push(c);
      continue;
    }
    const startLine = i;
    const stripped = trimGoSpaceLeft(first.text);
    const lead = first.text.length - stripped.length;
    let [seg, eol] = trimCont(stripped);
    if (eol && seg.length === 0) continue;
    const parts: string[] = [seg];
    let size = seg.length;
    const map = new OffsetMap();
    map.add(0, startLine, lead + 1);
    let emptyCont = false;
    while (!eol && i < lines.length) {
      const cur = lines[i];
      i++;
      if (isComment(cur.text)) continue;
      if (trimGoSpaceLeft(cur.text).length === 0) {
        emptyCont = true;
        continue;
      }
      map.add(size, i, 1);
      [seg, eol] = trimCont(cur.text);
      parts.push(seg);
      size += seg.length;
      if (size > MAX_LOGICAL_LINE) {
        fail({ line: startLine, col: lead + 1 }, { line: i, col: 1 }, `logical line starting here is longer than the maximum of ${MAX_LOGICAL_LINE} characters`);
      }
    }
    const line = parts.length === 1 ? parts[0] : parts.join('');
    const lastLine = i;
    const endPos = (): Position => ({ line: lastLine, col: lines[lastLine - 1].text.length + 1 });
    if (emptyCont) {
      warnings.push({
        rule: 'NoEmptyContinuation',
        message: 'Empty continuation line',
        range: { start: { line: startLine, col: lead + 1 }, end: endPos() },
        url: ruleUrl('NoEmptyContinuation'),
      });
    }
    let raw: RawLineNode;
    try {
      raw = nodeFromLine(line, escCode);
    } catch (err) {
      if (err instanceof LineError) fail(map.at(err.offset), endPos(), err.message);
      throw err;
    }
    const heredocs: Heredoc[] = [];
    let target: RawLineNode = raw;
    if (raw.keyword.toLowerCase() === 'onbuild' && raw.next && raw.next.children.length > 0) target = raw.next.children[0];
    const kw = target.keyword.toLowerCase();
    if ((kw === 'run' || kw === 'copy' || kw === 'add') && !target.json && line.includes('<<')) {
      let docs: ReturnType<typeof heredocsFromLine>;
      try {
        docs = heredocsFromLine(line);
      } catch (err) {
        return fail(map.at(raw.argsOffset), endPos(), (err as Error).message.replace(/^failed to process "[^]*?": /, 'invalid heredoc delimiter: '));
      }
      for (const d of docs) {
        const body: string[] = [];
        let bodySize = 0;
        let terminated = false;
        while (i < lines.length) {
          const cur = lines[i];
          i++;
          let possible = cur.text;
          if (d.chomp) possible = possible.replace(/^\t+/, '');
          if (possible === d.name) {
            terminated = true;
            break;
          }
          body.push(cur.raw);
          bodySize += cur.raw.length;
          if (bodySize > MAX_HEREDOC) fail({ line: startLine, col: lead + 1 }, { line: i, col: 1 }, `heredoc "${d.name}" is larger than the maximum of ${MAX_HEREDOC} characters`);
        }
        if (!terminated) {
          fail({ line: startLine, col: lead + 1 }, { line: i, col: 1 }, `unterminated heredoc "${d.name}" started here: expected a line "${d.name}" before the end of the file`);
        }
        heredocs.push({ ...d, content: body.join('') });
      }
    }
    const endLine = i;
    const lastText = lines[endLine - 1]?.text ?? '';
    const range: SourceRange = { start: map.at(raw.keywordOffset), end: { line: endLine, col: lastText.length + 1 } };
    const toAst = (r: RawLineNode, docs: Heredoc[], prev: string[]): AstNode => {
      const kwStart = map.at(r.keywordOffset);
      const argsStart = map.at(r.argsOffset);
      return {
        value: r.keyword,
        next: convertNext(r.next, docs),
        children: [],
        flags: r.flags,
        flagRanges: r.flags.map((f, k) => ({ start: map.at(r.flagOffsets[k]), end: map.at(r.flagOffsets[k] + Math.max(1, f.length)) })),
        attributes: r.json ? { json: true } : {},
        original: r.original,
        heredocs: docs,
        prevComment: prev,
        startLine,
        endLine,
        range: { start: kwStart, end: range.end },
        keywordRange: { start: kwStart, end: map.at(r.keywordOffset + r.keyword.length) },
        argsRange: { start: argsStart, end: range.end },
      };
    };
    const convertNext = (n: RawNode | undefined, docs: Heredoc[]): AstNode | undefined => {
      // iterative to keep deep argument lists off the call stack
      let head: AstNode | undefined;
      let tail: AstNode | undefined;
      for (let cur = n; cur; cur = cur.next) {
        // argument nodes share frozen empty containers: they are never filled
        const a: AstNode = {
          value: cur.value,
          children: cur.children.length === 0 ? NONE : cur.children.map((c) => toAst(c as RawLineNode, docs, [])),
          flags: NONE,
          flagRanges: NONE,
          attributes: NO_ATTRS,
          original: '',
          heredocs: NONE,
          prevComment: NONE,
          startLine,
          endLine,
          range,
          keywordRange: range,
          argsRange: range,
        };
        if (tail) tail.next = a;
        else head = a;
        tail = a;
      }
      return head;
    };
    const isOnbuild = raw.keyword.toLowerCase() === 'onbuild';
    const child = toAst(raw, isOnbuild ? [] : heredocs, comments);
    if (isOnbuild && child.next && child.next.children[0]) child.next.children[0].heredocs = heredocs;
    if (isOnbuild) child.heredocs = heredocs;
    children.push(child);
    comments = [];
  }
  if (children.length === 0) {
    const n = Math.max(1, lines.length);
    fail({ line: n, col: 1 }, { line: n, col: 1 }, 'file with no instructions: expected at least one instruction such as FROM');
  }
  const ast: DockerfileAst = {
    value: '',
    children,
    startLine: children[0].startLine,
    endLine: children[children.length - 1].endLine,
    directives,
    file,
  };
  return { ast, warnings };
}

export { isGoSpace };
