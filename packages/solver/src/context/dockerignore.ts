import dockerignore from '@balena/dockerignore';

// a CommonJS module whose `module.exports` carries the factory as `.default`
const ignore = dockerignore.default;

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
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      parts.pop();
      continue;
    }
    parts.push(seg);
  }
  return parts.join('/');
}

/** Docker's matcher: the last matching pattern wins, and a match on a parent directory covers its children. */
export class IgnoreMatcher {
  private readonly ig: ReturnType<typeof ignore> | undefined;
  readonly patterns: readonly string[];
  /** true when some exception (`!`) exists, so excluded directories must still be walked */
  readonly hasExceptions: boolean;

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      if (p === '!' || p === '') throw new Error(`invalid .dockerignore pattern ${JSON.stringify(p)}: an exclusion needs a pattern`);
    }
    this.patterns = patterns;
    this.ig = patterns.length > 0 ? ignore().add([...patterns]) : undefined;
    this.hasExceptions = patterns.some((p) => p.startsWith('!'));
  }

  /** `rel` is relative to the context root, with `/` separators and no leading `/`. */
  ignores(rel: string): boolean {
    if (!this.ig || rel === '' || rel === '.') return false;
    return this.ig.ignores(rel);
  }
}
