import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { CacheDb, DirMemo, FileDigest } from '../cache/cache-db.js';
import { sha256Key, type Key } from '../cache/keys.js';
import { splitDev, utf8Name } from '@tsbuild/snapshotter';
import { BuildError } from '../errors.js';
import { IgnoreMatcher, parseDockerignore } from './dockerignore.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

/** One path in the build context (metadata from lstat; content digest computed on demand). */
export interface ContextEntry {
  /** relative to the context root, `/`-separated, no leading slash; '' is the root itself */
  rel: string;
  type: EntryType;
  mode: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  /** the filesystem's device number (with `ino`, the file's identity) */
  dev: number;
  /** hard links to the inode, anywhere on its filesystem */
  nlink: number;
  /** the device a character or block device node stands for */
  rdev: number;
  uid: number;
  gid: number;
  linkTarget?: string;
}

/** What an `other` entry is: a FIFO, a socket, or a character or block device node. */
export type SpecialKind = 'fifo' | 'socket' | 'char' | 'block';

const S_IFMT = 0o170000;
const SPECIAL_KINDS: ReadonlyMap<number, SpecialKind> = new Map([
  [0o010000, 'fifo'],
  [0o140000, 'socket'],
  [0o020000, 'char'],
  [0o060000, 'block'],
]);

/** The kind of an `other` entry, from its mode's file type bits. */
export function specialKind(e: ContextEntry): SpecialKind {
  const k = SPECIAL_KINDS.get(e.mode & S_IFMT);
  if (k === undefined) throw new BuildError(`${JSON.stringify(e.rel)} has an unknown file type (mode ${e.mode.toString(8)})`, 'INTERNAL');
  return k;
}

/**
 * The hard-link groups of one directory source, as BuildKit's copy keeps them: every
 * regular file sharing its inode with an earlier file of the same source (in path order)
 * maps to that first file, which is copied; the later ones become links to the copy.
 * Links to files outside the source, and separate sources, are not grouped.
 */
export function hardlinkAnchors(m: SourceMatch): Map<ContextEntry, ContextEntry> {
  const anchors = new Map<ContextEntry, ContextEntry>();
  if (m.root.type !== 'dir') return anchors;
  const first = new Map<string, ContextEntry>();
  for (const e of m.entries) {
    if (e.type !== 'file' || e.nlink < 2) continue;
    const id = `${e.dev}:${e.ino}`;
    const a = first.get(id);
    if (a === undefined) first.set(id, e);
    else anchors.set(e, a);
  }
  return anchors;
}

/** The files one COPY/ADD source matched: the matched root and everything beneath it. */
export interface SourceMatch {
  pattern: string;
  root: ContextEntry;
  /** the root and its descendants, sorted by path; for a directory root this includes the root */
  entries: ContextEntry[];
}

