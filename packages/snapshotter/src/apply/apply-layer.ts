/**
 * Unpacks an uncompressed layer tar onto a directory, honouring OCI whiteouts and
 * refusing every entry that would write outside the directory.
 *
 * Safety rules (each violation throws UnsafeLayerError naming the entry):
 *  - names are taken relative to the target (a leading `/` is stripped, as Docker does);
 *    a `..` component is refused;
 *  - parent components are resolved inside the target as if chrooted: an absolute
 *    symlink target is re-rooted at the target, a relative one that climbs above the
 *    target is refused, as is a non-directory parent;
 *  - hardlink targets are resolved the same way and must exist (never a directory);
 *  - `.wh.`, `.wh..`, `.wh...` and whiteouts containing `/` are invalid; `trusted.*`
 *    xattrs from archives are refused.
 * Not transactional by itself: apply into a fresh directory / prepared snapshot and
 * discard it on failure (unpackImage does exactly that).
 */
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { LayerLimitError, UnsafeLayerError } from '../errors.js';
import { fdPath, openExact } from '../util/exact-path.js';
import { native } from '../util/native.js';
import { BATCH_MAX_FILE, FileBatches } from './file-batches.js';
import { readTar } from '../tar/reader.js';
import type { ReadEntry } from '../tar/reader.js';
import { run, writeXattrs } from '../tar/system.js';
import type { Xattrs } from '../tar/system.js';
import type { Digest } from '../content/index.js';
import { LAYER_BLOB, type LayerBlobHint } from '../layer/open-layer-stream.js';
import { openNativeGunzip, type NativeGunzip } from '../layer/native-gunzip.js';

/** Options of applyLayer. */
export interface ApplyOptions {
  /**
   * Applying into an overlay upperdir: write whiteouts as char 0/0 devices and opaque
   * dirs as `trusted.overlay.opaque=y` instead of deleting from the target.
   */
  overlayWhiteouts?: boolean;
  signal?: AbortSignal;
  /** Resource caps (decompression bombs, hostile tar streams); each defaults to {@link DEFAULT_LAYER_LIMITS}. */
  limits?: LayerLimits;
  /**
   * Size in bytes of the blob the tar was decompressed from (its descriptor's `size`):
   * enables the expansion-ratio cap of {@link LayerLimits.maxRatio}.
   */
  compressedSize?: number;
  /** Also compute the sha256 of the whole tar stream (the layer's diffID): {@link ApplyResult.diffId}. */
  diffId?: boolean;
}

/**
 * Caps of applyLayer against decompression bombs and hostile tar streams (catalog T29).
 * Bytes are tar bytes (headers, bodies, padding) read from the uncompressed stream; an
 * entry whose header claims more than is left of the budget is refused before any of
 * its body is written, so the cap triggers before the disk fills.
 */
export interface LayerLimits {
  /** Most uncompressed tar bytes of one layer, whatever its compressed size. */
  maxBytes?: number;
  /** Most entries (headers, including whiteouts and directories) of one layer. */
  maxEntries?: number;
  /**
   * With `compressedSize`: most uncompressed bytes per compressed byte. gzip tops out
   * near 1032:1 on zeros; real layers rarely pass 10:1.
   */
  maxRatio?: number;
  /** The ratio cap never lowers the budget below this many bytes (small layers of zeros stay fine). */
  ratioFloor?: number;
}

/**
 * Defaults of {@link LayerLimits}: 64 GiB, 1,000,000 entries (large distro and
 * node_modules layers have a few 100,000), ratio 100 above a 1 GiB floor. A 1 MiB gzip
 * blob may thus expand to 1 GiB, a 100 MiB one to 10 GiB.
 */
export const DEFAULT_LAYER_LIMITS: Readonly<Required<LayerLimits>> = Object.freeze({
  maxBytes: 64 * 1024 ** 3,
  maxEntries: 1_000_000,
  maxRatio: 100,
  ratioFloor: 1024 ** 3,
});

/** What applyLayer did. */
export interface ApplyResult {
  entries: number;
  /** `sha256:<hex>` of the tar stream read to its end, with {@link ApplyOptions.diffId}. */
  diffId?: Digest;
}

