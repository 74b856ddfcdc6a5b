/**
 * `.dockerignore` reading and matching with Docker's rules (moby/patternmatcher):
 * `*` any run of non-`/` characters, `?` one, `[...]` classes, `**` any number of
 * segments, `\` escapes; a leading `!` makes an exception; the last matching pattern
 * wins, and a pattern matching a parent directory covers everything below it.
 * (@balena/dockerignore disagreed with Docker on several table rows, e.g. `abc/**`
 * vs `abc` and escapes, so the matcher is implemented here.)
 */

/**
 * Reads a .dockerignore file the way Docker does: a UTF-8 BOM is dropped, lines whose
 * first character is `#` are comments, each line is trimmed, blank lines dropped, a
 * leading `/` removed (also after `!`), and patterns path-cleaned.
 */
export function parseDockerignore(text: string): string[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const out: string[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    if (rawLine.startsWith('#')) continue;
    let line = rawLine.trim();
    if (line === '') continue;
    let neg = false;
    if (line.startsWith('!')) {
      neg = true;
      line = line.slice(1).trim();
    }
    line = cleanPattern(line);
    out.push(neg ? `!${line}` : line);
  }
  return out;
}

function cleanPattern(p: string): string {
  const parts: string[] = [];
  const abs = p.startsWith('/');
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
      else if (!abs) parts.push('..');
      continue;
    }
    parts.push(seg);
  }
  return parts.join('/');
}

const REGEX_SPECIAL = new Set(['.', '+', '(', ')', '|', '{', '}', '$']);

/** Compiles one (cleaned, non-negated) pattern to a RegExp, as patternmatcher does. */
export function compilePattern(pattern: string): RegExp {
  let re = '^';
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === '*') {
      if (chars[i + 1] === '*') {
        i++;
        // `**/` is `**`: the slash is eaten
        if (chars[i + 1] === '/') i++;
        if (i + 1 >= chars.length) re += '.*';
        else re += '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '\\') {
      if (i + 1 < chars.length) {
        const next = chars[++i];
        re += /[A-Za-z0-9]/.test(next) ? next : `\\${next}`;
      } else {
        re += '\\\\';
      }
    } else if (REGEX_SPECIAL.has(ch)) {
      re += `\\${ch}`;
    } else if (ch === '/' ) {
      re += '/';
    } else {
      re += ch;
    }
  }
  re += '$';
  try {
    return new RegExp(re, 'u');
  } catch (err) {
    throw new Error(`invalid .dockerignore pattern ${JSON.stringify(pattern)}: ${(err as Error).message}`);
  }
}

interface Compiled {
  exclusion: boolean;
  re: RegExp;
}

/** Docker's matcher: the last matching pattern wins, and a match on a parent directory covers its children. */
export class IgnoreMatcher {
  private readonly compiled: Compiled[];
  readonly patterns: readonly string[];
  /** true when some exception (`!`) exists, so excluded directories must still be walked */
  readonly hasExceptions: boolean;

  constructor(patterns: readonly string[]) {
    this.compiled = [];
    for (const raw of patterns) {
      let p = raw.trim();
      const exclusion = p.startsWith('!');
      if (exclusion) p = p.slice(1);
      if (p === '') throw new Error(`invalid .dockerignore pattern ${JSON.stringify(raw)}: ${exclusion ? 'an exclusion needs a pattern' : 'empty pattern'}`);
      this.compiled.push({ exclusion, re: compilePattern(cleanPattern(p)) });
    }
    this.patterns = patterns;
    this.hasExceptions = this.compiled.some((c) => c.exclusion);
  }

  /** `rel` is relative to the context root, with `/` separators and no leading `/`. */
  ignores(rel: string): boolean {
    if (this.compiled.length === 0 || rel === '' || rel === '.') return false;
    const parents = rel.split('/');
    parents.pop();
    let matched = false;
    for (const c of this.compiled) {
      let m = c.re.test(rel);
      if (!m) {
        let prefix = '';
        for (const seg of parents) {
          prefix = prefix === '' ? seg : `${prefix}/${seg}`;
          if (c.re.test(prefix)) {
            m = true;
            break;
          }
        }
      }
      if (m) matched = !c.exclusion;
    }
    return matched;
  }
}