const GLOB_CHARS = /[*?[\\]/;
const HASH_CONCURRENCY = 16;
/** the content digest the memo vouched for when the entry was lstat'ed (kept off the public type) */
const MEMO = Symbol('memo digest');
type Entry = ContextEntry & { [MEMO]: string | undefined };

/**
 * Files whose mtime or ctime is this close to the build's start are not memoised: a
 * later same-size edit in the same kernel timestamp tick (coarse clocks tick every
 * 1-10 ms) would leave size, times and inode unchanged (git's "racily clean" files).
 */
const DEFAULT_RACY_WINDOW_MS = 1000;

/** A digest learned this build, for the memo. */
interface MemoUpdate {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  hex: string;
}

/** The memo of one context directory during a build. */
interface DirState {
  row: DirMemo | undefined;
  /** the directory's full listing, when this build read it (names absent from it are dropped) */
  listed: string[] | undefined;
  updates: Map<string, MemoUpdate> | undefined;
}

/**
 * A local build context: the directory, its .dockerignore rules, and an incremental
 * content hasher whose metadata memo (size, mtime, ctime, inode per file, one row per
 * directory) lives in the store's index so unchanged files are never re-read.
 * A context is read once per build: directory walks are cached, so several COPY
 * instructions see the same files.
 */
export class BuildContext {
  readonly dir: string;
  readonly ignore: IgnoreMatcher;
  private readonly db: CacheDb | undefined;
  /** `dir` with exactly one trailing slash */
  private readonly prefix: string;
  private readonly racyBefore: number;
  private readonly dirs = new Map<string, DirState>();
  private readonly entryCache = new Map<string, Entry | null>();
  private readonly walkCache = new Map<string, Entry[]>();
  private readonly digestCache = new Map<string, Promise<string>>();

  private constructor(dir: string, ignore: IgnoreMatcher, db: CacheDb | undefined, racyWindowMs: number) {
    this.dir = dir;
    this.ignore = ignore;
    this.db = db;
    this.prefix = dir.endsWith('/') ? dir : `${dir}/`;
    // taken before any lstat of this build
    this.racyBefore = Date.now() - racyWindowMs;
  }

  /**
   * A plain directory tree read with the same chroot-like rules but no .dockerignore
   * and no memo (used for `COPY --from` a stage's mounted root filesystem).
   */
  static tree(dir: string): BuildContext {
    return new BuildContext(dir, new IgnoreMatcher([]), undefined, DEFAULT_RACY_WINDOW_MS);
  }

  /**
   * Opens a context directory; `dockerfile` (a path) selects `<Dockerfile>.dockerignore` when present.
   * `racyWindowMs` (default 1000): files changed less than this long before the context was
   * opened are hashed but not memoised (a same-size edit within the same timestamp tick
   * would otherwise go unseen); tests use 0.
   */
  static async open(dir: string, db: CacheDb, opts: { dockerfile?: string; racyWindowMs?: number } = {}): Promise<BuildContext> {
    const st = await lstat(dir).catch(() => undefined);
    if (!st || !st.isDirectory()) throw new BuildError(`build context ${JSON.stringify(dir)} is not a directory`, 'INVALID_ARGUMENT');
    let text: string | undefined;
    if (opts.dockerfile) text = await readFile(`${opts.dockerfile}.dockerignore`, 'utf8').catch(() => undefined);
    if (text === undefined) text = await readFile(join(dir, '.dockerignore'), 'utf8').catch(() => undefined);
    const patterns = text === undefined ? [] : parseDockerignore(text);
    let matcher: IgnoreMatcher;
    try {
      matcher = new IgnoreMatcher(patterns);
    } catch (err) {
      throw new BuildError(`.dockerignore: ${(err as Error).message}`, 'INVALID_ARGUMENT');
    }
    return new BuildContext(dir, matcher, db, opts.racyWindowMs ?? DEFAULT_RACY_WINDOW_MS);
  }

  /** The memo state of a directory of the context (its row loaded on first use). */
  private dirState(dirRel: string): DirState {
    let ds = this.dirs.get(dirRel);
    if (ds === undefined) {
      ds = { row: this.db?.loadDirMemo(this.abs(dirRel)), listed: undefined, updates: undefined };
      this.dirs.set(dirRel, ds);
    }
    return ds;
  }

  /**
   * lstat of one path; for a regular file, the memo's digest when size, times and inode are
   * unchanged. `at` is the name's index in the directory's memo row when the caller knows it
   * (-1: not in the row), else it is looked up.
   */
  private stat(rel: string, ds: DirState | undefined, name: string, at?: number): Entry | null {
    const abs = this.abs(rel);
    // synchronous lstat: measured several times faster than fs.promises for 100,000-file walks;
    // plain numbers (no bigint): equality of the doubles is what the memo needs (see README)
    const st: Stats | undefined = lstatSync(abs, { throwIfNoEntry: false });
    if (st === undefined) return null;
    const type: EntryType = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    let memo: string | undefined;
    if (type === 'file' && this.db !== undefined) {
      const d = ds ?? this.dirState(parentOf(rel));
      const i = at ?? (d.row !== undefined ? indexOf(d.row.names, name) : -1);
      if (i >= 0) {
        const s = d.row!.stats;
        const o = i * 4;
        if (s[o] === st.size && s[o + 1] === st.mtimeMs && s[o + 2] === st.ctimeMs && s[o + 3] === st.ino) {
          memo = `sha256:${d.row!.digests.slice(i * 64, i * 64 + 64)}`;
        }
      }
    }
    return {
      rel,
      type,
      mode: st.mode,
      size: st.size,
      mtimeMs: st.mtimeMs,
      ctimeMs: st.ctimeMs,
      ino: st.ino,
      dev: st.dev,
      nlink: st.nlink,
      rdev: st.rdev,
      uid: st.uid,
      gid: st.gid,
      linkTarget: type === 'symlink' ? linkTargetOf(abs, rel) : undefined,
      [MEMO]: memo,
    };
  }

  private entry(rel: string): Entry | null {
    const cached = this.entryCache.get(rel);
    if (cached !== undefined) return cached;
    const e = this.stat(rel, undefined, rel.slice(rel.lastIndexOf('/') + 1));
    this.entryCache.set(rel, e);
    return e;
  }

  /** Absolute host path of a context entry. */
  abs(rel: string): string {
    return rel === '' ? this.dir : this.prefix + rel;
  }

  /**
   * Resolves a path inside the context as if the context were the root: `..` is
   * clamped at the root and symlinks are followed relative to it (never outside).
   */
  async resolve(rel: string): Promise<string> {
    const parts = cleanRel(rel).split('/').filter(Boolean);
    const done: string[] = [];
    let hops = 0;
    while (parts.length > 0) {
      const seg = parts.shift()!;
      if (seg === '.') continue;
      if (seg === '..') {
        done.pop();
        continue;
      }
      const cur = [...done, seg].join('/');
      const e = this.entry(cur);
      if (e && e.type === 'symlink') {
        if (++hops > 255) throw new BuildError(`too many levels of symbolic links resolving ${JSON.stringify(rel)} in the build context`, 'INVALID_ARGUMENT');
        const target = e.linkTarget!;
        const tparts = target.split('/').filter(Boolean);
        if (target.startsWith('/')) done.length = 0;
        parts.unshift(...tparts);
        continue;
      }
      done.push(seg);
    }
    return done.join('/');
  }

  /** Everything below a directory of the context, ignored paths skipped, sorted by path; read once per build. */
  private walk(rootRel: string): Entry[] {
    let out = this.walkCache.get(rootRel);
    if (out === undefined) {
      out = [];
      this.walkInto(rootRel, out);
      this.walkCache.set(rootRel, out);
    }
    return out;
  }

  private walkInto(rootRel: string, out: Entry[]): void {
    let names: string[];
    try {
      names = readdirSync(this.abs(rootRel)).sort();
    } catch (err) {
      throw new BuildError(`reading ${JSON.stringify(rootRel || '.')} in the build context: ${(err as Error).message}`, 'INTERNAL', { cause: err });
    }
    // Node decodes a name that is not UTF-8 with U+FFFD: the file could be neither read nor
    // kept under its name, so say so (UnsupportedFileNameError) instead of leaving it out
    if (names.some((n) => n.includes('\uFFFD'))) {
      const prefix = Buffer.from(rootRel === '' ? '' : `${rootRel}/`);
      for (const raw of readdirSync(this.abs(rootRel), { encoding: 'buffer' })) utf8Name(Buffer.concat([prefix, raw]), `build context ${this.dir}`);
    }
    const ds = this.db !== undefined ? this.dirState(rootRel) : undefined;
    if (ds !== undefined) ds.listed = names;
    const entries: (Entry | null)[] = new Array<Entry | null>(names.length);
    // the listing and the memo row are both sorted: one merge pass finds each name's row index
    const memoNames = ds?.row?.names ?? [];
    let j = 0;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      while (j < memoNames.length && memoNames[j]! < name) j++;
      const at = j < memoNames.length && memoNames[j] === name ? j : -1;
      entries[i] = this.stat(rootRel === '' ? name : `${rootRel}/${name}`, ds, name, at);
    }
    const filtering = this.ignore.patterns.length > 0;
    for (const e of entries) {
      if (!e) continue;
      const ignored = filtering && this.ignore.ignores(e.rel);
      if (ignored && !(e.type === 'dir' && this.ignore.hasExceptions)) continue;
      if (!ignored) {
        out.push(e);
        if (e.type === 'dir') this.walkInto(e.rel, out);
        continue;
      }
      // an excluded directory is still walked for exceptions (`!dir/keep`); it is sent
      // (as itself) only when something beneath it is, like BuildKit's context transfer
      const below: Entry[] = [];
      this.walkInto(e.rel, below);
      if (below.length > 0) out.push(e, ...below);
    }
  }

  /** Matches one COPY/ADD source pattern against the context (Docker semantics). */
  async match(pattern: string, opts: { followRootSymlink?: boolean } = {}): Promise<SourceMatch[]> {
    const cleaned = cleanRel(pattern);
    let roots: string[];
    if (GLOB_CHARS.test(cleaned)) {
      // Go's filepath.Match (what BuildKit uses) has no globstar: `**` is just `*`
      // fast-glob (48 modules) is loaded only when a source has glob characters
      const { default: fg } = await import('fast-glob');
      const found = await fg(cleaned.replace(/\*{2,}/g, '*'), { cwd: this.dir, dot: true, onlyFiles: false, followSymbolicLinks: false, unique: true });
      roots = found.filter((r) => !this.ignore.ignores(r)).sort();
    } else {
      roots = [cleaned];
    }
    const out: SourceMatch[] = [];
    for (const r0 of roots) {
      const r = opts.followRootSymlink === false ? r0 : await this.resolve(r0);
      const e = this.entry(r);
      if (!e || (r !== '' && this.ignore.ignores(r) && e.type !== 'dir')) continue;
      const entries: ContextEntry[] = e.type === 'dir' ? [e, ...this.walk(r)] : [e];
      if (r !== '' && this.ignore.ignores(r) && entries.length === 1) continue;
      out.push({ pattern, root: e, entries });
    }
    return out;
  }

  private fileDigest(e: ContextEntry): Promise<string> {
    let p = this.digestCache.get(e.rel);
    if (!p) {
      p = this.computeFileDigest(e);
      this.digestCache.set(e.rel, p);
    }
    return p;
  }

  private async computeFileDigest(e: ContextEntry): Promise<string> {
    const abs = this.abs(e.rel);
    const h = createHash('sha256');
    if (e.size < 1 << 20) {
      h.update(await readFile(abs));
    } else {
      for await (const chunk of createReadStream(abs, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
    }
    const hex = h.digest('hex');
    // a file changed within the racy window is hashed every build until it is older
    if (this.db !== undefined && e.mtimeMs < this.racyBefore && e.ctimeMs < this.racyBefore) {
      const ds = this.dirState(parentOf(e.rel));
      (ds.updates ??= new Map()).set(e.rel.slice(e.rel.lastIndexOf('/') + 1), { size: e.size, mtimeMs: e.mtimeMs, ctimeMs: e.ctimeMs, ino: e.ino, hex });
    }
    return `sha256:${hex}`;
  }

  /**
   * The digest of what a set of sources contributes to a COPY: per entry its path
   * relative to the source root, type, permission bits, link target and content
   * digest (never mtimes or owners, which COPY resets). Also returns per-file digests
   * keyed by context path, for explaining cache misses (computed when first read).
   */
  async digestSources(matches: readonly SourceMatch[]): Promise<{ digest: Key; files: FileDigest[] }> {
    const h = createHash('sha256');
    // lines are hashed in ~64 KiB pieces: one string of the whole context would be tens of MB
    let chunk = '';
    let first = true;
    const line = (s: string): void => {
      chunk += first ? s : `\n${s}`;
      first = false;
      if (chunk.length > 65536) {
        h.update(chunk);
        chunk = '';
      }
    };
    const perMatch: string[][] = [];
    for (const m of matches) {
      line(`source ${m.pattern} ${m.root.type}`);
      const entries = m.entries as Entry[];
      const digests = new Array<string>(entries.length);
      const limit = pLimit(HASH_CONCURRENCY);
      const pending: Promise<void>[] = [];
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        if (e.type !== 'file') digests[i] = e.type === 'symlink' ? `link:${e.linkTarget}` : e.type === 'other' ? specialDigest(e) : e.type;
        else if (e[MEMO] !== undefined) digests[i] = e[MEMO];
        else pending.push(limit(() => this.fileDigest(e)).then((d) => void (digests[i] = d)));
      }
      if (pending.length > 0) await Promise.all(pending);
      const rootDir = m.root.type === 'dir';
      const cut = m.root.rel === '' ? 0 : m.root.rel.length + 1;
      const below = (e: ContextEntry): string => (rootDir ? (e === m.root ? '' : e.rel.slice(cut)) : e.rel.slice(e.rel.lastIndexOf('/') + 1));
      // which files the copy makes hard links: part of the result (absent when there are none)
      const anchors = hardlinkAnchors(m);
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        const a = anchors.get(e);
        if (a !== undefined) digests[i] += ` hardlink ${jsonString(below(a))}`;
        // entries below a directory root start with `<root>/`; the root itself is ''
        line(`${jsonString(below(e))} ${e.type} ${(e.mode & 0o7777).toString(8)} ${digests[i]!}`);
      }
      perMatch.push(digests);
    }
    h.update(chunk);
    const digest: Key = `sha256:${h.digest('hex')}`;
    this.flushMemo();
    let files: FileDigest[] | undefined;
    return {
      digest,
      get files(): FileDigest[] {
        if (files === undefined) {
          files = [];
          for (let j = 0; j < matches.length; j++) {
            const m = matches[j]!;
            const digests = perMatch[j]!;
            for (let i = 0; i < m.entries.length; i++) {
              const e = m.entries[i]!;
              if (e.type !== 'dir') files.push({ path: e.rel, digest: sha256Key(`${e.type} ${(e.mode & 0o7777).toString(8)} ${digests[i]!}`) });
            }
          }
        }
        return files;
      },
    };
  }

  /**
   * Persists the memo rows of directories where this build learned a digest (or found
   * memoised names gone). A no-op rebuild writes nothing.
   */
  flushMemo(): void {
    if (this.db === undefined) return;
    const rows = new Map<string, DirMemo>();
    for (const [dirRel, ds] of this.dirs) {
      const stale = ds.row !== undefined && ds.listed !== undefined && !containsAll(ds.listed, ds.row.names);
      if (ds.updates === undefined && !stale) continue;
      const merged = mergeDirMemo(ds.row, ds.updates, ds.listed);
      rows.set(this.abs(dirRel), merged);
      ds.row = merged;
      ds.updates = undefined;
    }
    this.db.saveDirMemos(rows);
  }
}

