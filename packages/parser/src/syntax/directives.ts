/** Parser directives: `# syntax=`, `# escape=`, `# check=` (only at the very top of the file). */
import type { CheckDirective } from './types.js';

const RE_DIRECTIVE = /^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$/;
const VALID = new Set(['syntax', 'escape', 'check']);

/** A directive candidate on one line; undefined when the line is not a directive. */
export function matchDirective(line: string): { name: string; value: string; valueOffset: number } | undefined {
  const m = RE_DIRECTIVE.exec(line);
  if (!m) return undefined;
  const name = m[1].toLowerCase();
  if (!VALID.has(name)) return undefined;
  return { name, value: m[2], valueOffset: line.lastIndexOf(m[2]) };
}

const SYNTAX = /^(?:docker\.io\/)?docker\/dockerfile(?::(1(?:\.\d+){0,2})(-labs)?)?(@sha256:[a-f0-9]{64})?$/;

/**
 * Whether a `# syntax=` image is served by our built-in frontend:
 * `docker/dockerfile` or `docker.io/docker/dockerfile`, untagged or tagged `1`, `1.x`, `1.x.y`,
 * optionally `-labs`, optionally pinned by digest.
 */
export function isSupportedSyntax(image: string): boolean {
  return SYNTAX.test(image);
}

/** Parse `skip=A,B;error=true`. Throws a plain Error with a lowercase message on bad input. */
export function parseCheckDirective(value: string): CheckDirective {
  const out: CheckDirective = { skip: [], error: false };
  for (const part of value.split(';')) {
    const p = part.trim();
    if (p === '') continue;
    const eq = p.indexOf('=');
    if (eq < 0) throw new Error(`invalid check directive "${p}": expected key=value`);
    const key = p.slice(0, eq).trim().toLowerCase();
    const v = p.slice(eq + 1).trim();
    if (key === 'skip') {
      const names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
      out.skip = names.some((n) => n.toLowerCase() === 'all') ? 'all' : names;
    } else if (key === 'error') {
      const b = parseGoBool(v);
      if (b === undefined) throw new Error(`invalid check directive error value "${v}": expected true or false`);
      out.error = b;
    } else if (key === 'experimental') {
      // experimental rules are accepted and ignored: we implement none
    } else {
      throw new Error(`invalid check directive key "${key}": expected skip, error or experimental`);
    }
  }
  return out;
}

/** Go `strconv.ParseBool`. */
export function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}
