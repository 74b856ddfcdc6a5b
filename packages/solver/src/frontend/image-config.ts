import type { HistoryEntry, ImageConfigFile } from '@tsbuild/snapshotter';

/** The PATH BuildKit puts into an image whose base sets none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** OCI architecture name of this host. */
export function hostArch(): string {
  switch (process.arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    case 'arm64':
      return 'arm64';
    case 'arm':
      return 'arm';
    default:
      return process.arch;
  }
}

/** The config of `FROM scratch`. */
export function emptyConfig(): ImageConfigFile {
  return {
    architecture: hostArch(),
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

/** A deep copy, so a stage never mutates the config of its base. */
export function cloneConfig(c: ImageConfigFile): ImageConfigFile {
  return structuredClone(c);
}

/** Reads `Env` (KEY=VALUE list) into an ordered map. */
export function envToMap(env: readonly string[] | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of env ?? []) {
    const i = kv.indexOf('=');
    if (i < 0) m.set(kv, '');
    else m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

/** Sets one variable in `Env`, keeping the position of an existing entry. */
export function setEnv(c: ImageConfigFile, key: string, value: string): void {
  const env = c.config.Env ? [...c.config.Env] : [];
  const i = env.findIndex((kv) => kv === key || kv.startsWith(`${key}=`));
  if (i >= 0) env[i] = `${key}=${value}`;
  else env.push(`${key}=${value}`);
  c.config.Env = env;
}

export function addHistory(c: ImageConfigFile, entry: HistoryEntry): void {
  c.history = [...(c.history ?? []), entry];
}

/**
 * Gives every history entry without a time one, as BuildKit's image exporter does: an
 * entry before the first timed entry that follows an untimed one takes that entry's time
 * (so the first metadata instructions of a stage carry the time of its first new layer,
 * not the base image's), every later one the time of the entry before it. Layer entries
 * carry the time their layer was made (the cache record's), so a fully cached rebuild
 * yields the same history, config and image ID. Returns a new array.
 */
export function fillHistoryTimes(history: readonly HistoryEntry[]): HistoryEntry[] {
  let fill: string | undefined;
  let untimedSeen = false;
  for (const h of history) {
    if (h.created === undefined) untimedSeen = true;
    else {
      fill = h.created;
      if (untimedSeen) break;
    }
  }
  untimedSeen = false;
  return history.map((h) => {
    if (h.created !== undefined) {
      if (untimedSeen) fill = h.created;
      return h;
    }
    untimedSeen = true;
    return fill === undefined ? h : { ...h, created: fill };
  });
}

/** The time of the last history entry that has one. */
export function newestTime(history: readonly HistoryEntry[]): string | undefined {
  for (let i = history.length - 1; i >= 0; i--) if (history[i]!.created !== undefined) return history[i]!.created;
  return undefined;
}

/** Go's `strconv.Quote` for the strings BuildKit formats with `%q`. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c === 7) out += '\\a';
    else if (c === 8) out += '\\b';
    else if (c === 12) out += '\\f';
    else if (c === 11) out += '\\v';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** Go's `%q` of a []string: `["a" "b"]`, as in BuildKit's CMD/ENTRYPOINT history. */
export function goQuoteSlice(a: readonly string[]): string {
  return `[${a.map(goQuote).join(' ')}]`;
}

/** Go's `%v` of a []string: `[a b]`, as in BuildKit's SHELL/VOLUME history. */
export function goSlice(a: readonly string[]): string {
  return `[${a.join(' ')}]`;
}

/** Go's `time.Duration.String()` of nanoseconds. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let u = Math.abs(ns);
  let out: string;
  if (u < 1e9) {
    // sub-second: ns, µs or ms with a fraction
    const [unit, div] = u < 1e3 ? ['ns', 1] : u < 1e6 ? ['µs', 1e3] : ['ms', 1e6];
    out = `${trimFraction(u / (div as number))}${unit as string}`;
  } else {
    const h = Math.floor(u / 3600e9);
    u -= h * 3600e9;
    const m = Math.floor(u / 60e9);
    u -= m * 60e9;
    const s = `${trimFraction(u / 1e9)}s`;
    out = h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s;
  }
  return neg ? `-${out}` : out;
}

function trimFraction(x: number): string {
  return x.toFixed(9).replace(/\.?0+$/, '');
}

/** Go's `strconv.QuoteRune` (BuildKit prints HEALTHCHECK retries with `%q`). */
export function goQuoteRune(n: number): string {
  if (n === 39) return "'\\''";
  if (n === 92) return "'\\\\'";
  if (n >= 0x20 && n < 0x7f) return `'${String.fromCharCode(n)}'`;
  const named: Record<number, string> = { 7: 'a', 8: 'b', 9: 't', 10: 'n', 11: 'v', 12: 'f', 13: 'r' };
  if (named[n] !== undefined) return `'\\${named[n]}'`;
  if (n < 0x80) return `'\\x${n.toString(16).padStart(2, '0')}'`;
  if (n > 0x10ffff) return "'\\ufffd'";
  return `'${String.fromCodePoint(n)}'`;
}

/** BuildKit's history text of a HEALTHCHECK: Go's `%q` of the HealthConfig struct pointer. */
export function healthcheckHistory(hc: NonNullable<ImageConfigFile['config']['Healthcheck']>): string {
  const d = (v: number | undefined) => goQuote(goDuration(v ?? 0));
  return `HEALTHCHECK &{${goQuoteSlice(hc.Test ?? [])} ${d(hc.Interval)} ${d(hc.Timeout)} ${d(hc.StartPeriod)} ${d(hc.StartInterval)} ${goQuoteRune(hc.Retries ?? 0)}}`;
}
