import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import pLimit from 'p-limit';
import type { CacheDb, FileDigest, MemoEntry } from '../cache/cache-db.js';
import { sha256Key, type Key } from '../cache/keys.js';
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
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  uid: number;
  gid: number;
  linkTarget?: string;
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

/**
 * A local build context: the directory, its .dockerignore rules, and an incremental
 * content hasher whose metadata memo (size, mtime, ctime, inode) lives in the store's
 * index so unchanged files are never re-read.
 */
export class BuildContext {
  readonly dir: string;
  readonly ignore: IgnoreMatcher;
  private readonly db: CacheDb | undefined;
  private memo: Map<string, MemoEntry> | undefined;
  private readonly memoUpdates = new Map<string, MemoEntry>();
  private readonly entryCache = new Map<string, ContextEntry | null>();
  private readonly digestCache = new Map<string, Promise<string>>();

  private constructor(dir: string, ignore: IgnoreMatcher, db: CacheDb | undefined) {
    this.dir = dir;
    this.ignore = ignore;
    this.db = db;
  }

  /**
   * A plain directory tree read with the same chroot-like rules but no .dockerignore
   * and no memo (used for `COPY --from` a stage's mounted root filesystem).
   */
  static tree(dir: string): BuildContext {
    return new BuildContext(dir, new IgnoreMatcher([]), undefined);
  }

  /** Opens a context directory; `dockerfile` (a path) selects `<Dockerfile>.dockerignore` when present. */
  static async open(dir: string, db: CacheDb, opts: { dockerfile?: string } = {}): Promise<BuildContext> {
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
    return new BuildContext(dir, matcher, db);
  }

  private async entry(rel: string): Promise<ContextEntry | null> {
    const cached = this.entryCache.get(rel);
    if (cached !== undefined) return cached;
    const abs = rel === '' ? this.dir : join(this.dir, rel);
    // synchronous lstat: measured several times faster than fs.promises for 100,000-file walks
    const st = lstatSync(abs, { bigint: true, throwIfNoEntry: false });
    let e: ContextEntry | null = null;
    if (st) {
      const type: EntryType = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      e = {
        rel,
        type,
        mode: Number(st.mode),
        size: Number(st.size),
        mtimeMs: Number(st.mtimeMs),
        mtimeNs: st.mtimeNs,
        ctimeNs: st.ctimeNs,
        ino: st.ino,
        uid: Number(st.uid),
        gid: Number(st.gid),
      };
      if (type === 'symlink') e.linkTarget = readlinkSync(abs);
    }
    this.entryCache.set(rel, e);
    return e;
  }

