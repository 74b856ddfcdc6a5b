/**
 * Shell patterns of `${var#pat}`, `${var%pat}` and `${var/pat/rep}`, matched like
 * BuildKit (which converts them to Go regexps: `*` is `.*`/`.*?`, `?` is `.`, and
 * neither matches a newline). We simulate the pattern as an NFA instead of using
 * a backtracking JS RegExp, so matching is O(value × pattern) even for
 * pathological patterns such as `*a*a*a*b`.
 */

type Token = { t: 'star' } | { t: 'any' } | { t: 'lit'; c: number };

export class PatternError extends Error {
  override name = 'PatternError';
}

/** Tokenize a pattern; `\` escapes `*`, `?`, `\`; `\}` and `\/` drop the backslash. */
export function tokenizePattern(pattern: string): Token[] {
  const cps = Array.from(pattern, (c) => c.codePointAt(0)!);
  const out: Token[] = [];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    if (c === 0x2a) out.push({ t: 'star' });
    else if (c === 0x3f) out.push({ t: 'any' });
    else if (c === 0x5c) {
      const n = cps[i + 1];
      if (n === 0x7d || n === 0x2f) continue; // the next char is taken literally on the next round
      i++;
      if (n !== 0x2a && n !== 0x3f && n !== 0x5c) {
        throw new PatternError(`invalid escape '\\${n === undefined ? '' : String.fromCodePoint(n)}'`);
      }
      out.push({ t: 'lit', c: n });
    } else out.push({ t: 'lit', c });
  }
  return out;
}

/** Stepper over the NFA whose states are token indices (tokens.length = accept). */
class Nfa {
  private readonly mark: Uint32Array;
  private gen = 1;
  constructor(private readonly tokens: Token[]) {
    this.mark = new Uint32Array(tokens.length + 1);
  }
  /** Add state and its epsilon closure (a star can match nothing). */
  private add(states: number[], s: number): void {
    for (;;) {
      if (this.mark[s] === this.gen) return;
      this.mark[s] = this.gen;
      states.push(s);
      if (s < this.tokens.length && this.tokens[s].t === 'star') s++;
      else return;
    }
  }
  start(): number[] {
    this.gen++;
    const st: number[] = [];
    this.add(st, 0);
    return st;
  }
  step(states: number[], c: number): number[] {
    this.gen++;
    const next: number[] = [];
    for (const s of states) {
      if (s >= this.tokens.length) continue;
      const tok = this.tokens[s];
      if (tok.t === 'star') {
        if (c !== 0x0a) this.add(next, s);
      } else if (tok.t === 'any') {
        if (c !== 0x0a) this.add(next, s + 1);
      } else if (tok.c === c) this.add(next, s + 1);
    }
    return next;
  }
  accepts(states: number[]): boolean {
    return states.includes(this.tokens.length);
  }
}

/**
 * Length (in code points) of the shortest (`greedy` false) or longest prefix of
 * `value` starting at `from` that the pattern matches, or -1 if none.
 */
function matchPrefix(tokens: Token[], value: number[], from: number, greedy: boolean): number {
  const nfa = new Nfa(tokens);
  let states = nfa.start();
  let best = -1;
  if (nfa.accepts(states)) {
    if (!greedy) return 0;
    best = 0;
  }
  for (let i = from; i < value.length && states.length > 0; i++) {
    states = nfa.step(states, value[i]);
    if (nfa.accepts(states)) {
      best = i + 1 - from;
      if (!greedy) return best;
    }
  }
  return best;
}

const cpsOf = (s: string): number[] => Array.from(s, (c) => c.codePointAt(0)!);
const strOf = (cps: number[], from = 0, to = cps.length): string => {
  let out = '';
  for (let i = from; i < to; i += 4096) out += String.fromCodePoint(...cps.slice(i, Math.min(to, i + 4096)));
  return out;
};

/** `${value#pattern}` / `${value##pattern}`. */
export function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const tokens = tokenizePattern(pattern);
  const v = cpsOf(value);
  const n = matchPrefix(tokens, v, 0, greedy);
  return n < 0 ? value : strOf(v, n);
}

