/**
 * Splitting one logical line into keyword, flags and argument nodes, per
 * keyword, with the same results as BuildKit's `line_parsers.go`.
 * Offsets are UTF-16 indexes into the logical line, used for source ranges.
 */
import { isGoSpace, trimGoSpaceLeft } from '../shell/unicode.js';

/** A bare argument node before ranges are attached. */
export interface RawNode {
  value: string;
  next?: RawNode;
  children: RawLineNode[];
}

export interface RawLineNode extends RawNode {
  keyword: string;
  keywordOffset: number;
  flags: string[];
  flagOffsets: number[];
  argsOffset: number;
  json: boolean;
  original: string;
}

/** An error found while splitting a line; `offset` indexes the logical line. */
export class LineError extends Error {
  override name = 'LineError';
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const WS = /[\t\v\f\r ]+/;
const isWsByte = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0b || c === 0x0c || c === 0x0d;

/** Go strings.TrimSpace, returning the number of units removed on the left. */
function trimWithOffset(s: string): [string, number] {
  const left = trimGoSpaceLeft(s);
  const removed = s.length - left.length;
  let j = left.length;
  while (j > 0 && isGoSpace(left.charCodeAt(j - 1))) j--;
  return [left.slice(0, j), removed];
}

/** BuildKit `extractBuilderFlags`: leading `--flag` words; returns the rest and its offset. */
function extractBuilderFlags(line: string, escape: number): { rest: string; restOffset: number; flags: string[]; offsets: number[] } {
  const IN_SPACES = 0, IN_WORD = 1, IN_QUOTE = 2;
  const flags: string[] = [];
  const offsets: number[] = [];
  let phase = IN_SPACES;
  let word = '';
  let wordStart = 0;
  let quote = 0;
  let blankOK = false;
  let ch = 0;
  for (let pos = 0; pos <= line.length; pos++) {
    if (pos !== line.length) ch = line.charCodeAt(pos);
    if (phase === IN_SPACES) {
      if (pos === line.length) break;
      if (isGoSpace(ch)) continue;
      if (ch !== 0x2d || pos + 1 === line.length || line.charCodeAt(pos + 1) !== 0x2d) {
        return { rest: line.slice(pos), restOffset: pos, flags, offsets };
      }
      phase = IN_WORD;
      wordStart = pos;
    }
    if ((phase === IN_WORD || phase === IN_QUOTE) && pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) {
        flags.push(word);
        offsets.push(wordStart);
      }
      break;
    }
    if (phase === IN_WORD) {
      if (isGoSpace(ch)) {
        phase = IN_SPACES;
        if (word === '--') return { rest: line.slice(pos), restOffset: pos, flags, offsets };
        if (blankOK || word.length > 0) {
          flags.push(word);
          offsets.push(wordStart);
        }
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        phase = IN_QUOTE;
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === line.length) continue;
        pos++;
        ch = line.charCodeAt(pos);
      }
      word += String.fromCharCode(ch);
      continue;
    }
    if (phase === IN_QUOTE) {
      if (ch === quote) {
        phase = IN_WORD;
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === line.length) {
          phase = IN_WORD;
          continue;
        }
        pos++;
        ch = line.charCodeAt(pos);
      }
      word += String.fromCharCode(ch);
    }
  }
  return { rest: '', restOffset: line.length, flags, offsets };
}

/** BuildKit `parseWords`: words keep their quotes and escape pairs. */
export function parseWords(rest: string, escape: number): string[] {
  const IN_SPACES = 0, IN_WORD = 1, IN_QUOTE = 2;
  const words: string[] = [];
  let phase = IN_SPACES;
  let word = '';
  let quote = 0;
  let blankOK = false;
  let ch = 0;
  let w = 0;
  const at = (pos: number): void => {
    ch = rest.codePointAt(pos)!;
    w = ch > 0xffff ? 2 : 1;
  };
  for (let pos = 0; pos <= rest.length; pos += w) {
    if (pos !== rest.length) at(pos);
    else w = 1;
    if (phase === IN_SPACES) {
      if (pos === rest.length) break;
      if (isGoSpace(ch)) continue;
      phase = IN_WORD;
    }
    if ((phase === IN_WORD || phase === IN_QUOTE) && pos === rest.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === IN_WORD) {
      if (isGoSpace(ch)) {
        phase = IN_SPACES;
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        phase = IN_QUOTE;
      }
      if (ch === escape) {
        if (pos + w === rest.length) continue;
        word += String.fromCodePoint(ch);
        pos += w;
        at(pos);
      }
      word += String.fromCodePoint(ch);
      continue;
    }
    if (phase === IN_QUOTE) {
      if (ch === quote) phase = IN_WORD;
      if (ch === escape && quote !== 0x27) {
        if (pos + w === rest.length) {
          phase = IN_WORD;
          continue;
        }
        pos += w;
        word += String.fromCodePoint(ch);
        at(pos);
      }
      word += String.fromCodePoint(ch);
    }
  }
  return words;
}

