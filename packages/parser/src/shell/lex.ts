/**
 * The Dockerfile shell-word lexer: variable expansion, quote and escape removal,
 * and word splitting, with the same results as BuildKit's `shell.Lex`
 * (ProcessWord / ProcessWords).
 */
import { ShellExpansionError } from '../errors.js';
import { isGoDigit, isGoLetter, isGoSpace } from './unicode.js';
import { PatternError, replacePattern, trimPrefix, trimSuffix } from './pattern.js';

/** Escape characters a Dockerfile may select with `# escape=`. */
export type EscapeChar = '\\' | '`';

/** Options of the lexer; the non-default modes are used internally (heredoc detection). */
export interface LexOptions {
  escape?: EscapeChar;
  /** Keep quote characters in the output. */
  rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters (used for heredoc bodies). */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written. */
  skipUnsetEnv?: boolean;
  /** Called for every variable lookup (used by the UndefinedVar check). */
  onLookup?: (name: string, found: boolean) => void;
}

/** Nesting cap for `${a:-${b:-...}}`: deeper input is an error rather than a stack overflow. */
export const MAX_NESTING = 1000;
/** Cap on the length (UTF-16 units) of one expanded word. */
export const MAX_EXPANDED_LENGTH = 16 * 1024 * 1024;

const EOF = -1;

class Words {
  word = '';
  words: string[] = [];
  inWord = false;
  addChar(ch: number): void {
    if (isGoSpace(ch)) {
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else this.addRawChar(ch);
  }
  addRawChar(ch: number): void {
    this.word += String.fromCodePoint(ch);
    this.inWord = true;
  }
  addString(s: string): void {
    // same as addChar per character, but appending runs of non-space at once
    // (every Go space is in the BMP, so code units suffice)
    let i = 0;
    while (i < s.length) {
      if (isGoSpace(s.charCodeAt(i))) {
        this.addChar(s.charCodeAt(i));
        i++;
        continue;
      }
      let j = i + 1;
      while (j < s.length && !isGoSpace(s.charCodeAt(j))) j++;
      this.word += s.slice(i, j);
      this.inWord = true;
      i = j;
    }
  }
  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  getWords(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class ShellWord {
  private pos = 0;
  private depth = 0;
  private rawEscapes: boolean;
  private readonly escape: number;
  constructor(
    private readonly src: string,
    private readonly env: ReadonlyMap<string, string>,
    private readonly opts: LexOptions,
  ) {
    this.escape = (opts.escape ?? '\\').charCodeAt(0);
    this.rawEscapes = opts.rawEscapes ?? false;
  }

  peek(): number {
    return this.pos < this.src.length ? this.src.codePointAt(this.pos)! : EOF;
  }
  next(): number {
    if (this.pos >= this.src.length) return EOF;
    const cp = this.src.codePointAt(this.pos)!;
    this.pos += cp > 0xffff ? 2 : 1;
    return cp;
  }

  private fail(msg: string): never {
    throw new ShellExpansionError(this.src, msg);
  }

  private getEnv(name: string): [string, boolean] {
    const v = this.env.get(name);
    this.opts.onLookup?.(name, v !== undefined);
    return v === undefined ? ['', false] : [v, true];
  }

  process(): { result: string; words: string[] } {
    return this.processStopOn(EOF, this.rawEscapes);
  }

  processStopOn(stop: number, rawEscapes: boolean): { result: string; words: string[] } {
    if (++this.depth > MAX_NESTING) this.fail(`variable substitutions nested deeper than ${MAX_NESTING} levels`);
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      const result: string[] = [];
      let size = 0;
      const words = new Words();
      const push = (s: string): void => {
        size += s.length;
        if (size > MAX_EXPANDED_LENGTH) this.fail(`expanded value larger than ${MAX_EXPANDED_LENGTH} bytes`);
        result.push(s);
      };
      while (this.peek() !== EOF) {
        let ch = this.peek();
        if (stop !== EOF && ch === stop) {
          this.next();
          return { result: result.join(''), words: words.getWords() };
        }
        if (ch === 0x24 /* $ */) {
          const tmp = this.processDollar();
          push(tmp);
          words.addString(tmp);
        } else if (ch === 0x27 /* ' */ && !this.opts.skipProcessQuotes) {
          const tmp = this.processSingleQuote();
          push(tmp);
          words.addRawString(tmp);
        } else if (ch === 0x22 /* " */ && !this.opts.skipProcessQuotes) {
          const tmp = this.processDoubleQuote();
          push(tmp);
          words.addRawString(tmp);
        } else {
          ch = this.next();
          if (ch === this.escape) {
            if (this.rawEscapes) {
              words.addRawChar(ch);
              push(String.fromCodePoint(ch));
            }
            ch = this.next();
            if (ch === EOF) break;
            words.addRawChar(ch);
          } else {
            words.addChar(ch);
          }
          push(String.fromCodePoint(ch));
        }
      }
      if (stop !== EOF) {
        this.fail(`unexpected end of statement while looking for matching ${String.fromCodePoint(stop)}`);
      }
      return { result: result.join(''), words: words.getWords() };
    } finally {
      this.rawEscapes = saved;
      this.depth--;
    }
  }

  private processSingleQuote(): string {
    // everything up to the next ' is literal; a ' cannot be escaped
    this.next();
    const start = this.pos;
    const end = this.src.indexOf("'", start);
    if (end < 0) this.fail('unexpected end of statement while looking for matching single-quote');
    this.pos = end + 1;
    const body = this.src.slice(start, end);
    return this.opts.rawQuotes ? `'${body}'` : body;
  }

  private processDoubleQuote(): string {
    const parts: string[] = [];
    this.next();
    if (this.opts.rawQuotes) parts.push('"');
    for (;;) {
      const p = this.peek();
      if (p === EOF) this.fail('unexpected end of statement while looking for matching double-quote');
      if (p === 0x22) {
        this.next();
        if (this.opts.rawQuotes) parts.push('"');
        return parts.join('');
      }
      if (p === 0x24) {
        parts.push(this.processDollar());
        continue;
      }
      let ch = this.next();
      if (ch === this.escape) {
        const n = this.peek();
        if (n === EOF) continue; // ignore an escape at the end of the word
        if (n === 0x22 || n === 0x24 || n === this.escape) {
          if (this.rawEscapes) parts.push(String.fromCodePoint(ch));
          ch = this.next();
        }
      }
      parts.push(String.fromCodePoint(ch));
    }
  }

  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      const ch = this.peek();
      if (name.length === 0 && isGoDigit(ch)) {
        while (this.peek() !== EOF && isGoDigit(this.peek())) name += String.fromCodePoint(this.next());
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) return String.fromCodePoint(this.next());
      if (!isGoLetter(ch) && !isGoDigit(ch) && ch !== 0x5f) break;
      name += String.fromCodePoint(this.next());
    }
    return name;
  }

