/** `RUN --mount=...` parsing, with BuildKit's keys, aliases, defaults and validation. */
import { parseGoBool } from '../syntax/directives.js';
import type { RunMount } from './types.js';
import { parseCsvRecord, parseRamBytes, ValueError } from './values.js';

const TYPES = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'] as const;
const SHARING = ['shared', 'private', 'locked'] as const;

/**
 * Parse one mount spec. With `expand` given, every value is expanded first
 * (BuildKit expands mount values at dispatch). Without it, numeric values that
 * use variables are left unset instead of rejected.
 */
export function parseMount(spec: string, expand?: (word: string) => string): RunMount {
  const fields = parseCsvRecord(spec);
  const m: RunMount = { type: 'bind', spec, readonly: true };
  let roAuto = true;
  const deferred = (v: string): boolean => expand === undefined && v.includes('$');
  const bool = (key: string, v: string): boolean => {
    const b = parseGoBool(v);
    if (b === undefined) throw new ValueError(`invalid value "${v}" for mount option ${key}: expected true or false`);
    return b;
  };
  const uint = (key: string, v: string, radix: 8 | 10): number | undefined => {
    if (deferred(v)) return undefined;
    const re = radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
    const n = re.test(v) ? Number.parseInt(v, radix) : NaN;
    if (!Number.isFinite(n) || n > 0xffffffff) throw new ValueError(`invalid value ${v} for mount option ${key}: expected an unsigned ${radix === 8 ? 'octal' : 'decimal'} number`);
    return n;
  };
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro') {
        m.readonly = true;
        roAuto = false;
      } else if (key === 'readwrite' || key === 'rw') {
        m.readonly = false;
        roAuto = false;
      } else if (key === 'required') {
        if (m.type !== 'secret' && m.type !== 'ssh') throw new ValueError(`unexpected key 'required' for mount type '${m.type}'`);
        m.required = true;
      } else {
        throw new ValueError(`invalid field '${field}' must be a key=value pair`);
      }
      continue;
    }
    let value = field.slice(eq + 1);
    if (expand) value = expand(value);
    switch (key) {
      case 'type': {
        const t = value.toLowerCase();
        if (!deferred(value) && !(TYPES as readonly string[]).includes(t)) throw new ValueError(`unsupported mount type "${value}": expected one of ${TYPES.join(', ')}`);
        if (!deferred(value)) m.type = t as RunMount['type'];
        break;
      }
      case 'from':
        m.from = value;
        break;
      case 'source':
      case 'src':
        m.source = value;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = value;
        break;
      case 'readonly':
      case 'ro':
        if (!deferred(value)) m.readonly = bool(key, value);
        roAuto = false;
        break;
      case 'readwrite':
      case 'rw':
        if (!deferred(value)) m.readonly = !bool(key, value);
        roAuto = false;
        break;
      case 'required':
        if (m.type !== 'secret' && m.type !== 'ssh') throw new ValueError(`unexpected key 'required' for mount type '${m.type}'`);
        if (!deferred(value)) m.required = bool(key, value);
        break;
      case 'id':
        m.id = value;
        break;
      case 'sharing': {
        const s = value.toLowerCase();
        if (value !== '' && !deferred(value) && !(SHARING as readonly string[]).includes(s)) throw new ValueError(`unsupported sharing value "${value}": expected one of ${SHARING.join(', ')}`);
        if (value !== '' && !deferred(value)) m.sharing = s as RunMount['sharing'];
        break;
      }
      case 'mode':
        m.mode = uint(key, value, 8);
        break;
      case 'uid':
        m.uid = uint(key, value, 10);
        break;
      case 'gid':
        m.gid = uint(key, value, 10);
        break;
      case 'env':
        m.env = value;
        break;
      case 'size':
        if (m.type !== 'tmpfs') throw new ValueError(`unexpected key 'size' for mount type '${m.type}'`);
        if (!deferred(value)) m.size = parseRamBytes(value);
        break;
      default:
        throw new ValueError(`unexpected key '${key}' in '${field}'`);
    }
  }
  const fileInfoAllowed = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache';
  if (!fileInfoAllowed) {
    if (/(^|,)mode=/i.test(spec)) throw new ValueError(`mode not allowed for "${m.type}" type mounts`);
    if (/(^|,)uid=/i.test(spec)) throw new ValueError(`uid not allowed for "${m.type}" type mounts`);
    if (/(^|,)gid=/i.test(spec)) throw new ValueError(`gid not allowed for "${m.type}" type mounts`);
  }
  if (roAuto) m.readonly = !(m.type === 'cache' || m.type === 'tmpfs');
  if (m.sharing !== undefined && m.type !== 'cache') throw new ValueError(`invalid cache sharing set for ${m.type} mount`);
  if (m.type === 'cache' && m.sharing === undefined) m.sharing = 'shared';
  if (m.type === 'secret') {
    if (m.from !== undefined) throw new ValueError('secret mount should not have a from');
    if (m.source !== undefined && m.id !== undefined) throw new ValueError("both source and id can't be set");
    if (m.source !== undefined) m.id = m.source;
    if (m.id === undefined && m.target === undefined && m.env === undefined) {
      throw new ValueError('invalid secret mount: expected one of id, source, target or env');
    }
  }
  if ((m.type === 'bind' || m.type === 'cache' || m.type === 'tmpfs') && (m.target === undefined || m.target === '')) {
    throw new ValueError(`invalid ${m.type} mount "${spec}": expected a target (target=/path)`);
  }
  return m;
}
