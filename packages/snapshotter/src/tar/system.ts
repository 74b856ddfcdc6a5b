/**
 * Small wrappers around host tools. Node has no xattr, mknod or mount API, so the
 * snapshotter spawns a few util-linux/coreutils/attr binaries — always batched (one
 * spawn per tree or per layer), never one per file on the hot path. The xattr calls
 * go through the native addon instead when it is built (`../util/native.ts`).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MissingToolError, SystemCommandError } from '../errors.js';
import { isNativeError, native } from '../util/native.js';

/** Debian package that provides each tool we spawn (named in MissingToolError). */
const PACKAGE_OF: Record<string, string> = {
  getfattr: 'attr',
  setfattr: 'attr',
  mount: 'mount',
  umount: 'mount',
  mknod: 'coreutils',
  cp: 'coreutils',
  sh: 'dash',
};

export interface RunOptions {
  cwd?: string;
  input?: Uint8Array | string;
  /** Exit codes other than 0 that still count as success. */
  okCodes?: readonly number[];
}

export interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number;
}

/** Spawns argv (no shell), collects stdout, throws SystemCommandError on failure. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) throw new Error('run: empty argv');
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      // ENOENT is also what a missing cwd gives: that is no missing tool
      if (e.code === 'ENOENT' && (opts.cwd === undefined || existsSync(opts.cwd))) reject(new MissingToolError(cmd, PACKAGE_OF[cmd] ?? cmd));
      else reject(new SystemCommandError(argv, null, e.message));
    });
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0 || (code !== null && opts.okCodes?.includes(code))) {
        resolve({ stdout: Buffer.concat(out), stderr, code });
      } else {
        reject(new SystemCommandError(argv, code, stderr));
      }
    });
    child.stdin.on('error', () => {
      /* EPIPE when the tool exits early; the exit code reports the real failure */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** xattrs of one file: name → raw value bytes. */
export type Xattrs = Map<string, Buffer>;

/** Un-escapes getfattr's quoting of file names (`\ooo` octal escapes, `\\`). */
function unquote(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && i + 3 < raw.length + 0 && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else if (c === 0x5c && raw[i + 1] === 0x5c) {
      bytes.push(0x5c);
      i += 1;
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Quotes a path for a getfattr dump (what setfattr --restore parses). */
function quote(p: string): string {
  const raw = Buffer.from(p, 'utf8');
  let s = '';
  let plain: number[] = [];
  const flush = (): void => {
    if (plain.length) s += Buffer.from(plain).toString('utf8');
    plain = [];
  };
  for (const c of raw) {
    if (c === 0x5c || c === 0x0a || c === 0x0d || c === 0x3d || c < 0x20 || c === 0x7f) {
      flush();
      s += '\\' + c.toString(8).padStart(3, '0');
    } else plain.push(c);
  }
  flush();
  return s;
}

/** Parses `getfattr -d -e hex` output into relative path → xattrs. */
export function parseGetfattrDump(text: string): Map<string, Xattrs> {
  const result = new Map<string, Xattrs>();
  let current: Xattrs | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      let p = unquote(line.slice(8));
      if (p === '.') p = '';
      else if (p.startsWith('./')) p = p.slice(2);
      current = new Map();
      result.set(p, current);
    } else if (line.length > 0 && current) {
      const eq = line.indexOf('=');
      if (eq < 0) {
        current.set(line, Buffer.alloc(0));
        continue;
      }
      const name = line.slice(0, eq);
      const v = line.slice(eq + 1);
      if (v.startsWith('0x')) current.set(name, Buffer.from(v.slice(2), 'hex'));
      else if (v.startsWith('0s')) current.set(name, Buffer.from(v.slice(2), 'base64'));
      else if (v.startsWith('"') && v.endsWith('"')) current.set(name, Buffer.from(unquote(v.slice(1, -1)), 'utf8'));
      else current.set(name, Buffer.from(v, 'utf8'));
    }
  }
  return result;
}

/**
 * Reads every xattr (all namespaces visible to us) of every file under `dir` with one
 * `getfattr -R` spawn; symlinks are not followed. Keys are paths relative to `dir`
 * ('' for `dir` itself). Files without xattrs are absent from the map.
 */
export async function readTreeXattrs(dir: string): Promise<Map<string, Xattrs>> {
  const argv = ['getfattr', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'];
  const sys = native();
  if (!sys) return parseGetfattrDump((await run(argv, { cwd: dir })).stdout.toString('utf8'));
  const flat = await sys.treeXattrs(dir.replace(/(?<=.)\/+$/, '')).catch((err: unknown) => {
    throw isNativeError(err) ? new SystemCommandError(argv, null, err.message, err.code) : err;
  });
  return fromFlat(flat, (key) => key);
}

/** [key, name, value, ...] (the addon's answer) → path → xattrs. */
function fromFlat(flat: readonly (string | Buffer)[], pathOf: (key: string) => string): Map<string, Xattrs> {
  const result = new Map<string, Xattrs>();
  for (let i = 0; i + 2 < flat.length; i += 3) {
    const p = pathOf(flat[i] as string);
    let x = result.get(p);
    if (!x) result.set(p, (x = new Map()));
    x.set(flat[i + 1] as string, flat[i + 2] as Buffer);
  }
  return result;
}

/** Reads all xattrs of a few specific paths (relative to `dir`), not following symlinks. */
export async function readXattrs(dir: string, paths: readonly string[]): Promise<Map<string, Xattrs>> {
  if (paths.length === 0) return new Map();
  // getfattr exits 1 when a path has no xattr support; treat that as "none".
  const r = await run(['getfattr', '-h', '-d', '-m', '-', '-e', 'hex', '--', ...paths.map((p) => (p === '' ? '.' : p))], {
    cwd: dir,
    okCodes: [1],
  });
  return parseGetfattrDump(r.stdout.toString('utf8'));
}

/**
 * Sets xattrs on many paths (relative to `dir`) with one `setfattr -h --restore` spawn.
 * Symlinks are not followed.
 */
export async function writeXattrs(dir: string, entries: ReadonlyMap<string, Xattrs>): Promise<void> {
  const sys = native();
  if (sys) {
    const paths: string[] = [];
    const names: string[] = [];
    const values: Buffer[] = [];
    for (const [p, attrs] of entries) {
      for (const [name, value] of attrs) {
        paths.push(join(dir, p));
        names.push(name);
        values.push(value);
      }
    }
    if (paths.length === 0) return;
    await sys.setXattrs(paths, names, values).catch((err: unknown) => {
      throw isNativeError(err) ? new SystemCommandError(['setfattr', '-h', '--restore=-'], null, err.message, err.code) : err;
    });
    return;
  }
  let dump = '';
  for (const [p, attrs] of entries) {
    if (attrs.size === 0) continue;
    dump += `# file: ${quote(p === '' ? '.' : p)}\n`;
    for (const [name, value] of attrs) dump += `${name}=0x${value.toString('hex')}\n`;
    dump += '\n';
  }
  if (dump === '') return;
  await run(['setfattr', '-h', '--restore=-'], { cwd: dir, input: dump });
}