  private processDollar(): string {
    this.next();
    if (this.peek() !== 0x7b /* { */) {
      const name = this.processName();
      if (name === '') return '$';
      const [value, found] = this.getEnv(name);
      if (!found && this.opts.skipUnsetEnv) return '$' + name;
      return value;
    }
    this.next();
    const first = this.peek();
    if (first === EOF) this.fail("syntax error: missing '}'");
    if (first === 0x7b || first === 0x7d || first === 0x3a) this.fail('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let chs = ch === EOF ? '' : String.fromCodePoint(ch);
    let nullIsUnset = false;
    if (ch === 0x7d /* } */) {
      const [value, set] = this.getEnv(name);
      if (!set && this.opts.skipUnsetEnv) return '${' + name + '}';
      return value;
    }
    if (ch === 0x3a /* : */) {
      nullIsUnset = true;
      ch = this.next();
      chs += ch === EOF ? '' : String.fromCodePoint(ch);
    }
    // + - ? # %, or anything after ':'
    if (nullIsUnset || ch === 0x2b || ch === 0x2d || ch === 0x3f || ch === 0x23 || ch === 0x25) {
      {
        const raw = ch === 0x23 || ch === 0x25;
        if (nullIsUnset && raw) this.fail(`unsupported modifier (${chs}) in substitution`);
        let word: string;
        try {
          word = this.processStopOn(0x7d, raw).result;
        } catch (e) {
          if (this.peek() === EOF && !(e instanceof ShellExpansionError && /nested|larger/.test(e.message))) {
            this.fail("syntax error: missing '}'");
          }
          throw e;
        }
        const [value, set] = this.getEnv(name);
        if (this.opts.skipUnsetEnv && !set) return '${' + name + chs + word + '}';
        switch (ch) {
          case 0x2d:
            return !set || (nullIsUnset && value === '') ? word : value;
          case 0x2b:
            return !set || (nullIsUnset && value === '') ? '' : word;
          case 0x3f:
            if (!set) this.fail(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
            if (nullIsUnset && value === '') this.fail(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
            return value;
          case 0x23:
          case 0x25: {
            let greedy = false;
            if (word.length > 0 && word.charCodeAt(0) === ch) {
              greedy = true;
              word = word.slice(1);
            }
            try {
              return ch === 0x25 ? trimSuffix(word, value, greedy) : trimPrefix(word, value, greedy);
            } catch (e) {
              if (e instanceof PatternError) this.fail(`invalid pattern (${word}) in substitution: ${e.message}`);
              throw e;
            }
          }
          default:
            return this.fail(`unsupported modifier (${chs}) in substitution`);
        }
      }
    }
    switch (ch) {
      case 0x2f /* / */: {
        const all = this.peek() === 0x2f;
        if (all) this.next();
        let pattern: string;
        let replacement: string;
        try {
          pattern = this.processStopOn(0x2f, true).result;
        } catch (e) {
          if (this.peek() === EOF && !(e instanceof ShellExpansionError && /nested|larger/.test(e.message))) {
            this.fail("syntax error: missing '/' in ${}");
          }
          throw e;
        }
        try {
          replacement = this.processStopOn(0x7d, true).result;
        } catch (e) {
          if (this.peek() === EOF && !(e instanceof ShellExpansionError && /nested|larger/.test(e.message))) {
            this.fail("syntax error: missing '}'");
          }
          throw e;
        }
        const [value, set] = this.getEnv(name);
        if (this.opts.skipUnsetEnv && !set) return '${' + name + '/' + pattern + '/' + replacement + '}';
        try {
          return replacePattern(pattern, value, replacement, all);
        } catch (e) {
          if (e instanceof PatternError) this.fail(`invalid pattern (${pattern}) in substitution: ${e.message}`);
          throw e;
        }
      }
      default:
        if (ch === EOF) this.fail("syntax error: missing '}'");
        this.fail(`unsupported modifier (${chs}) in substitution`);
    }
  }
}

function isSpecialParam(ch: number): boolean {
  // @ * # ? - $ ! 0
  return ch === 0x40 || ch === 0x2a || ch === 0x23 || ch === 0x3f || ch === 0x2d || ch === 0x24 || ch === 0x21 || ch === 0x30;
}

function wrap(word: string, e: unknown): never {
  if (e instanceof ShellExpansionError) {
    throw new ShellExpansionError(word, `failed to process "${word.length > 200 ? word.slice(0, 200) + '…' : word}": ${e.message}`);
  }
  throw e;
}

/** Full lexer entry point: both the joined result and the split words. */
export function lexWord(word: string, env: ReadonlyMap<string, string>, opts: LexOptions = {}): { result: string; words: string[] } {
  try {
    return new ShellWord(word, env, opts).process();
  } catch (e) {
    return wrap(word, e);
  }
}

/**
 * Expand variables and remove quotes/escapes in one Dockerfile word (BuildKit `ProcessWord`).
 * White space is kept as is. Throws `ShellExpansionError`.
 */
export function expandWord(word: string, env: ReadonlyMap<string, string>, opts?: { escape?: EscapeChar }): string {
  return lexWord(word, env, { escape: opts?.escape }).result;
}

/**
 * Like `expandWord`, but split the result into words at unquoted white space,
 * including white space produced by unquoted expansions (BuildKit `ProcessWords`).
 */
export function expandWords(word: string, env: ReadonlyMap<string, string>, opts?: { escape?: EscapeChar }): string[] {
  return lexWord(word, env, { escape: opts?.escape }).words;
}
