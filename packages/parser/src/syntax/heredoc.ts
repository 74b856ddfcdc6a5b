/** Heredoc detection (`<<EOF`, `<<-EOF`, `<<'EOF'`, `3<<EOF`) as BuildKit does it. */
import { lexWord } from '../shell/lex.js';
import type { Heredoc } from './types.js';

const RE_HEREDOC = /^(\d*)<<(-?)([^<]*)$/;
const EMPTY = new Map<string, string>();

/** The heredoc a single word introduces, or undefined. Throws the lexer's error for malformed delimiters. */
export function parseHeredocWord(src: string): Omit<Heredoc, 'content'> | undefined {
  const m = RE_HEREDOC.exec(src);
  if (!m) return undefined;
  const fd = m[1] === '' ? 0 : Number(m[1]);
  const chomp = m[2] === '-';
  const rest = m[3];
  if (rest.length === 0) return undefined;
  const words = lexWord(rest, EMPTY, { skipUnsetEnv: true }).words;
  if (words.length !== 1) return undefined;
  const raw = lexWord(rest, EMPTY, { skipUnsetEnv: true, rawQuotes: true }).words;
  if (raw.length !== 1) return undefined;
  const quotes = (s: string): number => s.split(/['"]/).length - 1;
  return { name: words[0], expand: quotes(words[0]) === quotes(raw[0]), chomp, fileDescriptor: Number.isSafeInteger(fd) ? fd : 0 };
}

/** All heredocs introduced on an instruction line, in order. */
export function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = lexWord(line, EMPTY, { rawQuotes: true, rawEscapes: true }).words;
  } catch {
    return []; // BuildKit ignores lexing errors here: no heredocs
  }
  const docs: Omit<Heredoc, 'content'>[] = [];
  for (const w of words) {
    const h = parseHeredocWord(w);
    if (h) docs.push(h);
  }
  return docs;
}

/** Remove leading tabs from every line of a `<<-` heredoc body (BuildKit `ChompHeredocContent`). */
export function chompHeredocContent(src: string): string {
  return src.replace(/^\t+/gm, '');
}