const MAX_SYMLINK_FOLLOWS = 40;
const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * The per-entry work is synchronous fs calls (a few µs each) rather than awaited
 * fs.promises calls (a thread-pool round trip each, ~10 per file: measured as most of the
 * apply time, see README); the event loop still turns whenever the tar reader waits for
 * more decompressed bytes.
 */
/**
 * Runs `fn` on the inode at `abs` itself ({@link openExact}): a symlink swapped in for
 * `abs` or any of its parents is never followed, so the metadata calls change this inode
 * or nothing. False (nothing done) when `abs` is missing, is a symlink, or was reached
 * through one.
 */
function atInode(abs: string, directory: boolean, fn: (inode: string) => void): boolean {
  const fd = openExact(abs, { directory });
  if (fd === undefined) return false;
  try {
    fn(fdPath(fd));
    return true;
  } finally {
    closeSync(fd);
  }
}

function lstatOrUndefined(p: string): Stats | undefined {
  return lstatSync(p, { throwIfNoEntry: false });
}

/** Splits an archive name into safe components, or throws. */
function components(entryName: string, name: string): string[] {
  if (name.includes('\0')) throw new UnsafeLayerError(entryName, 'expected a name without NUL bytes, found one with');
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new UnsafeLayerError(entryName, 'expected a path inside the layer root, found a ".." component');
  return parts;
}

function writeAllSync(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off);
}

interface DirMeta {
  rel: string;
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
}

class Applier {
  private readonly created = new Set<string>();
  private readonly dirs: DirMeta[] = [];
  private readonly xattrs = new Map<string, Xattrs>();
  private readonly whiteouts: string[] = [];
  private readonly opaques: string[] = [];
  /**
   * Resolved parent directories: archive parent path → components inside the root.
   * Every resolution only passes through directories and symlinks that exist; the cache
   * is dropped whenever this applier removes anything but a regular file (replaced
   * entries, whiteouts, opaque dirs), so a cached answer is always what a fresh
   * resolution would give. Nothing else writes to the target during an apply.
   */
  private readonly resolved = new Map<string, string[]>();
  /** Resolved paths of directories this applier made (empty at creation, mode without setgid). */
  private readonly fresh = new Set<string>();
  /** Paths created implicitly (missing parents). */
  private readonly implicit = new Set<string>();
  /** Parent dir → do new files in it get our egid (no setgid bit, or its group is ours)? */
  private readonly ownGroup = new Map<string, boolean>();
  private readonly euid = process.geteuid?.() ?? -1;
  private readonly egid = process.getegid?.() ?? -1;
  /** Small regular files go to the addon's thread-pool writer (see file-batches.ts for the ordering contract). */
  readonly batches: FileBatches | undefined;

  constructor(
    private readonly root: string,
    private readonly opts: ApplyOptions,
  ) {
    const sys = native();
    this.batches = sys ? new FileBatches(sys) : undefined;
  }

  private abs(parts: readonly string[]): string {
    return parts.length === 0 ? this.root : join(this.root, ...parts);
  }

  private forget(): void {
    this.resolved.clear();
    this.fresh.clear();
    this.ownGroup.clear();
  }