const node = (value: string, next?: RawNode): RawNode => ({ value, next, children: [] });

function chain(values: string[]): RawNode | undefined {
  let head: RawNode | undefined;
  for (let i = values.length - 1; i >= 0; i--) head = node(values[i], head);
  return head;
}

function parseStringsWhitespaceDelimited(rest: string): RawNode | undefined {
  if (rest === '') return undefined;
  return chain(rest.split(WS));
}

/** The JSON-array rule: undefined = not JSON (fall back), throws if JSON with non-strings. */
function parseJSON(rest: string, offset: number): string[] | undefined {
  const t = trimGoSpaceLeft(rest);
  if (!t.startsWith('[')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v)) return undefined;
  if (!v.every((x) => typeof x === 'string')) {
    throw new LineError('when using JSON array syntax, arrays must be comprised of strings only', offset);
  }
  return v as string[];
}

type Parsed = { next?: RawNode; json: boolean };

function parseMaybeJSON(rest: string, offset: number): Parsed {
  if (rest === '') return { json: false };
  const j = parseJSON(rest, offset);
  if (j) return { next: chain(j), json: true };
  return { next: node(rest), json: false };
}

function parseMaybeJSONToList(rest: string, offset: number): Parsed {
  const j = parseJSON(rest, offset);
  if (j) return { next: chain(j), json: true };
  return { next: parseStringsWhitespaceDelimited(rest), json: false };
}

function parseNameVal(rest: string, key: string, escape: number, offset: number): RawNode | undefined {
  const words = parseWords(rest, escape);
  if (words.length === 0) return undefined;
  if (!words[0].includes('=')) {
    const m = WS.exec(rest);
    if (!m) throw new LineError(`${key} must have two arguments`, offset);
    return node(rest.slice(0, m.index), node(rest.slice(m.index + m[0].length), node('')));
  }
  const triples: string[] = [];
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq < 0) throw new LineError(`Syntax error - can't find = in ${JSON.stringify(w)}. Must be of the form: name=value`, offset);
    triples.push(w.slice(0, eq), w.slice(eq + 1), '=');
  }
  return chain(triples);
}

function parseHealthConfig(rest: string, offset: number): Parsed {
  let sep = 0;
  while (sep < rest.length && !isGoSpace(rest.charCodeAt(sep))) sep++;
  let nxt = sep;
  while (nxt < rest.length && isGoSpace(rest.charCodeAt(nxt))) nxt++;
  if (sep === 0) return { json: false };
  const cmd = parseMaybeJSON(rest.slice(nxt), offset + nxt);
  return { next: node(rest.slice(0, sep), cmd.next), json: cmd.json };
}

/** BuildKit `newNodeFromLine` on the logical line `line` (which starts at `base` in the full logical line). */
export function nodeFromLine(line: string, escape: number, base = 0): RawLineNode {
  const [trimmed, lead] = trimWithOffset(line);
  const m = WS.exec(trimmed);
  const keyword = m ? trimmed.slice(0, m.index) : trimmed;
  let rest = '';
  let restOffset = base + lead + trimmed.length;
  let flags: string[] = [];
  let flagOffsets: number[] = [];
  if (m) {
    const after = m.index + m[0].length;
    const ex = extractBuilderFlags(trimmed.slice(after), escape);
    flags = ex.flags;
    flagOffsets = ex.offsets.map((o) => base + lead + after + o);
    const [r, l] = trimWithOffset(ex.rest);
    rest = r;
    restOffset = base + lead + after + ex.restOffset + l;
  }
  let parsed: Parsed = { json: false };
  const children: RawLineNode[] = [];
  switch (keyword.toLowerCase()) {
    case 'add':
    case 'copy':
    case 'volume':
      parsed = parseMaybeJSONToList(rest, restOffset);
      break;
    case 'arg':
      parsed = { next: chain(parseWords(rest, escape)), json: false };
      break;
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      parsed = parseMaybeJSON(rest, restOffset);
      break;
    case 'env':
      parsed = { next: parseNameVal(rest, 'ENV', escape, restOffset), json: false };
      break;
    case 'label':
      parsed = { next: parseNameVal(rest, 'LABEL', escape, restOffset), json: false };
      break;
    case 'expose':
    case 'from':
      parsed = { next: parseStringsWhitespaceDelimited(rest), json: false };
      break;
    case 'healthcheck':
      parsed = parseHealthConfig(rest, restOffset);
      break;
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      parsed = { next: rest === '' ? undefined : node(rest), json: false };
      break;
    case 'onbuild':
      if (rest !== '') {
        const child = nodeFromLine(rest, escape, restOffset);
        parsed = { next: { value: '', children: [child] }, json: false };
      }
      break;
    default:
      // unknown instruction: kept without arguments; the instruction parser reports it
      break;
  }
  return {
    value: keyword,
    keyword,
    keywordOffset: base + lead,
    flags,
    flagOffsets,
    argsOffset: restOffset,
    next: parsed.next,
    json: parsed.json,
    children,
    original: line,
  };
}