/** `${value%pattern}` / `${value%%pattern}`: match the reversed pattern on the reversed value. */
export function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  const tokens = tokenizePattern(pattern).reverse();
  const v = cpsOf(value).reverse();
  const n = matchPrefix(tokens, v, 0, greedy);
  if (n < 0) return value;
  return strOf(v.slice(n).reverse());
}

/** Go `Regexp.Expand` template handling for a pattern without groups: `$0`/`${0}` is the match, `$$` is `$`. */
function expandTemplate(template: string, match: string): string {
  if (!template.includes('$')) return template;
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== '$') {
      out += c;
      continue;
    }
    if (template[i + 1] === '$') {
      out += '$';
      i++;
      continue;
    }
    let name: string | undefined;
    let end = i + 1;
    if (template[i + 1] === '{') {
      const close = template.indexOf('}', i + 2);
      const inner = close < 0 ? '' : template.slice(i + 2, close);
      if (close >= 0 && /^[A-Za-z0-9_]+$/.test(inner)) {
        name = inner;
        end = close + 1;
      }
    } else {
      const m = /^[A-Za-z0-9_]+/.exec(template.slice(i + 1));
      if (m) {
        name = m[0];
        end = i + 1 + m[0].length;
      }
    }
    if (name === undefined) {
      out += '$'; // malformed: Go writes the `$` literally
      continue;
    }
    if (/^[0-9]+$/.test(name) && Number(name) === 0) out += match;
    i = end - 1;
  }
  return out;
}

/**
 * Leftmost-longest match at or after `from` (what a leftmost-first Go regexp with
 * greedy stars finds for these patterns), in one O(n × m) pass: each NFA state
 * remembers the smallest start position that reaches it.
 */
function leftmostLongest(tokens: Token[], v: number[], from: number): [number, number] | undefined {
  const m = tokens.length;
  let cur = new Map<number, number>();
  let best: [number, number] | undefined;
  const addClosure = (set: Map<number, number>, s: number, start: number): void => {
    for (;;) {
      const prev = set.get(s);
      if (prev !== undefined && prev <= start) return;
      set.set(s, start);
      if (s < m && tokens[s].t === 'star') s++;
      else return;
    }
  };
  const consider = (set: Map<number, number>, end: number): void => {
    const start = set.get(m);
    if (start === undefined) return;
    if (!best || start < best[0] || (start === best[0] && end > best[1])) best = [start, end];
  };
  for (let i = from; ; i++) {
    if (!best) addClosure(cur, 0, i);
    consider(cur, i);
    if (i >= v.length) break;
    const c = v[i];
    const next = new Map<number, number>();
    for (const [s, start] of cur) {
      if (s >= m || (best && start > best[0])) continue;
      const tok = tokens[s];
      if (tok.t === 'star') {
        if (c !== 0x0a) addClosure(next, s, start);
      } else if (tok.t === 'any') {
        if (c !== 0x0a) addClosure(next, s + 1, start);
      } else if (tok.c === c) addClosure(next, s + 1, start);
    }
    cur = next;
    if (best && cur.size === 0) break;
  }
  return best;
}

/** `${value/pattern/replacement}` (first match) and `${value//pattern/replacement}` (all, Go ReplaceAllString). */
export function replacePattern(pattern: string, value: string, replacement: string, all: boolean): string {
  const tokens = tokenizePattern(pattern);
  const v = cpsOf(value);
  const find = (from: number): [number, number] | undefined => leftmostLongest(tokens, v, from);
  if (!all) {
    const m = find(0);
    if (!m) return value;
    return strOf(v, 0, m[0]) + replacement + strOf(v, m[1]);
  }
  let out = '';
  let lastEnd = 0;
  let search = 0;
  while (search <= v.length) {
    const m = find(search);
    if (!m) break;
    out += strOf(v, lastEnd, m[0]);
    if (m[1] > lastEnd || m[0] === 0) out += expandTemplate(replacement, strOf(v, m[0], m[1]));
    lastEnd = m[1];
    search = search + 1 > m[1] ? search + 1 : m[1];
  }
  return out + strOf(v, lastEnd);
}
