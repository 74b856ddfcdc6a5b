/** BuildKit's `BFlags`: the `--name[=value]` flags of one instruction. */
import { ValueError } from './values.js';

export type FlagType = 'bool' | 'string' | 'strings';

export interface ParsedFlags {
  bools: Map<string, boolean>;
  strings: Map<string, string>;
  lists: Map<string, string[]>;
}

/** Thrown for a bad flag; `index` is the flag's position in the instruction's flag list. */
export class FlagError extends ValueError {
  constructor(
    message: string,
    readonly index: number,
  ) {
    super(message);
  }
}

/** Parse `flags` against `spec`; unknown, duplicate and malformed flags are errors. */
export function parseFlags(flags: readonly string[], spec: Readonly<Record<string, FlagType>>): ParsedFlags {
  const out: ParsedFlags = { bools: new Map(), strings: new Map(), lists: new Map() };
  const used = new Set<string>();
  for (let i = 0; i < flags.length; i++) {
    const arg = flags[i];
    if (!arg.startsWith('--')) throw new FlagError(`arg should start with -- : ${arg}`, i);
    if (arg === '--') break;
    const body = arg.slice(2);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const value = eq < 0 ? '' : body.slice(eq + 1);
    const hasValue = eq >= 0;
    const type = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (!type) {
      const known = Object.keys(spec);
      throw new FlagError(`unknown flag: --${name}; expected ${known.length ? known.map((k) => '--' + k).join(', ') : 'no flags'}`, i);
    }
    if (used.has(name) && type !== 'strings') throw new FlagError(`duplicate flag specified: --${name}`, i);
    used.add(name);
    if (type === 'bool') {
      if (hasValue && value === '') throw new FlagError(`missing a value on flag: --${name}`, i);
      const v = value.toLowerCase();
      if (v === 'true' || v === '') out.bools.set(name, true);
      else if (v === 'false') out.bools.set(name, false);
      else throw new FlagError(`expecting boolean value for flag --${name}, not: ${value}`, i);
    } else {
      if (!hasValue) throw new FlagError(`missing a value on flag: --${name}`, i);
      if (type === 'string') out.strings.set(name, value);
      else out.lists.set(name, [...(out.lists.get(name) ?? []), value]);
    }
  }
  return out;
}
