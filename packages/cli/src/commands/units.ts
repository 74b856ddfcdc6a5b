import { UsageError } from '../errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Parses a Go-style duration (`24h`, `1h30m`, `90s`, `7d`) into milliseconds. */
export function parseDuration(text: string, what: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    matched = re.lastIndex;
  }
  if (text === '' || matched !== text.length) throw new UsageError(`invalid ${what} ${JSON.stringify(text)}: expected a duration such as 24h, 1h30m or 90s`);
  return total;
}

const SIZE_UNITS: Record<string, number> = { b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** Parses a size as docker does for `--keep-storage` (`10GB`, `512MB`, `1.5g`; binary multiples). */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? (m[2] === '' ? 'b' : m[2].toLowerCase()) : '';
  if (!m || SIZE_UNITS[unit] === undefined) throw new UsageError(`invalid ${what} ${JSON.stringify(text)}: expected a size such as 10GB, 512MB or 1048576`);
  return Math.floor(Number(m[1]) * SIZE_UNITS[unit]);
}