/** The directory part of a context-relative path ('' for a top-level name). */
function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/** Index of `name` in sorted `names`, or -1 (binary search). */
function indexOf(names: readonly string[], name: string): number {
  let lo = 0;
  let hi = names.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const n = names[mid]!;
    if (n === name) return mid;
    if (n < name) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Whether sorted `names` has every name of sorted `subset` (one merge pass). */
function containsAll(names: readonly string[], subset: readonly string[]): boolean {
  let j = 0;
  for (const n of subset) {
    while (j < names.length && names[j]! < n) j++;
    if (j === names.length || names[j] !== n) return false;
    j++;
  }
  return true;
}

/** A context symlink's target; one that is not UTF-8 is refused (UnsupportedFileNameError), not changed. */
function linkTargetOf(abs: string, rel: string): string {
  const t = readlinkSync(abs);
  return t.includes('\uFFFD') ? utf8Name(readlinkSync(abs, { encoding: 'buffer' }), 'build context', rel) : t;
}

/** What an `other` entry contributes to a key: its kind, and for a device node the device. */
function specialDigest(e: ContextEntry): string {
  const k = specialKind(e);
  if (k !== 'char' && k !== 'block') return k;
  const { major, minor } = splitDev(BigInt(e.rdev));
  return `${k} ${major},${minor}`;
}

/** JSON.stringify of a string, without the call for the common names that need no escaping. */
function jsonString(s: string): string {
  return /^[^"\\\u0000-\u001f\ud800-\udfff]*$/.test(s) ? `"${s}"` : JSON.stringify(s);
}

/** A directory's memo row after this build: the old row's names still listed, then the updates, sorted by name. */
function mergeDirMemo(row: DirMemo | undefined, updates: ReadonlyMap<string, MemoUpdate> | undefined, listed: readonly string[] | undefined): DirMemo {
  const keep = listed !== undefined ? new Set(listed) : undefined;
  const all = new Map<string, MemoUpdate>();
  if (row !== undefined) {
    for (let i = 0; i < row.names.length; i++) {
      const n = row.names[i]!;
      if (keep !== undefined && !keep.has(n)) continue;
      const o = i * 4;
      all.set(n, { size: row.stats[o]!, mtimeMs: row.stats[o + 1]!, ctimeMs: row.stats[o + 2]!, ino: row.stats[o + 3]!, hex: row.digests.slice(i * 64, i * 64 + 64) });
    }
  }
  if (updates !== undefined) for (const [n, u] of updates) all.set(n, u);
  const names = [...all.keys()].sort();
  const stats = new Float64Array(names.length * 4);
  const hexes: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const u = all.get(names[i]!)!;
    stats[i * 4] = u.size;
    stats[i * 4 + 1] = u.mtimeMs;
    stats[i * 4 + 2] = u.ctimeMs;
    stats[i * 4 + 3] = u.ino;
    hexes.push(u.hex);
  }
  return { names, stats, digests: hexes.join('') };
}

/** Cleans a context-relative path: no leading slash, `.`/`..` resolved and clamped at the root. */
export function cleanRel(p: string): string {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      out.pop();
      continue;
    }
    out.push(seg);
  }
  return out.join('/');
}