  /**
   * Resolves directory components inside the root (chroot semantics), creating missing
   * ones when `create`. Returns the resolved components, or undefined if missing.
   */
  private resolveDir(entryName: string, parts: readonly string[], create: boolean): string[] | undefined {
    const key = parts.join('/');
    const hit = this.resolved.get(key);
    if (hit !== undefined) return hit;
    const cur: string[] = [];
    const queue = [...parts];
    let follows = 0;
    while (queue.length > 0) {
      const c = queue.shift()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (cur.length === 0) throw new UnsafeLayerError(entryName, 'expected symlinks that stay inside the layer root, found one that leaves it');
        cur.pop();
        continue;
      }
      const p = this.abs([...cur, c]);
      const st = lstatOrUndefined(p);
      if (!st) {
        if (!create) return undefined;
        mkdirSync(p, { mode: 0o755 });
        cur.push(c);
        const rel = cur.join('/');
        this.fresh.add(rel);
        this.implicit.add(rel);
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++follows > MAX_SYMLINK_FOLLOWS) throw new UnsafeLayerError(entryName, 'expected a resolvable path, found a symlink loop');
        const target = readlinkSync(p);
        if (target.startsWith('/')) cur.length = 0;
        queue.unshift(...target.split('/'));
        continue;
      }
      if (!st.isDirectory()) throw new UnsafeLayerError(entryName, `expected a directory at ${JSON.stringify(cur.concat(c).join('/'))}, found a non-directory`);
      cur.push(c);
    }
    this.resolved.set(key, cur);
    return cur;
  }

  entry(e: ReadEntry): void | Promise<void> {
    const parts = components(e.rawName, e.path);
    if (parts.length === 0) {
      // The root itself: keep the target's own metadata.
      return;
    }
    if (this.batches && !this.batches.idle && this.mayNeedQueued(e, parts)) return this.batches.flush().then(() => this.entryNow(e, parts));
    return this.entryNow(e, parts);
  }

  /**
   * Could this entry's outcome depend on a file still queued in {@link batches}? Cheap
   * and conservative: hardlinks, whiteouts, parents not resolved yet (their lookup reads
   * the tree) and names this layer already created.
   */
  private mayNeedQueued(e: ReadEntry, parts: readonly string[]): boolean {
    if (e.type === 'link') return true;
    const base = parts[parts.length - 1]!;
    if (base.startsWith(WH)) return true;
    const parent = this.resolved.get(parts.slice(0, -1).join('/'));
    if (parent === undefined) return true;
    return this.created.has(parent.length === 0 ? base : `${parent.join('/')}/${base}`);
  }

  private entryNow(e: ReadEntry, parts: string[]): void | Promise<void> {
    const name = e.rawName;
    const base = parts[parts.length - 1]!;
    const parent = this.resolveDir(name, parts.slice(0, -1), true)!;
    const parentRel = parent.join('/');
    if (base.startsWith(WH)) {
      if (base === OPAQUE) {
        if (this.opts.overlayWhiteouts) this.opaques.push(parentRel);
        else this.emptyDir(parent, parentRel);
        return;
      }
      const target = base.slice(WH.length);
      if (target === '' || target === '.' || target === '..') {
        throw new UnsafeLayerError(name, 'expected a whiteout naming a file, found an invalid whiteout name');
      }
      const rel = parentRel === '' ? target : `${parentRel}/${target}`;
      if (this.opts.overlayWhiteouts) this.whiteouts.push(rel);
      else if (!this.created.has(rel)) {
        this.forget();
        rmSync(join(this.abs(parent), target), { recursive: true, force: true });
      }
      return;
    }
    const rel = parentRel === '' ? base : `${parentRel}/${base}`;
    const abs = join(this.abs(parent), base);
    for (const k of e.xattrs?.keys() ?? []) {
      if (k.startsWith('trusted.')) throw new UnsafeLayerError(name, `expected no trusted.* xattrs (admin attributes), found ${k}`);
    }
    // In a directory made by this applier only our own entries can exist: no lstat needed
    // (were that ever wrong, the O_EXCL / mkdir / symlink / link below fail with EEXIST).
    const parentFresh = this.fresh.has(parentRel);
    const existing = parentFresh && !this.created.has(rel) && !this.implicit.has(rel) ? undefined : lstatOrUndefined(abs);
    if (existing && !(existing.isDirectory() && e.type === 'directory')) {
      // A removal: queued files may be below what goes (nothing has changed yet, so the entry starts over).
      if (this.batches && !this.batches.idle) return this.batches.flush().then(() => this.entryNow(e, parts));
      if (!existing.isFile()) this.forget();
      rmSync(abs, { recursive: true, force: true });
    }
    let done: Promise<void> | undefined;
    switch (e.type) {
      case 'directory':
        if (!existing || !existing.isDirectory()) {
          mkdirSync(abs, { mode: 0o700 });
          this.fresh.add(rel);
        }
        // A real directory now (made, or found by lstat): its children's parent needs no lookup.
        this.resolved.set(parts.join('/'), rel.split('/'));
        this.dirs.push({ rel, uid: e.uid, gid: e.gid, mode: e.mode, mtime: e.mtime });
        break;
      case 'file': {
        const chown = !(this.newFilesGetOurGroup(parentRel) && e.uid === this.euid && e.gid === this.egid);
        done = this.batches && e.size <= BATCH_MAX_FILE ? this.queueFile(e, abs, chown) : this.file(e, abs, chown);
        break;
      }
      case 'symlink':
        symlinkSync(e.linkname ?? '', abs);
        lchownSync(abs, e.uid, e.gid);
        lutimesSync(abs, e.mtime, e.mtime);
        break;
      case 'link': {
        const tparts = components(name, (e.linkname ?? '').replace(/^\/+/, ''));
        if (tparts.length === 0) throw new UnsafeLayerError(name, 'expected a hardlink to a file, found a link to the root');
        const tparent = this.resolveDir(name, tparts.slice(0, -1), false);
        const tabs = tparent ? join(this.abs(tparent), tparts[tparts.length - 1]!) : undefined;
        const tst = tabs ? lstatOrUndefined(tabs) : undefined;
        if (!tabs || !tst) throw new UnsafeLayerError(name, `expected hardlink target ${JSON.stringify(e.linkname)} inside the layer root, found nothing there`);
        if (tst.isDirectory()) throw new UnsafeLayerError(name, 'expected a hardlink to a non-directory, found a directory');
        linkSync(tabs, abs);
        break;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo':
        done = this.special(e, abs);
        break;
    }
    const finish = (): void => {
      if (e.xattrs && e.xattrs.size > 0 && e.type !== 'link') this.xattrs.set(rel, e.xattrs);
      this.created.add(rel);
    };
    if (done === undefined) return finish();
    return done.then(finish);
  }

  /**
   * Directory modes only change in finish(), so one lstat per parent answers for the
   * whole apply (the answer is dropped with the other caches on removals).
   */
  private newFilesGetOurGroup(parentRel: string): boolean {
    let ok = this.ownGroup.get(parentRel);
    if (ok === undefined) {
      const st = lstatSync(parentRel === '' ? this.root : join(this.root, parentRel));
      ok = (st.mode & 0o2000) === 0 || st.gid === this.egid;
      this.ownGroup.set(parentRel, ok);
    }
    return ok;
  }

  /**
   * `chown` is false when the new file is ours (euid) with our egid already: no setgid
   * parent gives it the parent's group, so the chown would change nothing.
   */
  private async file(e: ReadEntry, abs: string, chown: boolean): Promise<void> {
    const fd = openSync(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of e.body) writeAllSync(fd, chunk);
      if (chown) fchownSync(fd, e.uid, e.gid);
      fchmodSync(fd, e.mode); // after chown: chown clears setuid/setgid
      futimesSync(fd, e.mtime, e.mtime);
    } finally {
      closeSync(fd);
    }
  }

  /** A small file: queued, its body copied into the batch as it is read (the reader's buffers may be reused). */
  private async queueFile(e: ReadEntry, abs: string, chown: boolean): Promise<void> {
    const body = this.batches!.reserve(abs, e.size, { uid: e.uid, gid: e.gid, mode: e.mode, mtime: e.mtime, chown });
    let off = 0;
    for await (const chunk of e.body) off += chunk.copy(body, off);
    await this.batches!.added();
  }

  private async special(e: ReadEntry, abs: string): Promise<void> {
    const argv = e.type === 'fifo' ? ['mknod', abs, 'p'] : ['mknod', abs, e.type === 'character-device' ? 'c' : 'b', String(e.devmajor ?? 0), String(e.devminor ?? 0)];
    await run(argv);
    const same = atInode(abs, false, (inode) => {
      chownSync(inode, e.uid, e.gid);
      chmodSync(inode, e.mode); // after chown: chown clears setuid/setgid
      utimesSync(inode, e.mtime, e.mtime);
    });
    if (!same) throw new UnsafeLayerError(e.path, 'expected the node just made by mknod, found it replaced');
  }

  /** Opaque whiteout without overlay: remove what lower layers put in the directory. */
  private emptyDir(parent: string[], parentRel: string): void {
    const dir = this.abs(parent);
    this.forget();
    for (const n of readdirSync(dir)) {
      const rel = parentRel === '' ? n : `${parentRel}/${n}`;
      if (!this.created.has(rel)) rmSync(join(dir, n), { recursive: true, force: true });
    }
  }

  async finish(): Promise<void> {
    await this.batches?.flush();
    if (this.whiteouts.length > 0) {
      const todo: string[] = [];
      for (const w of this.whiteouts) if (!lstatOrUndefined(join(this.root, w))) todo.push(w);
      if (todo.length > 0) await run(['sh', '-c', 'for p; do mknod -- "$p" c 0 0 || exit 1; done', 'sh', ...todo], { cwd: this.root });
    }
    for (const o of this.opaques) {
      const x = this.xattrs.get(o) ?? new Map<string, Buffer>();
      x.set('trusted.overlay.opaque', Buffer.from('y'));
      this.xattrs.set(o, x);
    }
    if (this.xattrs.size > 0) await writeXattrs(this.root, this.xattrs);
    // Directory metadata last, deepest first, so creating children does not undo mtimes.
    const dirs = [...this.dirs].sort((a, b) => (a.rel < b.rel ? 1 : a.rel > b.rel ? -1 : 0));
    // A directory that later entries replaced (by a symlink, or under one) is skipped.
    for (const d of dirs) {
      atInode(join(this.root, d.rel), true, (inode) => {
        chownSync(inode, d.uid, d.gid);
        chmodSync(inode, d.mode);
        utimesSync(inode, d.mtime, d.mtime);
      });
    }
  }
}

