/** Value syntaxes used by instruction flags: Go durations, byte sizes, chmod modes, CSV. */

/** Thrown with a lowercase message; callers attach the source range. */
export class ValueError extends Error {
  override name = 'ValueError';
}

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go `time.ParseDuration`, in nanoseconds. */
export function parseGoDuration(s: string): number {
  const orig = s;
  let neg = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new ValueError(`invalid duration "${orig}"`);
  let total = 0;
  const re = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/;
  while (s !== '') {
    const m = re.exec(s);
    if (!m || (m[1] === '' && (m[2] ?? '') === '')) throw new ValueError(`invalid duration "${orig}": expected a number followed by ns, us, ms, s, m or h`);
    const whole = m[1] === '' ? 0 : Number(m[1]);
    const frac = m[2] ? Number('0.' + m[2]) : 0;
    total += (whole + frac) * UNIT_NS[m[3]];
    s = s.slice(m[0].length);
  }
  if (total > Number.MAX_SAFE_INTEGER) throw new ValueError(`invalid duration "${orig}": out of range`);
  return Math.round(neg ? -total : total);
}

/** docker/go-units `RAMInBytes`: `64m`, `1g`, `512k`, `1.5GiB`, `1024` (binary multiples). */
export function parseRamBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(s);
  if (!m) throw new ValueError(`invalid size "${s}": expected a number with an optional unit (k, m, g, t, p)`);
  const mult: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };
  const n = Number.parseFloat(m[1]);
  return Math.floor(n * (m[2] ? mult[m[2].toLowerCase()] : 1));
}

const SYMBOLIC = /^[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+(?:,[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+)*$/;

/** `--chmod`: octal (`755`, `0644`) or symbolic (`u=rwx,go=rx`, `+x`). */
export function validateChmod(s: string): void {
  if (/^[0-7]+$/.test(s)) {
    if (Number.parseInt(s, 8) > 0o7777) throw new ValueError(`invalid chmod "${s}": octal mode larger than 7777`);
    return;
  }
  if (!SYMBOLIC.test(s)) throw new ValueError(`invalid chmod "${s}": expected an octal mode such as 0755 or a symbolic mode such as u=rwx,go=rx`);
}

/** One record of Go `encoding/csv` (comma separated, `"` quoting, `""` escapes a quote). */
export function parseCsvRecord(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new ValueError(`invalid mount "${s}": extraneous or missing " in quoted-field`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i++];
      }
      if (i < s.length && s[i] !== ',') throw new ValueError(`invalid mount "${s}": extraneous or missing " in quoted-field`);
    } else {
      const end = s.indexOf(',', i);
      field = s.slice(i, end < 0 ? s.length : end);
      if (field.includes('"')) throw new ValueError(`invalid mount "${s}": bare " in non-quoted-field`);
      i = end < 0 ? s.length : end;
    }
    out.push(field);
    if (i >= s.length) return out;
    i++; // the comma
  }
}
