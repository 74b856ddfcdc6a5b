/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, `undefined`
 * members dropped. The same value always gives the same bytes, hence the same digest.
 */
export function canonicalJson(value: unknown): string {
  return write(value, 0);
}

function write(v: unknown, depth: number): string {
  if (depth > 100) throw new RangeError('canonical json: nesting deeper than 100 levels');
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new RangeError(`canonical json: expected a finite number, found ${v}`);
      return JSON.stringify(v);
    case 'object': {
      if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : write(x, depth + 1))).join(',')}]`;
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${write(obj[k], depth + 1)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical json: expected a JSON value, found ${typeof v}`);
  }
}