/**
 * The gzip blob behind an openLayerStream stream, inflated by the addon into reused
 * buffers (native-gunzip.ts), or undefined: not such a stream, no addon, not gzip, or no
 * blob file (a virtual blob): then the stream is read. The stream is not started yet
 * (Readable.from is lazy) and is destroyed here when it is not needed.
 */
function nativeSource(tar: Readable | AsyncIterable<Buffer>, hash: boolean): NativeGunzip | undefined {
  const hint = (tar as { [LAYER_BLOB]?: LayerBlobHint })[LAYER_BLOB];
  if (hint === undefined) return undefined;
  // only a stream nobody has started reading: the blob is then read from its beginning
  const r = tar as Readable;
  if (r.readableDidRead || r.readableFlowing !== null || r.destroyed) return undefined;
  let gz: NativeGunzip | undefined;
  try {
    gz = openNativeGunzip(hint.path, hint.digest, { hash });
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
  }
  if (gz !== undefined) (tar as Readable).destroy();
  return gz;
}

/**
 * Applies an uncompressed layer tar to `targetDir` (see the module comment for the
 * safety rules). Throws UnsafeLayerError / InvalidTarError; on error the target may be
 * partially written, so callers apply into a fresh snapshot and discard it on failure.
 */
export async function applyLayer(tar: Readable | AsyncIterable<Buffer>, targetDir: string, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const root = await realpath(targetDir);
  const a = new Applier(root, opts);
  const lim = { ...DEFAULT_LAYER_LIMITS, ...opts.limits };
  let budget = lim.maxBytes;
  let why = `maxBytes ${lim.maxBytes}`;
  if (opts.compressedSize !== undefined) {
    const byRatio = Math.max(lim.ratioFloor, opts.compressedSize * lim.maxRatio);
    if (byRatio < budget) {
      budget = byRatio;
      why = `${lim.maxRatio}x the ${opts.compressedSize}-byte compressed blob, at least ${lim.ratioFloor}`;
    }
  }
  const read = { bytes: 0 };
  const gz = nativeSource(tar, opts.diffId === true);
  const hash = opts.diffId === true && gz === undefined ? createHash('sha256') : undefined;
  async function* counted(src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of src) {
      read.bytes += chunk.length;
      if (read.bytes > budget) throw new LayerLimitError('bytes', budget, read.bytes, why);
      hash?.update(chunk);
      yield chunk;
    }
  }
  let entries = 0;
  try {
    for await (const e of readTar(counted(gz?.chunks ?? (tar as AsyncIterable<Buffer>)))) {
      opts.signal?.throwIfAborted();
      if (++entries > lim.maxEntries) throw new LayerLimitError('entries', lim.maxEntries, entries, `at ${JSON.stringify(e.rawName)}`);
      if (e.size > budget - read.bytes) throw new LayerLimitError('bytes', budget, read.bytes + e.size, `${JSON.stringify(e.rawName)} claims ${e.size} bytes; ${why}`);
      const pending = a.entry(e);
      if (pending !== undefined) await pending;
    }
    await a.finish();
  } catch (err) {
    // Nothing of this apply may still be writing when the caller discards the target.
    await a.batches?.settle();
    throw err;
  }
  const diffId: Digest | undefined = gz !== undefined ? gz.digest() : hash !== undefined ? `sha256:${hash.digest('hex')}` : undefined;
  return diffId === undefined ? { entries } : { entries, diffId };
}