  /** Absolute host path of a context entry. */
  abs(rel: string): string {
    return rel === '' ? this.dir : join(this.dir, rel);
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
      const e = await this.entry(cur);
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

  /** Walks a directory of the context, skipping ignored paths; entries sorted by path. */
  private async walk(rootRel: string, out: ContextEntry[]): Promise<void> {
    const abs = this.abs(rootRel);
    let names: string[];
    try {
      names = readdirSync(abs).sort();
    } catch (err) {
      throw new BuildError(`reading ${JSON.stringify(rootRel || '.')} in the build context: ${(err as Error).message}`, 'INTERNAL', { cause: err });
    }
    const rels = names.map((n) => (rootRel === '' ? n : `${rootRel}/${n}`));
    const entries = await Promise.all(rels.map((r) => this.entry(r)));
    for (let i = 0; i < rels.length; i++) {
      const e = entries[i];
      if (!e) continue;
      const ignored = this.ignore.ignores(e.rel);
      if (ignored && !(e.type === 'dir' && this.ignore.hasExceptions)) continue;
      if (!ignored) {
        out.push(e);
        if (e.type === 'dir') await this.walk(e.rel, out);
        continue;
      }
      // an excluded directory is still walked for exceptions (`!dir/keep`); it is sent
      // (as itself) only when something beneath it is, like BuildKit's context transfer
      const below: ContextEntry[] = [];
      await this.walk(e.rel, below);
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
      const e = await this.entry(r);
      if (!e || (r !== '' && this.ignore.ignores(r) && e.type !== 'dir')) continue;
      const entries: ContextEntry[] = [e];
      if (e.type === 'dir') await this.walk(r, entries);
      if (r !== '' && this.ignore.ignores(r) && entries.length === 1) continue;
      out.push({ pattern, root: e, entries });
    }
    return out;
  }

  private loadMemo(): Map<string, MemoEntry> {
    if (!this.db) return (this.memo ??= new Map());
    this.memo ??= this.db.loadMemo(this.dir.endsWith('/') ? this.dir : `${this.dir}/`);
    return this.memo;
  }

  /** Content digest of a regular file, through the metadata memo. */
  /** The memo's digest when the file's metadata is unchanged (most files of a rebuild: no promise, no read). */
  private memoDigest(e: ContextEntry): string | undefined {
    const m = this.loadMemo().get(this.abs(e.rel));
    return m && m.size === e.size && m.mtimeNs === e.mtimeNs && m.ctimeNs === e.ctimeNs && m.ino === e.ino ? m.digest : undefined;
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
    const m = this.loadMemo().get(abs);
    if (m && m.size === e.size && m.mtimeNs === e.mtimeNs && m.ctimeNs === e.ctimeNs && m.ino === e.ino) return m.digest;
    const h = createHash('sha256');
    if (e.size < 1 << 20) {
      h.update(await readFile(abs));
    } else {
      for await (const chunk of createReadStream(abs, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
    }
    const digest = `sha256:${h.digest('hex')}`;
    this.memoUpdates.set(abs, { size: e.size, mtimeNs: e.mtimeNs, ctimeNs: e.ctimeNs, ino: e.ino, digest });
    return digest;
  }

  /**
   * The digest of what a set of sources contributes to a COPY: per entry its path
   * relative to the source root, type, permission bits, link target and content
   * digest (never mtimes or owners, which COPY resets). Also returns per-file digests
   * keyed by context path, for explaining cache misses.
   */
  async digestSources(matches: readonly SourceMatch[]): Promise<{ digest: Key; files: FileDigest[] }> {
    const lines: string[] = [];
    const files: FileDigest[] = [];
    for (const m of matches) {
      lines.push(`source ${m.pattern} ${m.root.type}`);
      const limit = pLimit(HASH_CONCURRENCY);
      const digests: (string | Promise<string>)[] = m.entries.map((e) => {
        if (e.type !== 'file') return `${e.type === 'symlink' ? `link:${e.linkTarget}` : e.type}`;
        return this.memoDigest(e) ?? limit(() => this.fileDigest(e));
      });
      if (digests.some((d) => typeof d !== 'string')) await Promise.all(digests);
      for (let i = 0; i < digests.length; i++) if (typeof digests[i] !== 'string') digests[i] = await digests[i];
      for (let i = 0; i < m.entries.length; i++) {
        const e = m.entries[i];
        const rel = m.root.type === 'dir' ? posix.relative(m.root.rel, e.rel) : posix.basename(e.rel);
        const perm = (e.mode & 0o7777).toString(8);
        lines.push(`${JSON.stringify(rel)} ${e.type} ${perm} ${digests[i]}`);
        if (e.type !== 'dir') files.push({ path: e.rel, digest: sha256Key(`${e.type} ${perm} ${digests[i]}`) });
      }
    }
    this.flushMemo();
    return { digest: sha256Key(lines.join('\n')), files };
  }

  /** Persists memo rows learned so far. */
  flushMemo(): void {
    if (this.memoUpdates.size === 0 || !this.db) return;
    this.db.saveMemo(this.memoUpdates);
    const memo = this.loadMemo();
    for (const [k, v] of this.memoUpdates) memo.set(k, v);
    this.memoUpdates.clear();
  }
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
